#!/usr/bin/env bash
# Finds or fetches the nats-server binaries the tests and the demo use.
#
#   modern  nats-server >= 2.12 (atomic batches, per-key TTL): NATS_SERVER_BIN, then PATH, then
#           the project cache; when none is found on a machine with apt, the newest nats-server
#           package of Debian's testing/unstable suites is fetched into the cache.
#   compat  nats-server 2.9.x (the compatibility suite): NATS_SERVER_COMPAT_BIN, then PATH, then
#           the cache; else Debian bookworm's 2.9.10 package is fetched.
#
# Fetching never changes the machine's apt configuration: it uses its own source list, lists and
# cache directories below the cache, and takes the mirror URI from the machine's own apt sources.
# The cache is $NATSKIT_SERVER_CACHE, else .nats-server/ in natskit's own checkout (git-ignored),
# else ~/.cache/natskit/nats-server ($XDG_CACHE_HOME) when natskit is installed as a dependency;
# binaries land in <cache>/<version>/nats-server, which is where natskit/testing looks for them.
#
# Usage: scripts/provision-nats-server.sh [modern] [compat] [--help]   (default: both)
#        npx natskit-provision [modern] [compat] [--help]   (in a project that depends on natskit)
# Prints one line per kind: "<kind> <version> <path>".
set -euo pipefail

# Run as `npx natskit-provision` the script may be reached through a symlink in node_modules/.bin.
self="$(readlink -f "${BASH_SOURCE[0]}")"
root="$(cd "$(dirname "$self")/.." && pwd)"
# In natskit's own checkout the cache is the git-ignored .nats-server/; installed as a dependency,
# the user's cache (natskit/testing looks in both).
if [ -e "$root/.git" ]; then # a directory, or a file in a git worktree
  default_cache="$root/.nats-server"
else
  default_cache="${XDG_CACHE_HOME:-$HOME/.cache}/natskit/nats-server"
fi
cache="${NATSKIT_SERVER_CACHE:-$default_cache}"
compat_suite="${NATSKIT_COMPAT_SUITE:-bookworm}"
modern_suites="${NATSKIT_MODERN_SUITES:-testing unstable}"
log() { echo "provision-nats-server: $*" >&2; }

usage() {
  cat <<USAGE
Usage: natskit-provision [modern] [compat]      (npx natskit-provision in your project)
       scripts/provision-nats-server.sh [modern] [compat]   (in natskit's checkout)

Finds or fetches the nats-server binaries natskit/testing starts.
  modern  nats-server 2.12 or newer: NATS_SERVER_BIN, then PATH, then the cache; else the newest
          nats-server package of Debian's testing/unstable suites is fetched.
  compat  nats-server 2.9.x, for compatibility tests: NATS_SERVER_COMPAT_BIN, then PATH, then the
          cache; else Debian bookworm's 2.9.10 package is fetched.
With no kind, both: a plain call fetches the modern server and the 2.9 compat server.
Fetching needs apt and a Debian mirror in the machine's apt sources; it installs nothing
system-wide and leaves the machine's apt configuration untouched.
Cache: $cache
       (NATSKIT_SERVER_CACHE overrides; binaries land in <cache>/<version>/nats-server)
Prints one line per kind: "<kind> <version> <path>".
USAGE
}

kinds=()
for arg in "$@"; do
  case "$arg" in
    -h | --help) usage; exit 0 ;;
    modern | compat) kinds+=("$arg") ;;
    *) log "unknown argument '$arg'"; usage >&2; exit 2 ;;
  esac
done
[ "${#kinds[@]}" -gt 0 ] || kinds=(modern compat)

# "2.15.1" from a binary, or nothing when it does not run.
binary_version() {
  "$1" --version 2>/dev/null | sed -n 's/.*v\([0-9][0-9.]*\).*/\1/p' | head -n 1
}

# Does version $1 fit kind $2?
fits() {
  local major minor
  IFS=. read -r major minor _ <<<"$1"
  [ -n "${major:-}" ] && [ -n "${minor:-}" ] || return 1
  case "$2" in
    modern) [ "$major" -gt 2 ] || { [ "$major" -eq 2 ] && [ "$minor" -ge 12 ]; } ;;
    compat) [ "$major" -eq 2 ] && [ "$minor" -eq 9 ] ;;
  esac
}

