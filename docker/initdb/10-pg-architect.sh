#!/usr/bin/env bash
# Run once by the postgres image's entrypoint on a new data directory, as the
# postgres OS user, against the entrypoint's temporary (socket-only) server.
#   1. point pg_cron at $POSTGRES_DB (it can only live in one database) and restart;
#   2. `pg-architect install` into $POSTGRES_DB;
#   3. when GRAFANA_DB_PASSWORD is set: a login role `grafana`, member of the
#      read-only arch_reader role, for the dashboard;
#   4. when SIDECAR_DB_PASSWORD is set: a login role `sidecar`, member of arch_sidecar.
set -Eeuo pipefail

db=${POSTGRES_DB:-${POSTGRES_USER:-postgres}}
user=${POSTGRES_USER:-postgres}
psql=(psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$user" --no-password)

"${psql[@]}" --dbname postgres --set=db="$db" <<'SQL'
ALTER SYSTEM SET cron.database_name = :'db';
SQL
# cron.database_name only takes effect at server start; pg_ctl restart reuses the
# temporary server's options (socket only).
pg_ctl -D "$PGDATA" -m fast -w restart >/dev/null

pg-architect install --dsn "host=${PGHOST:-/var/run/postgresql} port=${PGPORT:-5432} dbname=$db user=$user"

if [ -n "${GRAFANA_DB_PASSWORD:-}" ]; then
    "${psql[@]}" --dbname "$db" --set=pw="$GRAFANA_DB_PASSWORD" --set=db="$db" <<'SQL'
CREATE ROLE grafana LOGIN PASSWORD :'pw' IN ROLE arch_reader;
COMMENT ON ROLE grafana IS 'pg_architect: the Grafana dashboard (reads the arch views through arch_reader)';
ALTER ROLE grafana SET default_transaction_read_only = on;
GRANT CONNECT ON DATABASE :"db" TO grafana;
SQL
fi

if [ -n "${SIDECAR_DB_PASSWORD:-}" ]; then
    "${psql[@]}" --dbname "$db" --set=pw="$SIDECAR_DB_PASSWORD" --set=db="$db" <<'SQL'
CREATE ROLE sidecar LOGIN PASSWORD :'pw' IN ROLE arch_sidecar;
COMMENT ON ROLE sidecar IS 'pg_architect: the sidecar process (pull requests, Vanna) through arch_sidecar';
GRANT CONNECT ON DATABASE :"db" TO sidecar;
SQL
fi
