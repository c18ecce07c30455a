#!/usr/bin/env bash
# Installs everything Belfry's build and tests need on a fresh Debian machine, idempotently:
# Debian packages (chromium for the browser tests, redis-server, nats-server, postgresql),
# cargo-nextest, tansu (a Kafka-API broker), and the npm packages of clients/js, demo and e2e.
# Safe to run again: each step is skipped when its result is already there.
#
#   scripts/install-deps.sh                         everything
#   scripts/install-deps.sh --hardening             only what scripts/hardening.sh needs
#   scripts/install-deps.sh --print-hardening-venv  where its Python tools live
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\033[1m[install-deps]\033[0m %s\n' "$*"; }

# scripts/hardening.sh's tools: cargo-deny, cargo-fuzz, and in a virtualenv outside the work tree
# (kept across clones on one machine) the Autobahn runner kosoku and schemathesis, pinned.
HARDENING_VENV=${BELFRY_HARDENING_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/belfry/hardening-venv}
HARDENING_PY=(kosoku==0.1.0 schemathesis==4.32.5)
install_hardening() {
  if ! cargo deny --version >/dev/null 2>&1; then
    log "cargo install cargo-deny"
    cargo install --locked cargo-deny
  fi
  if ! cargo fuzz --version >/dev/null 2>&1; then
    log "cargo install cargo-fuzz"
    cargo install --locked cargo-fuzz
  fi
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

case "${1:-}" in
  --print-hardening-venv)
    echo "$HARDENING_VENV"
    exit 0
    ;;
  --hardening)
    install_hardening
    exit 0
    ;;
esac

apt_missing=()
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

# Python packages for the Web Push test's independent receiver (tests/push_receiver.py).
if ! python3 -c "import http_ece, jwt, cryptography" >/dev/null 2>&1; then
  log "pip install http_ece pyjwt cryptography"
  python3 -m pip install --quiet --disable-pip-version-check http_ece pyjwt cryptography ||
    python3 -m pip install --quiet --disable-pip-version-check --break-system-packages http_ece pyjwt cryptography
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  log "cargo install cargo-nextest"
  cargo install --locked cargo-nextest
fi

# tansu: a Kafka-API broker for the Kafka ingestion tests (`--features kafka`), run with
# in-memory storage, which needs its `dynostore` feature (its default build has no storage engine
# at all). A release build from source, ~20 minutes on 2 busy cores, done once per machine:
# the check reads what cargo recorded of the installed build.
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
if tansu_installed; then
  log "tansu $TANSU_VERSION present"
else
  log "cargo install tansu $TANSU_VERSION --features dynostore (slow: a large release build)"
  cargo install --locked "tansu@$TANSU_VERSION" --features dynostore
fi

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
npm_install clients/js
npm_install demo
npm_install e2e
install_hardening
log "done"
