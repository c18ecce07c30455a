#!/usr/bin/env bash
# Runs every test of Belfry: formatting and lints, the Rust unit and integration suites (on
# SQLite, then on PostgreSQL), the Kafka ingestion tests, the quick hardening suites, the Python
# package's checks, the TypeScript SDK's tests, and the browser end-to-end tests.
# This is the README's test command and what CI runs.
#
# Everything Rust is built once, with the `ci` profile (Cargo.toml) into target/ci/: clippy, the
# tests, the benchmark, the hardening suites, the Python and browser tests all use that build.
# With CI set, the cargo target directory is kept outside the work tree
# (~/.cache/belfry/ci-target, or CARGO_TARGET_DIR), so a fresh clone on the same machine rebuilds
# only Belfry's own crates; runs sharing it take turns.
set -euo pipefail
cd "$(dirname "$0")/.."

# Each step's header says how long the run has taken so far.
step() { printf '\n\033[1;34m==> %s\033[0m (at %dm%02ds)\n' "$*" $((SECONDS / 60)) $((SECONDS % 60)); }

cache=${XDG_CACHE_HOME:-$HOME/.cache}/belfry
if [ -n "${CI:-}" ] && [ -z "${CARGO_TARGET_DIR:-}" ]; then
  export CARGO_TARGET_DIR=$cache/ci-target
  mkdir -p "$CARGO_TARGET_DIR"
  exec 9>"$CARGO_TARGET_DIR.lock"
  if ! flock -n 9; then
    echo "waiting for the other run using $CARGO_TARGET_DIR" >&2
    flock 9
  fi
fi
# The scripts below build with it too. (Not a BELFRY_ variable: the server reads every one of those
# as configuration, and the tests' servers inherit this environment.)
export CI_CARGO_PROFILE=ci
bin=$(realpath -m "${CARGO_TARGET_DIR:-target}")/ci
cargo_ci=(--locked --profile ci)

# Background jobs at low priority, each in its own process group (stopped if this script ends
# first), its output in target/ci-NAME.log, shown when the step that needs it waits for it.
declare -A bg_pid=()
background() {
  local name=$1
  shift
  mkdir -p target
  setsid -w nice -n 10 "$@" >"target/ci-$name.log" 2>&1 &
  bg_pid[$name]=$!
}
await() {
  local name=$1 status=0
  [ -n "${bg_pid[$name]:-}" ] || return 0
  step "waiting for $name (target/ci-$name.log)"
  wait "${bg_pid[$name]}" || status=$?
  unset "bg_pid[$name]"
  cat "target/ci-$name.log"
  [ "$status" -eq 0 ] || { echo "$name failed" >&2; exit 1; }
}
stop_background() {
  local pid
  for pid in "${bg_pid[@]}"; do
    kill -TERM -- "-$pid" 2>/dev/null || true
  done
}
trap stop_background EXIT

step "dependencies"
# The pinned toolchain (rust-toolchain.toml) first, in the foreground: rustup installs it on first
# use, and the background jobs below must not race to do so.
cargo --version
# The tools built from source (cargo-fuzz, cargo-deny, tansu: on a fresh machine, most of the
# first run) build in the background, using the CPU that the steps before the first one needing
# them leave idle.
background cargo-tools scripts/install-deps.sh --cargo-tools
scripts/install-deps.sh --no-cargo-tools
scripts/services.sh

# The SDK and the demo page first: the server embeds demo/dist, and while it is missing its build
# script reruns (and belfry recompiles) on every cargo command below.
if [ -f clients/js/package.json ]; then
  step "TypeScript SDK"
  (cd clients/js && npm run --silent typecheck && npm run --silent build && npm test --silent)
fi

if [ -f demo/package.json ]; then
  step "demo build"
  (cd demo && npm run --silent build)
fi

# The fuzz targets (every dependency in release, instrumented: the largest build here) build in
# the background as well, once the demo page they embed is built and cargo-fuzz is installed (the
# first of the tools, under a minute); hardening.sh below then finds them built.
background fuzz-build bash -c '
  until cargo fuzz --version >/dev/null 2>&1; do
    kill -0 "$1" 2>/dev/null || { echo "cargo-fuzz is not installed" >&2; exit 1; }
    sleep 1
  done
  exec scripts/hardening.sh --quick --build-fuzz' _ "${bg_pid[cargo-tools]}"

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --all-targets "${cargo_ci[@]}" -- -D warnings

step "Rust tests on SQLite"
cargo nextest run --cargo-profile ci --locked --no-fail-fast

if grep -q 'BELFRY_TEST_DATABASE_URL' crates/belfry/tests/it/support/mod.rs; then
  step "Rust tests on PostgreSQL"
  BELFRY_TEST_DATABASE_URL=${BELFRY_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres} \
    cargo nextest run --cargo-profile ci --locked --no-fail-fast
fi

step "doc tests"
cargo test --doc "${cargo_ci[@]}"

step "benchmark smoke run (each scenario for ~2 s; fails on any loss or duplicate)"
cargo build "${cargo_ci[@]}" --bin belfry --bin belfry-bench
"$bin/belfry-bench" --server-bin "$bin/belfry" --no-progress smoke

step "Python package (ruff, mypy, pytest on SQLite and PostgreSQL, build)"
BELFRY_TEST_DATABASE_URL=${BELFRY_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres} \
  scripts/python-tests.sh

if [ -f e2e/package.json ]; then
  step "browser end-to-end tests"
  cargo build "${cargo_ci[@]}" --bin belfry
  (cd e2e && BELFRY_BIN=$bin/belfry npm test --silent)
fi

# Kafka ingestion is a cargo feature (it links librdkafka, built from source once: ~40 s);
# its tests run against a tansu broker that each test starts and stops itself. The feature adds
# code and changes what some code does (a config naming [ingest.kafka] is refused without it;
# tests/it/ingest/kafka.rs checks both), so the build without it, above, and the one with it,
# here, are each linted and tested.
step "cargo clippy --features kafka"
cargo clippy --all-targets "${cargo_ci[@]}" --features kafka -- -D warnings

await cargo-tools

step "Rust tests of the kafka feature"
TANSU=${TANSU:-${CARGO_HOME:-$HOME/.cargo}/bin/tansu} \
  cargo nextest run --cargo-profile ci --locked --no-fail-fast --features kafka -E 'test(/kafka/)'

await fuzz-build

step "hardening suites, quick (cargo deny, fuzz, Autobahn, schemathesis, soak)"
scripts/hardening.sh --quick
