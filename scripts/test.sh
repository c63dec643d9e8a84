#!/usr/bin/env bash
# make test: install everything, then run pytest with the venv's Python.
# Arguments go to pytest (make test ARGS='-k foo').
#
# As root the tests run as the postgres OS user (PostgreSQL refuses to run as
# root) on a fresh copy of the checkout in $PGA_HOME/src: the tracked and
# untracked-but-not-ignored files, owned by postgres. Otherwise they run in place.
# pytest's exit code 5 (no tests collected) counts as a failure.
set -euo pipefail
umask 022

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$REPO/scripts/lib.sh"

say() { printf 'test: %s\n' "$*"; }

bash "$REPO/scripts/setup.sh"

TEST_PATH="$PGBIN:$VENV/bin:/usr/local/bin:/usr/bin:/bin"

# NUL-separated list of the files to copy, relative to $REPO.
list_files() {
    local files
    if command -v git >/dev/null 2>&1 && [ -e "$REPO/.git" ] \
        && files=$(git -C "$REPO" ls-files -z -co --exclude-standard 2>/dev/null | tr '\0' '\n'); then
        # -c lists tracked files deleted in the work tree too: keep what exists.
        while IFS= read -r f; do
            if [ -e "$REPO/$f" ] || [ -L "$REPO/$f" ]; then printf '%s\0' "$f"; fi
        done <<<"$files"
    else
        (cd "$REPO" && find . \( -name .git -o -name venv -o -name .venv -o -name __pycache__ \
                -o -name .pytest_cache -o -name build -o -name dist -o -name '*.egg-info' \
                -o -path ./bench/out \) -prune -o \( -type f -o -type l \) -printf '%P\0')
    fi
}

rc=0
if is_root; then
    SRC=$PGA_HOME/src
    say "copying the checkout to $SRC"
    rm -rf -- "$SRC"
    mkdir -p "$SRC"
    list_files | (cd "$REPO" && tar -cf - --null --no-recursion -T -) | tar -xf - -C "$SRC"
    chown -R postgres:postgres "$SRC"
    cd "$SRC"
    runuser -u postgres -- env HOME="$SRC" PATH="$TEST_PATH" PGA_HOME="$PGA_HOME" \
        "$VENV/bin/python" -m pytest "$@" || rc=$?
else
    cd "$REPO"
    env PATH="$TEST_PATH" PGA_HOME="$PGA_HOME" "$VENV/bin/python" -m pytest "$@" || rc=$?
fi

if [ "$rc" -eq 5 ]; then
    say "pytest collected no tests: failing"
fi
exit "$rc"
