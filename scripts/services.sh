#!/usr/bin/env bash
# Makes sure PostgreSQL (5432), Redis (6379) and NATS with JetStream (4222) answer on loopback,
# starting the ones that do not. Starts only what is down; never stops anything.
set -euo pipefail

log() { printf '\033[1m[services]\033[0m %s\n' "$*"; }
up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_up() {
  local port=$1 name=$2
  for _ in $(seq 1 100); do
    up "$port" && return 0
    sleep 0.1
  done
  log "$name did not come up on port $port" >&2
  return 1
}

if up 5432; then
  log "PostgreSQL is up"
else
  log "starting PostgreSQL"
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  pg_ctlcluster --skip-systemctl-redirect "$version" main start
  wait_up 5432 PostgreSQL
fi

if up 6379; then
  log "Redis is up"
else
  log "starting Redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/belfry-ci.log
  wait_up 6379 Redis
fi

if up 4222; then
  log "NATS is up"
else
  log "starting NATS"
  mkdir -p /var/lib/nats-server
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
    -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
  wait_up 4222 NATS
fi
