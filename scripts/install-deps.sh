#!/usr/bin/env bash
# Installs everything Belfry's build and tests need on a fresh Debian machine, idempotently:
# Debian packages (chromium for the browser tests, redis-server, nats-server, postgresql),
# cargo-nextest, tansu (a Kafka-API broker), cargo-deny and cargo-fuzz, the npm packages of
# clients/js, demo and e2e, and the Python tools (the Web Push receiver's packages, the hardening
# suites' and the Python package's virtualenvs). Safe to run again: each step is skipped when
# its result is already there.
#
#   scripts/install-deps.sh                         everything
#   scripts/install-deps.sh --cargo-tools           only the tools built from source with cargo
#                                                   install (tansu, cargo-deny, cargo-fuzz): the
#                                                   slow part, which test.sh runs in the background
#   scripts/install-deps.sh --no-cargo-tools        everything but those
#   scripts/install-deps.sh --hardening             only what scripts/hardening.sh needs
#   scripts/install-deps.sh --print-hardening-venv  where its Python tools live
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\033[1m[install-deps]\033[0m %s\n' "$*"; }

CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/belfry

# The tools built from source (tansu, cargo-deny, cargo-fuzz) are a test broker and two cargo
# subcommands that run for seconds, so their speed does not matter: they are built with the
# release profile lightened for this install only (no optimisation, no debug info, no LTO; unlike
# the dev profile, no debug assertions or overflow checks that the tools were never tested with),
# which takes about a third of a full release build. tansu, cargo-deny and cargo-fuzz share one
# target directory, so the dependencies they have in common are built once; it is removed when
# all of them are installed. cargo_install TARGET_DIR ARGS...
TOOLS_TARGET=$CACHE/tools-target
cargo_install() {
  local target_dir=$1
  shift
  CARGO_TARGET_DIR=$target_dir \
    CARGO_PROFILE_RELEASE_OPT_LEVEL=0 \
    CARGO_PROFILE_RELEASE_DEBUG=false \
    CARGO_PROFILE_RELEASE_LTO=false \
    CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
    CARGO_PROFILE_RELEASE_INCREMENTAL=false \
    cargo install --locked "$@"
}

# scripts/hardening.sh's tools: cargo-deny, cargo-fuzz, and in a virtualenv outside the work tree
# (kept across clones on one machine) the Autobahn runner kosoku and schemathesis, pinned.
HARDENING_VENV=${BELFRY_HARDENING_VENV:-$CACHE/hardening-venv}
HARDENING_PY=(kosoku==0.1.0 schemathesis==4.32.5)
install_hardening_cargo() {
  if cargo fuzz --version >/dev/null 2>&1; then
    log "cargo-fuzz present"
  else
    log "cargo install cargo-fuzz"
    cargo_install "$TOOLS_TARGET" cargo-fuzz
  fi
  if cargo deny --version >/dev/null 2>&1; then
    log "cargo-deny present"
  else
    log "cargo install cargo-deny"
    cargo_install "$TOOLS_TARGET" cargo-deny
  fi
}
install_hardening_venv() {
  local stamp="$HARDENING_VENV/.belfry-packages"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "${HARDENING_PY[*]}" ]; then
    log "hardening Python tools present ($HARDENING_VENV)"
    return 0
  fi
  log "pip install ${HARDENING_PY[*]} into $HARDENING_VENV"
  mkdir -p "$(dirname "$HARDENING_VENV")"
  python3 -m venv "$HARDENING_VENV" 2>/dev/null || {
    # Debian's python3 without python3-venv: install it, then retry.
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
    python3 -m venv "$HARDENING_VENV"
  }
  "$HARDENING_VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${HARDENING_PY[@]}"
  echo "${HARDENING_PY[*]}" >"$stamp"
}

install_debian() {
  local apt_missing=()
  command -v chromium >/dev/null 2>&1 || apt_missing+=(chromium)
  command -v redis-server >/dev/null 2>&1 || apt_missing+=(redis-server)
  command -v nats-server >/dev/null 2>&1 || apt_missing+=(nats-server)
  command -v pg_ctlcluster >/dev/null 2>&1 || apt_missing+=(postgresql)
  command -v node >/dev/null 2>&1 || apt_missing+=(nodejs npm)
  if ((${#apt_missing[@]})); then
    log "apt-get install ${apt_missing[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${apt_missing[@]}" >/dev/null
  else
    log "Debian packages present"
  fi
}

# Python packages for the Web Push test's independent receiver (tests/push_receiver.py).
install_push_receiver_py() {
  if python3 -c "import http_ece, jwt, cryptography" >/dev/null 2>&1; then
    log "Python packages of the Web Push receiver present"
    return 0
  fi
  log "pip install http_ece pyjwt cryptography"
  python3 -m pip install --quiet --disable-pip-version-check http_ece pyjwt cryptography ||
    python3 -m pip install --quiet --disable-pip-version-check --break-system-packages http_ece pyjwt cryptography
}

install_nextest() {
  if cargo nextest --version >/dev/null 2>&1; then
    log "cargo-nextest present"
  else
    log "cargo install cargo-nextest"
    cargo_install "$CACHE/nextest-target" cargo-nextest
    rm -rf "$CACHE/nextest-target"
  fi
}

# tansu: a Kafka-API broker for the Kafka ingestion tests (`--features kafka`), run with
# in-memory storage, which needs its `dynostore` feature (its default build has no storage engine
# at all). Built from source once per machine (cargo_install's light profile: ~7 minutes on 2
# free cores, against ~20 for a full release build); the check reads what cargo recorded of the
# installed build.
TANSU_VERSION=0.6.0
tansu_installed() {
  python3 - "$TANSU_VERSION" <<'PY' 2>/dev/null
import json, os, sys
home = os.environ.get("CARGO_HOME") or os.path.expanduser("~/.cargo")
with open(os.path.join(home, ".crates2.json")) as f:
    installs = json.load(f)["installs"]
ok = any(k.startswith(f"tansu {sys.argv[1]} ") and "dynostore" in v.get("features", [])
         and os.path.exists(os.path.join(home, "bin", "tansu")) for k, v in installs.items())
sys.exit(0 if ok else 1)
PY
}
install_tansu() {
  if tansu_installed; then
    log "tansu $TANSU_VERSION present"
  else
    log "cargo install tansu $TANSU_VERSION --features dynostore (the slowest step of a first run)"
    cargo_install "$TOOLS_TARGET" "tansu@$TANSU_VERSION" --features dynostore
  fi
}

install_cargo_tools() {
  install_hardening_cargo
  install_tansu
  rm -rf "$TOOLS_TARGET"
}

# npm ci only when the lock file changed since the last install (a stamp inside node_modules).
npm_install() {
  local dir=$1
  [ -f "$dir/package-lock.json" ] || return 0
  local stamp="$dir/node_modules/.belfry-lock-stamp"
  if [ -f "$stamp" ] && cmp -s "$dir/package-lock.json" "$stamp"; then
    log "npm packages of $dir up to date"
    return 0
  fi
  log "npm ci in $dir"
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  cp "$dir/package-lock.json" "$stamp"
}

# Everything but the cargo-built tools. After the Debian packages (npm and python3-venv may come
# from there), the network-bound installs run side by side; any failure fails the script.
install_rest() {
  install_debian
  install_nextest
  local pids=() pid failed=0
  install_push_receiver_py &
  pids+=($!)
  install_hardening_venv &
  pids+=($!)
  scripts/python-tests.sh --install-only &
  pids+=($!)
  for dir in clients/js demo e2e; do
    npm_install "$dir" &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do
    wait "$pid" || failed=1
  done
  return "$failed"
}

case "${1:-}" in
  --print-hardening-venv)
    echo "$HARDENING_VENV"
    ;;
  --hardening)
    install_hardening_cargo
    rm -rf "$TOOLS_TARGET"
    install_hardening_venv
    ;;
  --cargo-tools)
    install_cargo_tools
    log "cargo-built tools done"
    ;;
  --no-cargo-tools)
    install_rest
    log "done (without the cargo-built tools)"
    ;;
  "")
    install_rest
    install_cargo_tools
    log "done"
    ;;
  *)
    echo "usage: $0 [--cargo-tools | --no-cargo-tools | --hardening | --print-hardening-venv]" >&2
    exit 2
    ;;
esac
