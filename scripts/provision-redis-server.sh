#!/usr/bin/env bash
# Finds or fetches a redis-server for the benchmark's BullMQ comparison (Redis >= 6.2).
#
# Order: REDIS_SERVER_BIN, redis-server on PATH, the project cache ($NATSKIT_REDIS_CACHE or
# .redis-server/, git-ignored). When none fits and the machine uses apt with a Debian mirror, the
# redis-tools package of Debian bookworm (the redis-server binary ships there as redis-check-rdb)
# and the two libraries it needs are fetched into the cache, with a private apt root: the
# machine's apt configuration is not touched, and nothing is installed system-wide.
#
# Prints "<version> <path>"; exits 1, saying why, when no redis-server can be had.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${NATSKIT_REDIS_CACHE:-$root/.redis-server}"
suite="${NATSKIT_REDIS_SUITE:-bookworm}"
log() { echo "provision-redis-server: $*" >&2; }

version_of() { "$1" --version 2>/dev/null | sed -n 's/.* v=\([0-9][0-9.]*\).*/\1/p' | head -n 1; }
fits() {
  local major minor
  IFS=. read -r major minor _ <<<"$1"
  [ -n "${major:-}" ] && { [ "$major" -gt 6 ] || { [ "$major" -eq 6 ] && [ "${minor:-0}" -ge 2 ]; }; }
}

candidates=()
[ -n "${REDIS_SERVER_BIN:-}" ] && candidates+=("$REDIS_SERVER_BIN")
command -v redis-server >/dev/null 2>&1 && candidates+=("$(command -v redis-server)")
if [ -d "$cache" ]; then
  while IFS= read -r c; do candidates+=("$c"); done \
    < <(find "$cache/" -mindepth 2 -maxdepth 2 -name redis-server -type f 2>/dev/null | sort -rV)
fi
for c in "${candidates[@]}"; do
  [ -x "$c" ] || continue
  v=$(version_of "$c")
  if [ -n "$v" ] && fits "$v"; then
    echo "$v $c"
    exit 0
  fi
done

# shellcheck source=lib/private-apt.sh
source "$root/scripts/lib/private-apt.sh"
mkdir -p "$cache"
apt_root="$cache/.apt"
trap 'rm -rf "$apt_root"' EXIT
if ! private_apt_prepare "$apt_root" "$suite"; then
  log "no redis-server found, and this machine has no apt with a Debian mirror to fetch one:"
  log "install Redis 6.2 or newer and put redis-server on PATH, or set REDIS_SERVER_BIN."
  exit 1
fi
workdir=$(mktemp -d "$cache/.fetch.XXXXXX")
trap 'rm -rf "$apt_root" "$workdir"' EXIT
log "fetching redis-tools, libjemalloc2 and liblzf1 from $suite"
private_apt_download "$workdir" redis-tools libjemalloc2 liblzf1
for deb in "$workdir"/*.deb; do dpkg -x "$deb" "$workdir/x"; done
# The one redis binary ships as redis-check-rdb; it acts by the name it runs as.
stage="$workdir/stage"
mkdir -p "$stage/lib"
cp "$workdir/x/usr/bin/redis-check-rdb" "$stage/redis-server.bin"
cp -P "$workdir"/x/usr/lib/x86_64-linux-gnu/* "$stage/lib/"
# The wrapper is what callers run: it finds the libraries beside it.
cat >"$stage/redis-server" <<'WRAPPER'
#!/usr/bin/env bash
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LD_LIBRARY_PATH="$here/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec -a redis-server "$here/redis-server.bin" "$@"
WRAPPER
chmod +x "$stage/redis-server"
v=$(version_of "$stage/redis-server")
[ -n "$v" ] || { log "the fetched redis-server does not run here"; exit 1; }
fits "$v" || { log "fetched Redis $v, older than 6.2"; exit 1; }
rm -rf "${cache:?}/$v"
mv "$stage" "$cache/$v"
echo "$v $cache/$v/redis-server"
