#!/usr/bin/env bash
# Installs everything Belfry's build and tests need on a fresh Debian machine, idempotently:
# Debian packages (chromium for the browser tests, redis-server, nats-server, postgresql),
# cargo-nextest, and the npm packages of clients/js, demo and e2e. Safe to run again: each
# step is skipped when its result is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\033[1m[install-deps]\033[0m %s\n' "$*"; }

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
log "done"
