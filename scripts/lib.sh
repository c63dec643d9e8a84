# shellcheck shell=bash disable=SC2034
# Shared by the scripts in this directory (sourced, not executed).
# Defines PGA_HOME, PGBIN, PG_CONFIG, VENV and small helpers.

PGBIN=/usr/lib/postgresql/15/bin
PG_CONFIG=$PGBIN/pg_config

is_root() { [ "$(id -u)" -eq 0 ]; }

if [ -z "${PGA_HOME:-}" ]; then
    if is_root; then
        PGA_HOME=/var/lib/pg_architect
    else
        PGA_HOME=${XDG_DATA_HOME:-$HOME/.local/share}/pg_architect
    fi
fi
export PGA_HOME
VENV=$PGA_HOME/venv

# as_pg CMD ARGS...: run a command as the postgres OS user when root, as is otherwise.
as_pg() {
    if is_root; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}
