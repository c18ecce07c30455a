#!/usr/bin/env bash
# Counts the instructions a Belfry server executes for one belfry-bench run, under
# `valgrind --tool=callgrind` (repeatable, unlike timings on a shared machine).
#
#   bench/callgrind.sh OUT_DIR BELFRY_BIN BENCH_BIN -- BENCH_ARGS...
#
# Starts BELFRY_BIN under callgrind on a free loopback port with a fresh SQLite file, runs
# BENCH_BIN --url … BENCH_ARGS against it, stops the server with SIGTERM (by its PID) and leaves
# OUT_DIR/callgrind.out (read it with callgrind_annotate) and OUT_DIR/bench.out. Run it twice with
# different event counts and subtract the totals to get instructions per event.
set -euo pipefail
out=$1 server=$2 bench=$3
shift 3
[ "${1:-}" = "--" ] && shift
mkdir -p "$out"
out=$(cd "$out" && pwd)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
key="cg-$(date +%s%N)"
secret="cg-secret-$(date +%s%N)-0123456789abcdef"
rm -f "$out"/belfry.db*
cat >"$out/belfry.toml" <<TOML
listen = "127.0.0.1:$port"
database_url = "sqlite://$out/belfry.db"
[auth]
api_keys = ["$key"]
jwt_secret = "$secret"
secrets_file = "$out/secrets.toml"
[log]
filter = "warn"
[ws]
max_connections_per_user = 20000
[rooms]
max_users_per_room = 20000
TOML
valgrind --tool=callgrind --callgrind-out-file="$out/callgrind.out" \
  "$server" --config "$out/belfry.toml" serve >"$out/server.log" 2>&1 &
pid=$!
trap 'kill -TERM $pid 2>/dev/null || true' EXIT
for _ in $(seq 600); do
  curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
"$bench" --no-progress --url "http://127.0.0.1:$port" --api-key "$key" --jwt-secret "$secret" \
  --server-pid "$pid" "$@" >"$out/bench.out" 2>&1
kill -TERM "$pid"
wait "$pid" || true
trap - EXIT
grep -E '^(events|summary)' "$out/callgrind.out" | tail -2
