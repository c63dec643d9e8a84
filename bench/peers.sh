#!/usr/bin/env bash
# The peers' environments for bench/bench_advisors.py, created idempotently:
#   $PGA_HOME/peers/postgres-mcp/   a virtualenv with PyPI postgres-mcp (needs Python >= 3.12, so it
#                                   is built with PGA_PY312, default pyenv's 3.12.1), used by
#                                   bench/peer_dta.py;
#   supabase index_advisor          nothing is installed: bench_advisors.py reads its SQL at run time
#                                   from a git directory or a file (--index-advisor-sql); this script
#                                   only says whether the default one is there.
# Prints the venv's python on the last line of stdout.
#
# Usage: bench/peers.sh
# Environment: PGA_HOME, PGA_PY312, POSTGRES_MCP_VERSION (0.3.0), PGA_PGLAST_SPEC (see below),
#              PGA_INDEX_ADVISOR_GIT
set -euo pipefail
umask 022

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$REPO/scripts/lib.sh"

say() { printf 'peers: %s\n' "$*" >&2; }
die() { printf 'peers: error: %s\n' "$*" >&2; exit 1; }

PY312=${PGA_PY312:-/root/.pyenv/versions/3.12.1/bin/python}
MCP_VERSION=${POSTGRES_MCP_VERSION:-0.3.0}
PGLAST_SPEC=${PGA_PGLAST_SPEC:-pglast>=7.2,<8}
PEERS=$PGA_HOME/peers
MCP_VENV=$PEERS/postgres-mcp

[ -x "$PY312" ] || die "no Python 3.12 at $PY312 (set PGA_PY312 to a python >= 3.12)"
"$PY312" -c 'import sys; sys.exit(sys.version_info < (3, 12))' \
    || die "$PY312 is older than 3.12: postgres-mcp needs >= 3.12"

mkdir -p "$PEERS"
stamp="$MCP_VENV/.pga-peer"
want="postgres-mcp==$MCP_VERSION $PGLAST_SPEC mcp<2 $("$PY312" -VV | head -n1)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
    say "creating $MCP_VENV ($want)"
    rm -rf -- "$MCP_VENV"
    "$PY312" -m venv "$MCP_VENV"
    "$MCP_VENV/bin/python" -m pip install -q --upgrade pip >&2
    # Their package without dependencies, then its own Requires-Dist with two adjustments (their
    # code is not touched): postgres-mcp 0.3.0 pins pglast==7.2.0, which the package index reachable
    # here does not serve (it has 7.20+ of the same 7.x series, the same parser API): widened to
    # PGA_PGLAST_SPEC; and it asks for mcp>=1.5.0, written for mcp 1.x (mcp 2 renamed FastMCP, so
    # the package no longer imports): capped below 2.
    "$MCP_VENV/bin/python" -m pip install -q --no-deps "postgres-mcp==$MCP_VERSION" >&2
    mapfile -t reqs < <("$MCP_VENV/bin/python" - "$PGLAST_SPEC" <<'PY'
import re, sys
from importlib.metadata import requires
for r in requires("postgres-mcp") or []:
    if ";" in r and "extra" in r.split(";", 1)[1]:
        continue
    if re.match(r"pglast\b", r):
        r = sys.argv[1]
    elif re.match(r"mcp\b", r) and "<" not in r:
        r += ",<2"
    print(r)
PY
    )
    say "dependencies: ${reqs[*]}"
    "$MCP_VENV/bin/python" -m pip install -q "${reqs[@]}" >&2
    echo "$want" >"$stamp"
else
    say "postgres-mcp $MCP_VERSION present in $MCP_VENV"
fi
"$MCP_VENV/bin/python" -c 'import postgres_mcp.index.dta_calc' \
    || die "postgres-mcp is installed in $MCP_VENV but its DTA does not import"

IA=${PGA_INDEX_ADVISOR_GIT:-/work/.mirror/supabase+index_advisor/repo}
if git --git-dir="$IA" rev-parse -q --verify HEAD >/dev/null 2>&1; then
    say "supabase index_advisor: $IA ($(git --git-dir="$IA" rev-parse --short HEAD))"
else
    say "supabase index_advisor: no git directory at $IA (pass --index-advisor-sql FILE to the bench)"
fi
echo "$MCP_VENV/bin/python"
