#!/usr/bin/env bash
# Builds the SDK and the demo page, then runs `belfry demo`: Belfry on the embedded SQLite
# default with the demo blog at http://127.0.0.1:8080/. Extra arguments go to `belfry`
# (e.g. `scripts/demo.sh --listen 127.0.0.1:9000`).
set -euo pipefail
cd "$(dirname "$0")/.."
for dir in clients/js demo; do
  if [ ! -d "$dir/node_modules" ]; then
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  fi
done
(cd clients/js && npm run --silent build)
(cd demo && npm run --silent build)
exec cargo run --release --locked --bin belfry -- "$@" demo
