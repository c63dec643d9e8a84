#!/usr/bin/env bash
# make bench: install everything, start the demo cluster, install arch in it and
# run the benchmarks in bench/ against it (as the postgres OS user when root:
# bench_audit.py reads the audit backend's peak memory from /proc).
#
# Usage: scripts/bench.sh [audit|tpch|knowledge|advisors|install|all] [ARGS...]   (ARGS go to the chosen
#        script; default all, with each script's defaults). make bench ARGS='tpch --sf 0.01'
#        advisors (bench_advisors.py: pg_architect beside postgres-mcp's DTA, supabase's
#        index_advisor and a naive advisor) is not part of all: it first makes the peers'
#        environments (bench/peers.sh) and runs as the invoking user, not as postgres, because
#        the Python >= 3.12 of postgres-mcp's venv may live where only that user can read
#        (pyenv under /root); it reaches the cluster over its socket like the others.
#        make bench ARGS='advisors --workload skewed'
#        install (bench_install.py): sizes of fresh server / sidecar venvs, no cluster needed.
set -euo pipefail
umask 022

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$REPO/scripts/lib.sh"

which=all
case ${1:-} in
    audit|tpch|knowledge|advisors|install|all) which=$1; shift ;;
esac
if [ "$which" = install ]; then
    # Install sizes: builds throwaway venvs (as the caller: pip's cache), no cluster needed.
    exec env PGA_HOME="$PGA_HOME" /usr/bin/python3 "$REPO/bench/bench_install.py" --repo "$REPO" "$@"
fi
if [ "$which" = all ] && [ $# -gt 0 ]; then
    echo "bench: extra arguments need a benchmark name first: audit, tpch, knowledge, advisors or install" >&2
    exit 2
fi

bash "$REPO/scripts/setup.sh"
bash "$REPO/scripts/cluster.sh" start
DSN=$(bash "$REPO/scripts/cluster.sh" dsn)

# The benchmark scripts, where the postgres OS user can read them.
BENCH=$PGA_HOME/demo/bench
rm -rf -- "$BENCH"
mkdir -p "$BENCH"
cp "$REPO"/bench/*.py "$BENCH"/
if is_root; then chown -R postgres:postgres "$BENCH"; fi

cd "$PGA_HOME/demo"
run() {
    as_pg env HOME="$PGA_HOME/demo" PATH="$PGBIN:$VENV/bin:/usr/local/bin:/usr/bin:/bin" "$@"
}
run "$VENV/bin/pg-architect" install --dsn "$DSN"
if [ "$which" = audit ] || [ "$which" = all ]; then
    echo "bench: bench_audit.py"
    run "$VENV/bin/python" "$BENCH/bench_audit.py" --dsn "$DSN" "$@"
fi
if [ "$which" = tpch ] || [ "$which" = all ]; then
    echo "bench: bench_tpch.py"
    run "$VENV/bin/python" "$BENCH/bench_tpch.py" --dsn "$DSN" "$@"
fi
if [ "$which" = knowledge ] || [ "$which" = all ]; then
    echo "bench: bench_knowledge.py"
    run "$VENV/bin/python" "$BENCH/bench_knowledge.py" --dsn "$DSN" "$@"
fi
if [ "$which" = advisors ]; then
    echo "bench: bench_advisors.py"
    DTA_PY=$(bash "$REPO/bench/peers.sh" | tail -n1)
    mkdir -p "$REPO/bench/out"
    env PATH="$PGBIN:$VENV/bin:/usr/local/bin:/usr/bin:/bin" \
        "$VENV/bin/python" "$REPO/bench/bench_advisors.py" --dsn "$DSN" --dta-python "$DTA_PY" "$@"
fi
