"""The package's shape: no import cycle between its modules, every arch function is the
product's own call (kept out of the audited workload), one module talks to plpy's errors."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pg_architect
from pg_architect.sqltext import OWN_CALL

PKG = Path(pg_architect.__file__).parent
SQL = Path(__file__).resolve().parents[2] / "sql"


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Modules of the package that ``name`` imports, at any depth of its code (lazy imports
    count), except under ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in known else base)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                found.add(alias.name)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return {m for m in found if m in known and m != name and m != "pg_architect"}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (found := dfs(m)):
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (found := dfs(n)):
            return found
    return None


def test_every_module_imports():
    for name in _modules():
        if name.endswith("minilm_build"):
            continue
        importlib.import_module(name)


def test_no_import_cycle():
    mods = _modules()
    graph = {name: _imports(name, path, set(mods)) for name, path in mods.items()}
    assert graph["pg_architect.audit"], "the graph is read (audit imports its steps)"
    assert _cycle(graph) is None, " → ".join(_cycle(graph) or [])


def test_cycle_detection_can_fail():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_only_entry_calls_plpy_error():
    for name, path in _modules().items():
        text = path.read_text(encoding="utf-8")
        if name != "pg_architect.entry":
            assert "plpy.error(" not in text, name


def test_own_call_covers_every_arch_function():
    names = set()
    for f in SQL.glob("*.sql"):
        names |= set(re.findall(r"CREATE\s+(?:OR\s+REPLACE\s+)?(?:FUNCTION|PROCEDURE)\s+arch\.(\w+)\s*\(",
                                f.read_text(encoding="utf-8"), re.I))
    assert len(names) > 20
    for n in sorted(names):
        assert OWN_CALL.search(f"SELECT * FROM arch.{n}($1)"), n
        assert OWN_CALL.search(f"select ARCH . {n} ()"), n
    assert not OWN_CALL.search("SELECT * FROM arch.recommendation WHERE id = $1")
    assert not OWN_CALL.search("SELECT search(x) FROM research.t")


def test_privileges_in_one_file_that_sorts_last():
    files = sorted(SQL.glob("*.sql"))
    assert files[-1].name == "999_privileges.sql"
    for f in files[:-1]:
        for line in f.read_text(encoding="utf-8").splitlines():
            assert not re.match(r"\s*(GRANT|REVOKE)\b", line, re.I), f"{f.name}: {line}"
