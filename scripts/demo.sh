#!/usr/bin/env bash
# make demo: install everything, start the demo cluster and run
# `pg-architect demo` against it (as the postgres OS user when root).
# Extra arguments go to `pg-architect demo`.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$REPO/scripts/lib.sh"

bash "$REPO/scripts/setup.sh"
bash "$REPO/scripts/cluster.sh" start
DSN=$(bash "$REPO/scripts/cluster.sh" dsn)
# Staging: a second database of the same cluster (the production refusal compares the system
# identifier AND the database), filled by the demo with the same sample application.
STAGING_DB=pga_demo_staging
if [ -z "$(bash "$REPO/scripts/cluster.sh" psql -X -tAc "SELECT 1 FROM pg_database WHERE datname = '$STAGING_DB'")" ]; then
    bash "$REPO/scripts/cluster.sh" psql -X -q -c "CREATE DATABASE $STAGING_DB"
fi
STAGING_DSN=${DSN/dbname=pga_demo /dbname=$STAGING_DB }

# The postgres user needs a writable HOME and working directory: the demo dir.
cd "$PGA_HOME/demo"
as_pg env HOME="$PGA_HOME/demo" PATH="$PGBIN:$VENV/bin:/usr/local/bin:/usr/bin:/bin" \
    "$VENV/bin/pg-architect" demo --dsn "$DSN" --staging-dsn "$STAGING_DSN" "$@"
