#!/usr/bin/env bash
# A throwaway PostgreSQL 15 cluster for the demo, under $PGA_HOME/demo:
#   data/          the cluster (initdb on first start)
#   run/           its unix socket (no TCP: listen_addresses = '')
#   postgres.log   the server log
# Owned by and run as the postgres OS user when invoked as root.
#
# Usage: scripts/cluster.sh {start|stop|status|psql [ARGS...]|dsn|clean}
#   clean stops the cluster and removes $PGA_HOME/demo.
# Environment: PGA_HOME (see setup.sh), PGA_DEMO_PORT (default 5499).
set -euo pipefail
umask 022

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$REPO/scripts/lib.sh"

DEMO=$PGA_HOME/demo
DATA=$DEMO/data
RUN=$DEMO/run
LOG=$DEMO/postgres.log
PORT=${PGA_DEMO_PORT:-5499}
DB=pga_demo

say() { printf 'cluster: %s\n' "$*"; }
die() { printf 'cluster: error: %s\n' "$*" >&2; exit 1; }

# libpq quoting: single quotes around values with spaces or quotes.
dsn_value() {
    case $1 in
        *[[:space:]\'\\]*) local v=${1//\\/\\\\}; printf "'%s'" "${v//\'/\\\'}" ;;
        *) printf '%s' "$1" ;;
    esac
}
dsn() { printf 'host=%s port=%s dbname=%s user=postgres\n' "$(dsn_value "$RUN")" "$PORT" "$DB"; }

pg() { (cd "$DEMO" && as_pg "$@"); }

running() { [ -d "$DATA" ] && pg "$PGBIN/pg_ctl" status -D "$DATA" >/dev/null 2>&1; }

# A running cluster keeps the port it was started with, whatever PGA_DEMO_PORT says now.
if running; then
    PORT=$(sed -n 4p "$DATA/postmaster.pid")
fi

# Something else on the port: a TCP listener on loopback, or a live socket in our run dir.
port_in_use() {
    local host
    for host in 127.0.0.1 ::1; do
        if (exec 3<>"/dev/tcp/$host/$PORT") 2>/dev/null; then return 0; fi
    done
    [ -S "$RUN/.s.PGSQL.$PORT" ] && "$PGBIN/pg_isready" -q -h "$RUN" -p "$PORT" >/dev/null 2>&1
}

write_conf() {
    # Regenerated on every start (the port may change); included once from postgresql.conf.
    pg tee "$DATA/pg_architect_demo.conf" >/dev/null <<EOF
# Written by scripts/cluster.sh on every start: edit that script, not this file.
listen_addresses = ''
unix_socket_directories = '$RUN'
port = $PORT
shared_preload_libraries = 'pg_stat_statements,pg_cron'
cron.database_name = '$DB'
cron.host = '$RUN'
pg_stat_statements.track = top
# the audit scale bench runs 5,000 distinct statements (bench/bench_audit.py --workload inlist)
pg_stat_statements.max = 10000
track_io_timing = on
shared_buffers = 256MB
work_mem = 16MB
max_wal_size = 2GB
# A throwaway demo: durability is not needed.
fsync = off
synchronous_commit = off
full_page_writes = off
log_min_messages = warning
EOF
    if ! grep -q "^include = 'pg_architect_demo.conf'" "$DATA/postgresql.conf"; then
        printf "\n# pg_architect demo settings\ninclude = 'pg_architect_demo.conf'\n" \
            | pg tee -a "$DATA/postgresql.conf" >/dev/null
    fi
}

init() {
    mkdir -p "$DEMO"
    if is_root; then chown postgres:postgres "$DEMO"; chmod 755 "$DEMO"; fi
    pg mkdir -p "$RUN"
    if [ ! -f "$DATA/PG_VERSION" ]; then
        say "initdb $DATA"
        pg "$PGBIN/initdb" -D "$DATA" -U postgres --auth-local=trust --auth-host=reject \
            --locale=C.UTF-8 -E UTF8 >/dev/null
    fi
}

start() {
    [ -x "$PGBIN/pg_ctl" ] || die "PostgreSQL 15 is not installed: run scripts/setup.sh"
    if running; then
        say "already running ($(dsn))"
    else
        if port_in_use; then
            die "port $PORT is in use by another server; set PGA_DEMO_PORT to a free port"
        fi
        init
        write_conf
        say "starting on port $PORT (log $LOG)"
        if ! pg "$PGBIN/pg_ctl" start -w -t 60 -D "$DATA" -l "$LOG" >/dev/null; then
            tail -n 20 "$LOG" >&2 || true
            die "server did not start; see $LOG"
        fi
    fi
    local psql=("$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$RUN" -p "$PORT" -U postgres -d postgres)
    if [ -z "$(pg "${psql[@]}" -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'")" ]; then
        say "creating database $DB"
        pg "${psql[@]}" -c "CREATE DATABASE $DB"
    fi
    say "ready: $(dsn)"
}

stop() {
    if running; then
        pg "$PGBIN/pg_ctl" stop -w -m fast -D "$DATA" >/dev/null
        say "stopped"
    else
        say "not running"
    fi
}

status() {
    if running; then
        say "running: $(dsn)"
    elif [ -f "$DATA/PG_VERSION" ]; then
        say "stopped (data in $DATA)"
        return 3
    else
        say "not initialized (scripts/cluster.sh start creates it)"
        return 3
    fi
}

clean() {
    stop
    if [ -d "$DEMO" ]; then
        rm -rf -- "$DEMO"
        say "removed $DEMO"
    fi
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case $cmd in
    start) start ;;
    stop) stop ;;
    status) status ;;
    clean) clean ;;
    dsn) dsn ;;
    psql)
        running || die "not running: scripts/cluster.sh start"
        exec "$PGBIN/psql" "$(dsn)" "$@"
        ;;
    *)
        echo "usage: $0 {start|stop|status|psql [ARGS...]|dsn|clean}" >&2
        exit 2
        ;;
esac
