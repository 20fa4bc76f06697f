#!/usr/bin/env bash
# Generates the API reference (docs/api) from the TSDoc comments with TypeDoc. TypeDoc needs the
# TypeScript 5 compiler API, which TypeScript 7 lacks, so it has its own package in tools/api-docs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../tools/api-docs"
[ -d node_modules ] || npm ci --no-audit --no-fund --loglevel=error
npx --no-install typedoc --options typedoc.json
