#!/usr/bin/env bash
# Finds or fetches promtool (Prometheus's checker), which the metrics test runs on natskit's
# /metrics exposition (`promtool check metrics`).
#
# Order: PROMTOOL_BIN, promtool on PATH, the project cache ($NATSKIT_PROMTOOL_CACHE or
# .promtool/, git-ignored). When none runs and the machine uses apt with a Debian mirror, the
# `prometheus` package of Debian bookworm is downloaded (not installed) with a private apt root,
# like nats-server, and its promtool binary extracted into <cache>/<version>/promtool: the
# machine's apt configuration is not touched, and nothing is installed system-wide.
#
# Prints "<version> <path>"; exits 1, saying why, when no promtool can be had.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${NATSKIT_PROMTOOL_CACHE:-$root/.promtool}"
suite="${NATSKIT_PROMTOOL_SUITE:-bookworm}"
log() { echo "provision-promtool: $*" >&2; }

# "2.42.0" from "promtool, version 2.42.0+ds (branch: ...)", or nothing when it does not run.
version_of() { "$1" --version 2>&1 | sed -n 's/^promtool, version \([0-9][0-9.]*\).*/\1/p' | head -n 1; }

candidates=()
[ -n "${PROMTOOL_BIN:-}" ] && candidates+=("$PROMTOOL_BIN")
command -v promtool >/dev/null 2>&1 && candidates+=("$(command -v promtool)")
if [ -d "$cache" ]; then
  while IFS= read -r c; do candidates+=("$c"); done \
    < <(find "$cache/" -mindepth 2 -maxdepth 2 -name promtool -type f 2>/dev/null | sort -rV)
fi
for c in "${candidates[@]}"; do
  [ -x "$c" ] || continue
  v=$(version_of "$c")
  if [ -n "$v" ]; then
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
  log "no promtool found, and this machine has no apt with a Debian mirror to fetch one:"
  log "install Prometheus's promtool and put it on PATH, or set PROMTOOL_BIN."
  exit 1
fi
workdir=$(mktemp -d "$cache/.fetch.XXXXXX")
trap 'rm -rf "$apt_root" "$workdir"' EXIT
log "fetching the prometheus package from $suite (for its promtool)"
private_apt_download "$workdir" prometheus
dpkg -x "$workdir"/prometheus_*.deb "$workdir/x"
bin="$workdir/x/usr/bin/promtool"
[ -x "$bin" ] || { log "the prometheus package holds no usr/bin/promtool"; exit 1; }
v=$(version_of "$bin")
[ -n "$v" ] || { log "the fetched promtool does not run here"; exit 1; }
mkdir -p "$cache/$v"
mv "$bin" "$cache/$v/promtool.tmp" && mv "$cache/$v/promtool.tmp" "$cache/$v/promtool"
echo "$v $cache/$v/promtool"
