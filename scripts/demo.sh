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

# The postgres user needs a writable HOME and working directory: the demo dir.
cd "$PGA_HOME/demo"
as_pg env HOME="$PGA_HOME/demo" PATH="$PGBIN:$VENV/bin:/usr/local/bin:/usr/bin:/bin" \
    "$VENV/bin/pg-architect" demo --dsn "$DSN" "$@"