# Prints "<version> <path>" of a binary that fits, from the environment, PATH or the cache.
find_binary() {
  local kind=$1 candidate version env_var
  env_var=NATS_SERVER_BIN
  [ "$kind" = compat ] && env_var=NATS_SERVER_COMPAT_BIN
  local candidates=()
  [ -n "${!env_var:-}" ] && candidates+=("${!env_var}")
  command -v nats-server >/dev/null 2>&1 && candidates+=("$(command -v nats-server)")
  if [ -d "$cache" ]; then
    while IFS= read -r candidate; do candidates+=("$candidate"); done \
      < <(find "$cache/" -mindepth 2 -maxdepth 2 -name nats-server -type f 2>/dev/null | sort -rV)
  fi
  for candidate in "${candidates[@]}"; do
    [ -x "$candidate" ] || continue
    version=$(binary_version "$candidate")
    if [ -n "$version" ] && fits "$version" "$kind"; then
      echo "$version $candidate"
      return 0
    fi
  done
  return 1
}

# shellcheck source=lib/private-apt.sh
source "$root/scripts/lib/private-apt.sh"
apt_root="$cache/.apt"
apt_ready=0

fetch_binary() {
  local kind=$1 version deb workdir
  if [ "$apt_ready" != 1 ]; then
    log "no nats-server for '$kind' found, and this machine has no apt with a Debian mirror to fetch one."
    if [ "$kind" = modern ]; then
      log "install nats-server 2.12 or newer (a release binary of the nats-server project, or"
      log "'go install github.com/nats-io/nats-server/v2@latest'), then put it on PATH or set NATS_SERVER_BIN."
    else
      log "install nats-server 2.9.x for the compatibility suite and set NATS_SERVER_COMPAT_BIN,"
      log "or skip that suite with NATSKIT_SKIP_COMPAT=1."
    fi
    return 1
  fi
  if [ "$kind" = modern ]; then
    version=$(private_apt_versions nats-server | awk '{ print $1 }' | head -n 1)
  else
    version=$(private_apt_versions nats-server | awk -v s="$compat_suite" '$2 == s { print $1 }' | head -n 1)
  fi
  [ -n "$version" ] || { log "no nats-server package found for '$kind'"; return 1; }
  workdir=$(mktemp -d "$cache/.fetch.XXXXXX")
  log "fetching nats-server $version for '$kind'"
  private_apt_download "$workdir" "nats-server=$version"
  deb=$(ls "$workdir"/nats-server_*.deb)
  dpkg -x "$deb" "$workdir/x"
  local bin upstream
  bin=$(find "$workdir/x" -type f -name nats-server -perm -u+x | head -n 1)
  upstream=$(binary_version "$bin")
  [ -n "$upstream" ] || { log "the fetched binary does not run here"; rm -rf "$workdir"; return 1; }
  mkdir -p "$cache/$upstream"
  mv "$bin" "$cache/$upstream/nats-server.tmp" && mv "$cache/$upstream/nats-server.tmp" "$cache/$upstream/nats-server"
  rm -rf "$workdir"
  fits "$upstream" "$kind" || { log "fetched $upstream, which is not a '$kind' server"; return 1; }
  echo "$upstream $cache/$upstream/nats-server"
}

mkdir -p "$cache"
status=0
missing=()
for kind in "${kinds[@]}"; do
  if found=$(find_binary "$kind"); then echo "$kind $found"; else missing+=("$kind"); fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  # Package lists are read once, in this shell, for every kind still missing.
  # shellcheck disable=SC2086 # the suites are a word list
  if private_apt_prepare "$apt_root" $modern_suites $compat_suite; then apt_ready=1; fi
  for kind in "${missing[@]}"; do
    if found=$(fetch_binary "$kind"); then echo "$kind $found"; else status=1; fi
  done
  rm -rf "$apt_root" # the package lists are only needed while fetching
fi
exit "$status"
