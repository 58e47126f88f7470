#!/usr/bin/env bash
# A local PostgreSQL for the backend tests (host_tests/backend). Run as root; installs the server
# with apt-get when it is missing, starts the Debian cluster, and creates the login role the tests
# look for:  postgresql://evc:evc@127.0.0.1:5432/postgres  (override with EVC_TEST_PG_URL).
# Exports nothing; without it the PostgreSQL tests skip with a message.
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
  echo "postgres.sh: not root; not installing or starting PostgreSQL" >&2
  exit 1
fi
if ! command -v pg_lsclusters >/dev/null 2>&1; then
  command -v apt-get >/dev/null 2>&1 || { echo "postgres.sh: no apt-get" >&2; exit 1; }
  echo "postgres.sh: installing postgresql"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
# The first cluster Debian knows of (created by the package), else a new one.
read -r ver name _ < <(pg_lsclusters -h | head -n1) || true
if [ -z "${ver:-}" ]; then
  ver=$(ls /usr/lib/postgresql | sort -n | tail -n1)
  name=main
  pg_createcluster "$ver" "$name" >/dev/null
fi
pg_ctlcluster "$ver" "$name" start 2>/dev/null || true
for _ in $(seq 1 50); do
  su postgres -c "psql -qAtc 'select 1'" >/dev/null 2>&1 && break
  sleep 0.2
done
su postgres -c "psql -qAt" <<'SQL'
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'evc') THEN
    CREATE ROLE evc LOGIN CREATEDB PASSWORD 'evc';
  END IF;
END $$;
-- DROP DATABASE ... WITH (FORCE) also ends an autovacuum worker in the test database, which no
-- ordinary role may signal (InsufficientPrivilege, seen in CI)
GRANT pg_signal_backend TO evc;
SQL
echo "postgres.sh: PostgreSQL $ver/$name up; tests use postgresql://evc:evc@127.0.0.1:5432/postgres"
