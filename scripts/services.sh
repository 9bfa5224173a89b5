#!/usr/bin/env bash
# Make sure the Postgres and Redis the service tests use answer on 127.0.0.1; start them if not.
set -uo pipefail
# tests/cluster puts its hosts in network namespaces (ip netns, iproute2); without them it runs on loopback
if ! command -v ip >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing iproute2" >&2
  (apt-get update -qq && apt-get install -y -qq iproute2) >/dev/null 2>&1 || echo "iproute2 not installed" >&2
fi
pg_ok() { pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; }
redis_ok() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }
if ! pg_ok; then
  echo "starting PostgreSQL" >&2
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  for _ in $(seq 30); do pg_ok && break; sleep 1; done
fi
if ! redis_ok; then
  echo "starting Redis" >&2
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
  for _ in $(seq 30); do redis_ok && break; sleep 1; done
fi
pg_ok || { echo "PostgreSQL does not answer on 127.0.0.1:5432" >&2; exit 1; }
redis_ok || { echo "Redis does not answer on 127.0.0.1:6379" >&2; exit 1; }
psql -h 127.0.0.1 -U postgres -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname='test'" | grep -q 1 \
  || createdb -h 127.0.0.1 -U postgres test
