#!/usr/bin/env bash
# Builds the SDK and the demo page, then runs `belfry demo`: Belfry on the embedded SQLite
# default with the demo blog at http://127.0.0.1:8080/. Extra arguments go to `belfry`
# (e.g. `scripts/demo.sh --listen 127.0.0.1:9000`).
#
# The page is rebuilt only when its sources (or the SDK's) changed since the last build: a fresh
# demo/dist makes cargo re-embed it and recompile the release binary, minutes for nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
for dir in clients/js demo; do
  if [ ! -d "$dir/node_modules" ]; then
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  fi
done
stamp=demo/dist/.sources.sha256
sources=$(find clients/js/src clients/js/sw clients/js/styles.css clients/js/package.json \
  demo/src demo/index.html demo/package.json demo/vite.config.ts -type f -print0 2>/dev/null |
  sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
if [ ! -f demo/dist/index.html ] || [ "$(cat "$stamp" 2>/dev/null)" != "$sources" ]; then
  (cd clients/js && npm run --silent build)
  (cd demo && npm run --silent build)
  echo "$sources" > "$stamp"
fi
exec cargo run --release --locked --bin belfry -- "$@" demo
