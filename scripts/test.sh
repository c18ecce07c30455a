#!/usr/bin/env bash
# Runs every test of Belfry: formatting and lints, the Rust unit and integration suites (on
# SQLite, then on PostgreSQL), the quick hardening suites, the TypeScript SDK's tests, and the
# browser end-to-end tests.
# This is the README's test command and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n\033[1;34m==> %s\033[0m\n' "$*"; }

step "dependencies"
scripts/install-deps.sh
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

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --all-targets --locked -- -D warnings

step "cargo clippy --features kafka"
cargo clippy --all-targets --locked --features kafka -- -D warnings

step "Rust tests on SQLite"
cargo nextest run --locked --no-fail-fast

if grep -q 'BELFRY_TEST_DATABASE_URL' crates/belfry/tests/it/support/mod.rs; then
  step "Rust tests on PostgreSQL"
  BELFRY_TEST_DATABASE_URL=${BELFRY_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres} \
    cargo nextest run --locked --no-fail-fast
fi

# Kafka ingestion is a cargo feature (it links librdkafka, built from source once: ~3.5 min);
# its tests run against a tansu broker that each test starts and stops itself.
step "Rust tests of the kafka feature"
TANSU=${TANSU:-${CARGO_HOME:-$HOME/.cargo}/bin/tansu} \
  cargo nextest run --locked --no-fail-fast --features kafka -E 'test(/kafka/)'

step "doc tests"
cargo test --doc --locked

step "benchmark smoke run (each scenario for ~2 s; fails on any loss or duplicate)"
cargo build --locked --bin belfry --bin belfry-bench
target/debug/belfry-bench --server-bin target/debug/belfry --no-progress smoke

step "hardening suites, quick (cargo deny, fuzz, Autobahn, schemathesis, soak)"
scripts/hardening.sh --quick

step "Python package (ruff, mypy, pytest on SQLite and PostgreSQL, build)"
BELFRY_TEST_DATABASE_URL=${BELFRY_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres} \
  scripts/python-tests.sh

if [ -f e2e/package.json ]; then
  step "browser end-to-end tests"
  cargo build --locked --bin belfry
  (cd e2e && npm test --silent)
fi
