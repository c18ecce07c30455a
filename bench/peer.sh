#!/usr/bin/env bash
# The seed-style FastAPI peer of the benchmarks (bench/peers/fastapi).
#
#   bench/peer.sh install   create bench/peers/.venv and install the pinned requirements
#                           (idempotent: does nothing when they are already installed)
#   bench/peer.sh serve [--host H] [--port P]
#                           run the peer in the foreground (exec: the PID is the server's);
#                           PEER_DATABASE, PEER_JWT_SECRET, PEER_API_KEY configure it
#
# belfry-bench --peer fastapi runs `install` once, then starts `serve` for each phase itself.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/peers/.venv"
app="$here/peers/fastapi"
requirements="$app/requirements.txt"
python=${PYTHON:-python3.11}

install() {
  local stamp="$venv/.requirements.sha256"
  local want
  want=$(sha256sum "$requirements" | cut -d' ' -f1)
  if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return 0
  fi
  [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
  echo "$want" >"$stamp"
}

case "${1:-}" in
  install)
    install
    ;;
  serve)
    shift
    host=127.0.0.1
    port=8000
    while [ $# -gt 0 ]; do
      case "$1" in
        --host) host=$2; shift 2 ;;
        --port) port=$2; shift 2 ;;
        *) echo "peer.sh serve: unknown argument $1" >&2; exit 2 ;;
      esac
    done
    [ -x "$venv/bin/python" ] || { echo "run bench/peer.sh install first" >&2; exit 1; }
    cd "$app"
    exec "$venv/bin/python" -m uvicorn app:app --host "$host" --port "$port" \
      --log-level warning --no-access-log
    ;;
  *)
    sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
