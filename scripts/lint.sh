#!/usr/bin/env bash
# make lint: ruff on the Python (plpy/, tests/, bench/, scripts/), mypy on the modules listed in
# pyproject's [tool.mypy], shellcheck on scripts/ and .ci/run. The tools come from the venv's
# lint extra (scripts/setup.sh installs it). Exits non-zero on the first tool that finds something.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$REPO/scripts/lib.sh"
say() { printf 'lint: %s\n' "$*"; }

bash "$REPO/scripts/setup.sh"
cd "$REPO"
say "ruff"
"$VENV/bin/ruff" check plpy tests bench scripts
say "mypy"
"$VENV/bin/mypy"
say "shellcheck"
"$VENV/bin/shellcheck" scripts/*.sh bench/peers.sh .ci/run
say "clean"
