#!/usr/bin/env bash
# Runs every benchmark scenario of docs/benchmarks.md, Belfry and the seed-style FastAPI peer side
# by side (each phase on Belfry, then on the peer, each on a fresh server), and keeps everything
# the bench printed under bench/results/<UTC time>/ (git-ignored): one file per step with its JSON
# lines and Markdown tables, and machine.txt (commit, CPU, load, limits) for the record.
#
#   bench/run-all.sh            every step (~30 min on a 2-core machine)
#   bench/run-all.sh STEP...    only these steps, e.g. `bench/run-all.sh latency storm`
#   bench/run-all.sh --list     the steps and their commands
#
# Builds the release binaries first (cargo build --release -p belfry -p belfry-bench) and installs
# the peer's virtualenv (bench/peer.sh install). Every server it starts listens on 127.0.0.1 and
# is stopped by the bench itself; a step that fails is reported and the next one runs.
set -uo pipefail
cd "$(dirname "$0")/.."

B=target/release/belfry-bench
P=(--peer fastapi --no-progress)

# name | arguments of belfry-bench
steps=(
  "throughput|throughput --synchronous full,normal ${P[*]}"
  "throughput-batch500|throughput --synchronous full --concurrency 0 --batch 500 --batch-concurrency 4 ${P[*]}"
  "latency|latency --users 10000 --rate 1000,5000 ${P[*]}"
  "latency-normal|latency --users 10000 --rate 1000,5000,10000 --set store.sqlite_synchronous=normal --no-progress"
  "ladder|ladder --start 20 ${P[*]}"
  "ladder-normal|ladder --start 20 --set store.sqlite_synchronous=normal --peer-env PEER_SQLITE_JOURNAL=wal ${P[*]}"
  "broadcast-user|broadcast --mode user --connections 1000,10000 --rate 100 ${P[*]}"
  "broadcast-room|broadcast --mode room --connections 1000,10000 --rate 100 ${P[*]}"
  "storm|storm --clients 10000 --rate 500 ${P[*]}"
  "hold|hold --connections 1000,10000 ${P[*]}"
  "hold-19k|hold --connections 19000 --source-addrs 4 --no-progress"
  "sse|latency --transport sse --users 1000 --rate 1000 ${P[*]}"
)

if [ "${1:-}" = "--list" ]; then
  for step in "${steps[@]}"; do printf '%-20s %s %s\n' "${step%%|*}" "$B" "${step#*|}"; done
  exit 0
fi

want=("$@")
selected() {
  ((${#want[@]} == 0)) && return 0
  local w
  for w in "${want[@]}"; do [ "$w" = "$1" ] && return 0; done
  return 1
}
for w in "${want[@]}"; do
  found=0
  for step in "${steps[@]}"; do [ "${step%%|*}" = "$w" ] && found=1; done
  ((found)) || { echo "run-all: no step named $w (see --list)" >&2; exit 2; }
done

cargo build --release -p belfry -p belfry-bench || exit 1
bench/peer.sh install || exit 1

out="bench/results/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
{
  echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates || echo ' (crates/ modified)')"
  echo "nproc: $(nproc)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "memory: $(free -g | awk '/^Mem:/ {print $2 " GiB"}')"
  echo "kernel: $(uname -r)"
  echo "nofile hard limit: $(ulimit -Hn)"
  echo "python: $(bench/peers/.venv/bin/python --version 2>&1)"
} >"$out/machine.txt"
cat "$out/machine.txt"

failed=()
for step in "${steps[@]}"; do
  name=${step%%|*}
  args=${step#*|}
  selected "$name" || continue
  echo
  echo "== $name: $B $args  (load: $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%H:%M:%S) UTC)"
  start=$SECONDS
  # shellcheck disable=SC2086 # the arguments are words on purpose
  if ! "$B" $args >"$out/$name.txt" 2>"$out/$name.err"; then
    failed+=("$name")
    echo "!! $name failed; the end of its stderr:"
    tail -n 5 "$out/$name.err"
  fi
  grep -v '^{' "$out/$name.txt"
  echo "($name: $((SECONDS - start)) s, load after: $(cut -d' ' -f1-3 /proc/loadavg))" | tee -a "$out/machine.txt"
done

echo
echo "results in $out"
if ((${#failed[@]})); then
  echo "failed steps: ${failed[*]}"
  exit 1
fi
