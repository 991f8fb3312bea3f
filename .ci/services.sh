#!/usr/bin/env bash
# Start the servers the test suite runs against: PostgreSQL + PostGIS (Debian's cluster) and
# Redis, both on 127.0.0.1 only. Source it (`. .ci/services.sh`): it exports
# GRIDSIGHT_TEST_PG_URL and GRIDSIGHT_TEST_REDIS_URL for the tests. Idempotent.
set -euo pipefail
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"

# PostgreSQL: the cluster Debian's postgresql package created (first one listed); make one
# where the package's post-install step did not.
if [ -z "$(pg_lsclusters -h 2>/dev/null)" ]; then
  $SUDO pg_createcluster "$(ls /usr/lib/postgresql | sort -V | tail -n 1)" main
fi
read -r pg_ver pg_cluster pg_port _ < <(pg_lsclusters -h | head -n 1)
if ! pg_lsclusters -h | head -n 1 | grep -q online; then
  $SUDO pg_ctlcluster "$pg_ver" "$pg_cluster" start
fi
for _ in $(seq 1 30); do
  pg_isready -q -h 127.0.0.1 -p "$pg_port" && break
  sleep 0.5
done
$SUDO runuser -u postgres -- psql -q -p "$pg_port" -v ON_ERROR_STOP=1 <<'SQL'
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'gridsight_test') THEN
    CREATE ROLE gridsight_test LOGIN SUPERUSER PASSWORD 'gridsight_test';
  END IF;
END $$;
SQL
# the suite opens many short-lived databases (and server processes with pools of their own)
want_conns=400
have_conns=$($SUDO runuser -u postgres -- psql -tA -p "$pg_port" -c "SHOW max_connections")
if [ "$have_conns" != "$want_conns" ]; then
  $SUDO runuser -u postgres -- psql -q -p "$pg_port" -c "ALTER SYSTEM SET max_connections = $want_conns"
  $SUDO pg_ctlcluster "$pg_ver" "$pg_cluster" restart
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p "$pg_port" && break; sleep 0.5; done
fi
export GRIDSIGHT_TEST_PG_URL="postgresql+psycopg://gridsight_test:gridsight_test@127.0.0.1:${pg_port}/postgres"

# Redis: a throwaway server without persistence.
redis_port=6390
if ! redis-cli -p "$redis_port" ping >/dev/null 2>&1; then
  redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
    --logfile /tmp/gridsight-test-redis.log
fi
for _ in $(seq 1 30); do
  redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break
  sleep 0.2
done
export GRIDSIGHT_TEST_REDIS_URL="redis://127.0.0.1:${redis_port}/0"
set +eu
