#!/usr/bin/env bash
# `npm run demo`: builds natskit and the examples, then runs the job-queue worker example.
# Without NATS_URL the example starts a private nats-server, fetched first when the machine has none.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ -z "${NATS_URL:-}" ]; then
  bash scripts/provision-nats-server.sh modern >/dev/null
fi
npx --no-install tsc -p tsconfig.build.json
npx --no-install tsc -p examples/tsconfig.json
node .build/examples/job-queue-worker/main.js "$@"
