#!/usr/bin/env bash
# `npm run demo [-- example]`: builds natskit and the examples, then runs one (default: the
# job-queue worker). Without NATS_URL the examples start a private nats-server, fetched first
# when the machine has none. Examples: job-queue-worker, state-calls, scoped-jobs, queue.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
example="${1:-job-queue-worker}"
if [ ! -f "examples/$example/main.ts" ]; then
  echo "no example '$example' (job-queue-worker, state-calls, scoped-jobs, queue)" >&2
  exit 2
fi
if [ -z "${NATS_URL:-}" ]; then
  bash scripts/provision-nats-server.sh modern >/dev/null
fi
npx --no-install tsc -p tsconfig.build.json
npx --no-install tsc -p examples/tsconfig.json
node ".build/examples/$example/main.js"
