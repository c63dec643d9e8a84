"""Pipeline step 4, advise (reading): which tables a statement reads, and how.

The input is statement text as pg_stat_statements records it (constants
normalised to ``$1``, ``$2`` ...) or as a DBA types it (with literals).  The
output, :class:`StatementInfo`, says for every user table which columns are
compared with ``=`` to a constant, which are range-filtered, joined, sorted,
grouped, which indexable expressions appear and which constant predicates
could serve as a partial-index ``WHERE``.  ``recommend`` turns that into index
candidates.

Two readers, each where it is strongest (see :mod:`pg_architect.pgparse`):

* PostgreSQL's own grammar (libpg_query, through pglast) is the gate: a text it rejects is a
  ``parse_error`` with PostgreSQL's message and the token it stopped at; a text it accepts is
  classified from its parse tree (one statement or several, query, utility or DDL, ``SELECT
  INTO``), and its parameters, including those no context types, come from the tree too.
* sqlglot then extracts the per-column facts from its typed expression tree, after the
  parameters are re-spaced (``$1+$2`` → ``$1+ $2``: whitespace only) because its tokenizer
  fails on glued parameters.  If sqlglot still cannot read a statement PostgreSQL accepted, the
  statement keeps its tables from libpg_query's tree (``reader = "postgres"``): it is planned
  and costed, without candidates from column facts.  Converting the whole pglast tree instead
  was not needed: in the 213-statement corpus of ``tests/test_corpus.py`` sqlglot reads all but
  two statements once re-spaced.

Everything here is a pure function of the text and a small ``catalog`` object
(see :func:`analyze_statement`), so it is unit-tested without a database.
Statements that cannot or need not be analysed raise :class:`SkipStatement`
with a short code and one plain sentence for the DBA.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeGuard, overload

from sqlglot import exp
from sqlglot.dialects.postgres import Postgres
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokens import TokenType

from . import pgparse
from .errors import SkipStatement
from .sqltext import _BARE_IDENT, _DOLLAR_TAG, PG_KEYWORDS, fold_identifier, quote_ident  # noqa: F401  (re-exported)

__all__ = [
    "Catalog",
    "SkipStatement",
    "StatementInfo",
    "TableUsage",
    "analyze_statement",
    "fold_identifier",
    "prepare_text",
    "quote_ident",
]

SYSTEM_SCHEMAS = frozenset({"pg_catalog", "information_schema", "pg_toast"})
OWN_SCHEMA = "arch"


class Catalog(Protocol):
    """What :func:`analyze_statement` needs to know about the database."""

    def resolve_table(self, schema: str | None, name: str) -> tuple[str, str] | None: ...

    def columns(self, schema: str, table: str) -> dict[str, str]: ...


@dataclass
class TableUsage:
    """How one statement uses one table (all of its aliases merged)."""

    schema: str
    name: str
    aliases: set[str] = field(default_factory=set)
    eq: list[str] = field(default_factory=list)
    range: list[str] = field(default_factory=list)
    join: list[str] = field(default_factory=list)
    order_by: list[tuple[str, str]] = field(default_factory=list)
    group_by: list[str] = field(default_factory=list)
    expr_eq: list[str] = field(default_factory=list)
    constant_preds: list[str] = field(default_factory=list)
    used_columns: set[str] | None = field(default_factory=set)
    outer_side: bool = False


@dataclass
class StatementInfo:
    kind: str
    text: str
    param_count: int
    tables: dict[tuple[str, str], TableUsage]
    has_limit: bool
    functions: list[str]
    free_params: list[int] = field(default_factory=list)  # $n whose type no context decides (pgparse)
    reader: str = "sqlglot"  # sqlglot: full analysis; postgres: tables only (libpg_query's tree)


# --------------------------------------------------------------------------
# Identifiers
# --------------------------------------------------------------------------



# --------------------------------------------------------------------------
# Lexical scan (strings, quoted identifiers, comments, dollar quotes)
# --------------------------------------------------------------------------



def _ident_char(ch: str) -> bool:
    return ch.isalnum() or ch in "_$"


@dataclass
class _Scan:
    segments: list[tuple[str, int, int]]  # (kind, start, end) kind: code|string|ident|dollar|comment
    unterminated: str | None  # kind of a segment that runs to the end of the text

    def masked(self, text: str) -> str:
        """The text with everything but code replaced by NUL characters."""
        parts = []
        for kind, start, end in self.segments:
            parts.append(text[start:end] if kind == "code" else "\0" * (end - start))
        return "".join(parts)


def _scan(text: str) -> _Scan:
    segments: list[tuple[str, int, int]] = []
    unterminated = None
    n = len(text)
    i = 0
    code_start = 0

    def push(kind: str, start: int, end: int) -> None:
        nonlocal code_start
        if start > code_start:
            segments.append(("code", code_start, start))
        segments.append((kind, start, end))
        code_start = end

    while i < n:
        c = text[i]
        if c == "-" and text.startswith("--", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            push("comment", i, j)
            i = j
        elif c == "/" and text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            if depth:
                unterminated = "comment"
            push("comment", i, j)
            i = j
        elif c == "'":
            escape = i > 0 and text[i - 1] in "eE" and (i < 2 or not _ident_char(text[i - 2]))
            j = i + 1
            while True:
                if j >= n:
                    unterminated = "string"
                    j = n
                    break
                ch = text[j]
                if escape and ch == "\\":
                    j += 2
                    continue
                if ch == "'":
                    if j + 1 < n and text[j + 1] == "'":
                        j += 2
                        continue
                    j += 1
                    break
                j += 1
            j = min(j, n)
            push("string", i, j)
            i = j
        elif c == '"':
            j = i + 1
            while True:
                if j >= n:
                    unterminated = "ident"
                    j = n
                    break
                if text[j] == '"':
                    if j + 1 < n and text[j + 1] == '"':
                        j += 2
                        continue
                    j += 1
                    break
                j += 1
            push("ident", i, j)
            i = j
        elif c == "$" and (i == 0 or not _ident_char(text[i - 1])) and (m := _DOLLAR_TAG.match(text, i)):
            tag = m.group(0)
            j = text.find(tag, m.end())
            if j < 0:
                unterminated = "dollar"
                j = n
            else:
                j += len(tag)
            push("dollar", i, j)
            i = j
        else:
            i += 1
    if n > code_start:
        segments.append(("code", code_start, n))
    return _Scan(segments, unterminated)


# --------------------------------------------------------------------------
# prepare_text
# --------------------------------------------------------------------------

_TYPE_WORDS = [
    r"timestamp(?:\s*\(\s*\d+\s*\))?\s+with(?:out)?\s+time\s+zone",
    r"time(?:\s*\(\s*\d+\s*\))?\s+with(?:out)?\s+time\s+zone",
    r"double\s+precision",
    r"character\s+varying(?:\s*\(\s*\d+\s*\))?",
    r"bit\s+varying(?:\s*\(\s*\d+\s*\))?",
    r"timestamptz(?:\s*\(\s*\d+\s*\))?",
    r"timestamp(?:\s*\(\s*\d+\s*\))?",
    r"timetz(?:\s*\(\s*\d+\s*\))?",
    r"time(?:\s*\(\s*\d+\s*\))?",
    r"interval(?:\s*\(\s*\d+\s*\))?",
    r"numeric(?:\s*\(\s*\d+\s*(?:,\s*-?\d+\s*)?\))?",
    r"decimal(?:\s*\(\s*\d+\s*(?:,\s*-?\d+\s*)?\))?",
    r"varchar(?:\s*\(\s*\d+\s*\))?",
    r"character(?:\s*\(\s*\d+\s*\))?",
    r"char(?:\s*\(\s*\d+\s*\))?",
    r"date",
    r"bigint",
    r"smallint",
    r"integer",
    r"int[248]?",
    r"float[48]?",
    r"real",
    r"boolean",
    r"bool",
    r"text",
    r"jsonb",
    r"json",
    r"uuid",
    r"inet",
    r"cidr",
    r"macaddr8?",
    r"bytea",
    r"money",
    r"xml",
    r"oid",
    r"regclass",
    r"tsquery",
    r"tsvector",
    r"point",
]
_TYPED_PARAM = re.compile(
    r"(?<![\w$.\0\"])(?P<type>" + "|".join(_TYPE_WORDS) + r")\s+\$(?P<n>\d+)(?![\w$])",
    re.IGNORECASE,
)
# pg_stat_statements turns EXTRACT(year FROM x) into EXTRACT($1 FROM x), which does not parse:
# the field must be a keyword. date_part($1::text, x) plans the same way.
_EXTRACT_PARAM = re.compile(r"(?<![\w$.\0\"])extract\s*\(\s*\$(?P<n>\d+)\s+from\s+", re.IGNORECASE)


def _normalise_type(type_text: str) -> str:
    t = " ".join(type_text.lower().split())
    return re.sub(r"\s*([(),])\s*", lambda m: m.group(1) + (" " if m.group(1) == "," else ""), t)


def prepare_text(sql: str) -> str:
    """Text PostgreSQL can PREPARE.

    Strips surrounding whitespace and trailing semicolons and comments, and
    rewrites typed literals whose constant pg_stat_statements normalised to a
    parameter (``interval $1`` → ``$1::interval``; likewise timestamp, date,
    time, numeric ...).  String literals, quoted identifiers and comments are
    never touched.
    """
    if not sql:
        return ""
    scan = _scan(sql)
    masked = scan.masked(sql)
    out: list[str] = []
    last = 0
    for m in _TYPED_PARAM.finditer(masked):
        out.append(sql[last : m.start()])
        out.append(f"${m.group('n')}::{_normalise_type(m.group('type'))}")
        last = m.end()
    out.append(sql[last:])
    text = "".join(out).lstrip()
    masked = _scan(text).masked(text)
    out, last = [], 0
    for m in _EXTRACT_PARAM.finditer(masked):
        out.append(text[last : m.start()])
        out.append(f"date_part(${m.group('n')}::text, ")
        last = m.end()
    out.append(text[last:])
    text = "".join(out)

    # Cut trailing whitespace, semicolons and comments.
    scan = _scan(text)
    cut = 0
    for kind, start, end in reversed(scan.segments):
        if kind == "comment" and not (scan.unterminated == "comment" and end == len(text)):
            continue
        if kind == "code":
            chunk = text[start:end].rstrip(" \t\r\n\f\v;")
            if not chunk:
                continue
            cut = start + len(chunk)
        else:
            cut = end
        break
    return text[:cut]


# --------------------------------------------------------------------------
# Classification before parsing
# --------------------------------------------------------------------------

_DDL = frozenset(["create", "alter", "drop", "comment"])

_TRUNCATION_TAIL_WORDS = frozenset(
    """
    and or not where from join on select by in is like ilike between then when else case as set
    values into having limit offset union intersect except with left right inner outer full cross
    using distinct group order over partition filter any all some exists
    """.split()
)


def _first_word(masked: str) -> str:
    m = re.match(r"[\s(\0]*([A-Za-z_]+)", masked)
    return m.group(1).lower() if m else ""


def _looks_truncated(original: str, text: str) -> str | None:
    """Why ``text`` looks cut off, or None."""
    scan = _scan(text)
    if scan.unterminated:
        what = {
            "string": "inside a string literal",
            "ident": "inside a quoted identifier",
            "dollar": "inside a dollar-quoted string",
            "comment": "inside a comment",
        }[scan.unterminated]
        return what
    masked = scan.masked(text)
    depth = masked.count("(") - masked.count(")")
    if depth > 0:
        return "with unbalanced parentheses"
    tail = masked.rstrip()
    if tail and tail[-1] in ",(=<>+-/|&.:":
        return f"with a dangling '{tail[-1]}'"
    m = re.search(r"([A-Za-z_]+)\s*$", tail)
    if m and m.group(1).lower() in _TRUNCATION_TAIL_WORDS:
        return f"with a dangling {m.group(1).upper()}"
    size = len(original.encode("utf-8"))
    for k in range(10, 21):
        if (1 << k) - 4 <= size <= (1 << k) - 1:
            return f"at {size} bytes, just under {1 << k}"
    return None


def _truncated_reason(why: str) -> str:
    return (
        f"The statement text ends {why}, so it was probably cut off when it was recorded "
        "(PostgreSQL keeps at most track_activity_query_size bytes of a statement in pg_stat_activity, "
        "and tools that copy from there inherit the cut); raise that setting or pass the complete statement."
    )


def _shorten(message: str, limit: int = 160) -> str:
    first = " ".join(str(message).split("\n")[0].split())
    first = re.sub(r"\x1b\[[0-9;]*m", "", first)
    return first if len(first) <= limit else first[: limit - 1] + "…"


# --------------------------------------------------------------------------
# Scopes and sources
# --------------------------------------------------------------------------


class _Source:
    """One entry of a FROM list: a table, a derived relation or an ignored table."""

    __slots__ = ("alias", "colmap", "columns", "hidden", "key", "kind", "outer")

    def __init__(self, kind: str, alias: str, key: tuple[str, str] | None = None,
                 columns: Any = None, colmap: dict[str, str] | None = None):
        self.kind = kind  # 'table' | 'derived' | 'ignored'
        self.alias = alias
        self.key = key
        self.columns = columns  # table/ignored: dict name->type; derived: list of names or None
        self.colmap = colmap or {}
        self.hidden = {real for a, real in self.colmap.items() if a != real}
        self.outer = False

    def real_column(self, name: str) -> str | None:
        if name in self.colmap:
            return self.colmap[name]
        if name in self.hidden or self.columns is None:
            return None
        return name if name in self.columns else None


class _Scope:
    __slots__ = ("ctes", "parent", "select_aliases", "sources")

    def __init__(self, parent: _Scope | None, ctes: dict[str, list[str] | None]):
        self.parent = parent
        self.sources: list[_Source] = []
        self.ctes = ctes
        self.select_aliases: dict[str, exp.Expression] = {}


@overload
def _unwrap(node: exp.Expression) -> exp.Expression: ...
@overload
def _unwrap(node: exp.Expression | None) -> exp.Expression | None: ...
def _unwrap(node: exp.Expression | None) -> exp.Expression | None:
    while isinstance(node, exp.Paren):
        node = node.this
    return node


def _conjuncts(node: exp.Expression | None) -> list[exp.Expression]:
    out: list[exp.Expression] = []
    stack = [node]
    while stack:
        n = _unwrap(stack.pop())
        if n is None:
            continue
        if isinstance(n, exp.And):
            stack.append(n.expression)
            stack.append(n.this)
        else:
            out.append(n)
    return out


def _add(lst: list, item: Any) -> None:
    if item not in lst:
        lst.append(item)


_NOT_VALUE = (exp.Column, exp.Subquery, exp.Select, exp.AggFunc, exp.Window, exp.Star, exp.SetOperation)
_NO_INDEX_EXPR = (exp.AggFunc, exp.Window, exp.Case, exp.If, exp.Array, exp.Subquery, exp.Select,
                  exp.Parameter, exp.Placeholder, exp.Star, exp.Exists)
_RENDER_BY_SQLGLOT = (exp.JSONExtract, exp.JSONExtractScalar, exp.JSONBExtract, exp.JSONBExtractScalar)
_VOLATILE_NODES = (exp.CurrentTimestamp, exp.CurrentDate, exp.CurrentTime, exp.Rand)
_NOT_IMMUTABLE_FUNCTIONS = frozenset(
    """
    now random clock_timestamp statement_timestamp transaction_timestamp timeofday age to_char to_date
    to_timestamp current_setting nextval currval txid_current pg_backend_pid gen_random_uuid uuid_generate_v4
    """.split()
)
_FUNC_NAMES_WITHOUT_META = {exp.Extract: "extract", exp.Trim: "trim", exp.StrPosition: "position"}
_NOT_A_FUNCTION = (exp.Cast, exp.TryCast, exp.Case, exp.If, exp.Array, exp.Paren)
_KEEP_RAW_TOKENS = frozenset(
    {
        TokenType.STRING, TokenType.NUMBER, TokenType.IDENTIFIER, TokenType.NATIONAL_STRING,
        TokenType.BYTE_STRING, TokenType.HEREDOC_STRING, TokenType.UNICODE_STRING,
        TokenType.BIT_STRING, TokenType.HEX_STRING, TokenType.RAW_STRING,
    }
)


def _is_value(node: exp.Expression | None) -> bool:
    """A constant for one execution: params, literals, casts/functions of those, scalar subqueries."""
    n = _unwrap(node)
    if n is None or isinstance(n, exp.Null):
        return False
    if isinstance(n, exp.Subquery):
        return True
    return n.find(*_NOT_VALUE) is None


def _render_literal(node: exp.Expression | None) -> str | None:
    n = _unwrap(node)
    if isinstance(n, exp.Literal):
        if n.is_string:
            return "'" + n.this.replace("'", "''") + "'"
        return str(n.this)
    if isinstance(n, exp.Boolean):
        return "true" if n.this else "false"
    if isinstance(n, exp.Neg) and isinstance(n.this, exp.Literal) and not n.this.is_string:
        return "-" + str(n.this.this)
    if isinstance(n, exp.Cast) and isinstance(n.to, exp.DataType):
        inner = _render_literal(n.this)
        if inner is not None:
            return f"{inner}::{n.to.sql('postgres').lower()}"
    return None


def _direction(ordered: exp.Ordered) -> str:
    desc = bool(ordered.args.get("desc"))
    nulls_first = bool(ordered.args.get("nulls_first"))
    out = "DESC" if desc else "ASC"
    if nulls_first != desc:  # PostgreSQL's default: NULLS LAST for ASC, NULLS FIRST for DESC
        out += " NULLS FIRST" if nulls_first else " NULLS LAST"
    return out


class _ColRef:
    __slots__ = ("column", "src")

    def __init__(self, src: _Source | None, column: str | None):
        self.src = src
        self.column = column

    @property
    def is_table_column(self) -> bool:
        return self.src is not None and self.src.kind == "table" and self.column is not None


class _TableColRef(_ColRef):
    """For the type checker only (never instantiated): a _ColRef whose is_table_column holds."""
    __slots__ = ()
    src: _Source
    column: str


def _table_column(ref: _ColRef | None) -> TypeGuard[_TableColRef]:
    """``ref is not None and ref.is_table_column``, in a form the type checker narrows on."""
    return ref is not None and ref.is_table_column


# --------------------------------------------------------------------------
# The analyser
# --------------------------------------------------------------------------


class _Analyzer:
    def __init__(self, catalog: Catalog, text: str, tokens: list):
        self.catalog = catalog
        self.text = text
        self.tokens = tokens
        self.token_at = {t.start: i for i, t in enumerate(tokens)}
        self.tables: dict[tuple[str, str], TableUsage] = {}
        self.table_sources: list[_Source] = []
        self.functions: list[str] = []
        self.has_limit = False
        self.seen_catalog = False
        self.seen_own = False
        self._columns: dict[tuple[str, str], dict[str, str]] = {}
        self._outputs: dict[int, list[tuple[str, _ColRef | None]] | None] = {}

    # ---- catalog ----------------------------------------------------------
    def _catalog_columns(self, key: tuple[str, str]) -> dict[str, str]:
        if key not in self._columns:
            self._columns[key] = dict(self.catalog.columns(key[0], key[1]) or {})
        return self._columns[key]

    def _usage(self, src: _Source) -> TableUsage:
        assert src.key is not None
        u = self.tables.get(src.key)
        if u is None:
            u = self.tables[src.key] = TableUsage(schema=src.key[0], name=src.key[1])
        return u

    # ---- statements ---------------------------------------------------------
    def statement(self, node: exp.Expr) -> str:
        if isinstance(node, (exp.Select, exp.SetOperation, exp.Subquery, exp.Paren)):
            if isinstance(node, exp.Select) and node.args.get("into"):
                raise SkipStatement("ddl", "SELECT ... INTO creates a table; it is not analysed for indexes.")
            self._query(node, None, {})
            return "select"
        if isinstance(node, exp.Update):
            self._update(node, None, {})
            return "update"
        if isinstance(node, exp.Delete):
            self._delete(node, None, {})
            return "delete"
        if isinstance(node, exp.Insert):
            self._insert(node, None, {})
            return "insert"
        if isinstance(node, exp.Merge):
            self._merge(node, None, {})
            return "merge"
        if isinstance(node, exp.Values):
            raise SkipStatement("no_tables", "The statement reads no table.")
        raise SkipStatement(
            "not_supported",
            f"Only SELECT, INSERT ... SELECT, UPDATE and DELETE are analysed, not {node.key.upper()}.",
        )

    def _with(self, node: exp.Expression, parent: _Scope | None,
              ctes: dict[str, list[str] | None]) -> dict[str, list[str] | None]:
        w = node.args.get("with_")
        if not w:
            return ctes
        ctes = dict(ctes)
        if w.args.get("recursive"):
            for cte in w.expressions:
                ctes[cte.alias_or_name] = None
        for cte in w.expressions:
            body = cte.this
            alias = cte.args.get("alias")
            alias_cols = [c.name for c in alias.columns] if alias is not None and alias.columns else None
            if isinstance(body, (exp.Update, exp.Delete, exp.Insert)):
                self._dml(body, parent, ctes)
                out = None
            else:
                out = self._query(body, parent, ctes)
            if alias_cols:
                ctes[cte.alias_or_name] = alias_cols
            elif out is not None:
                ctes[cte.alias_or_name] = [name for name, _ in out]
            else:
                ctes[cte.alias_or_name] = None
        return ctes

    def _dml(self, node: exp.Update | exp.Delete | exp.Insert, parent: _Scope | None, ctes: dict) -> None:
        if isinstance(node, exp.Update):
            self._update(node, parent, ctes)
        elif isinstance(node, exp.Delete):
            self._delete(node, parent, ctes)
        else:
            self._insert(node, parent, ctes)

    def _query(self, node: exp.Expression, parent: _Scope | None,
               ctes: dict[str, list[str] | None]) -> list[tuple[str, _ColRef | None]] | None:
        if isinstance(node, (exp.Subquery, exp.Paren)):
            if node.args.get("limit"):
                self.has_limit = True
            out = self._query(node.this, parent, ctes)
            self._outputs[id(node)] = out
            return out
        if isinstance(node, exp.SetOperation):
            ctes = self._with(node, parent, ctes)
            out = self._query(node.this, parent, ctes)
            self._query(node.expression, parent, ctes)
            if node.args.get("limit"):
                self.has_limit = True
            for key in ("order", "limit", "offset"):
                if node.args.get(key) is not None:
                    self._walk(node.args[key], _Scope(parent, ctes))
            self._outputs[id(node)] = out
            return out
        if isinstance(node, exp.Select):
            out = self._select(node, parent, ctes)
            self._outputs[id(node)] = out
            return out
        if isinstance(node, (exp.Update, exp.Delete, exp.Insert)):
            self._dml(node, parent, ctes)
            return None
        self._walk(node, _Scope(parent, ctes))
        return None

    def _select(self, node: exp.Select, parent: _Scope | None,
                ctes: dict[str, list[str] | None]) -> list[tuple[str, _ColRef | None]] | None:
        ctes = self._with(node, parent, ctes)
        scope = _Scope(parent, ctes)
        joins = self._from(node.args.get("from_"), node.args.get("joins") or [], scope)

        outputs: list[tuple[str, _ColRef | None]] | None = []
        select_list = list(node.expressions)
        for e in select_list:
            if isinstance(e, exp.Star):
                for src in scope.sources:
                    self._mark_all(src)
                outputs = None
                continue
            if isinstance(e, exp.Column) and isinstance(e.this, exp.Star):
                self._use_column(e, scope)
                outputs = None
                continue
            self._walk(e, scope)
            inner = e.this if isinstance(e, exp.Alias) else e
            if isinstance(e, exp.Alias):
                scope.select_aliases[e.alias] = e.this
            if outputs is not None:
                ref = self._colref(inner, scope)
                outputs.append((e.alias_or_name, ref if _table_column(ref) else None))

        self._joins(joins, scope)

        where = node.args.get("where")
        if where is not None:
            self._walk(where.this, scope)
            self._predicates(where.this, scope, None)

        group = node.args.get("group")
        if group is not None:
            self._walk(group, scope)
            for item in group.expressions:
                target = self._output_target(item, scope, select_list, prefer_alias=False)
                ref = self._colref(target, scope)
                if _table_column(ref):
                    _add(self._usage(ref.src).group_by, ref.column)

        for key in ("having", "qualify", "distinct", "windows", "offset"):
            if node.args.get(key) is not None:
                value = node.args[key]
                for v in value if isinstance(value, list) else [value]:
                    self._walk(v, scope)

        order = node.args.get("order")
        if order is not None:
            self._walk(order, scope)
            self._order_by(order, scope, select_list)

        limit = node.args.get("limit")
        if limit is not None:
            self.has_limit = True
            self._walk(limit, scope)
        return outputs

    def _output_target(self, item: exp.Expression, scope: _Scope, select_list: list,
                       prefer_alias: bool) -> exp.Expression:
        """Map ORDER BY / GROUP BY ordinals and output names to the select-list expression."""
        n = _unwrap(item)
        if isinstance(n, exp.Literal) and not n.is_string and str(n.this).isdigit():
            pos = int(n.this)
            if 1 <= pos <= len(select_list):
                target = select_list[pos - 1]
                return target.this if isinstance(target, exp.Alias) else target
            return n
        if (isinstance(n, exp.Column) and not n.table and n.name in scope.select_aliases
                and (prefer_alias or self._resolve(n, scope) is None)):
            return scope.select_aliases[n.name]
        return n

    def _order_by(self, order: exp.Order, scope: _Scope, select_list: list) -> None:
        items: list[tuple[str, str]] = []
        src: _Source | None = None
        for ordered in order.expressions:
            target = self._output_target(ordered.this, scope, select_list, prefer_alias=True)
            ref = self._colref(target, scope)
            if not _table_column(ref):
                return
            if src is not None and ref.src is not src:
                return
            src = ref.src
            items.append((ref.column, _direction(ordered)))
        if src is not None:
            usage = self._usage(src)
            if not usage.order_by:
                # An ORDER BY naming a column twice is legal; keep the first.
                first: dict[str, str] = {}
                for column, direction in items:
                    first.setdefault(column, direction)
                usage.order_by = list(first.items())

    def _update(self, node: exp.Update, parent: _Scope | None, ctes: dict) -> None:
        ctes = self._with(node, parent, ctes)
        scope = _Scope(parent, ctes)
        self._add_source(scope, node.this)
        joins = self._from(node.args.get("from_"), [], scope)
        for assignment in node.expressions:
            if isinstance(assignment, exp.EQ):
                # The target column is written, not read: only the new value is walked.
                self._walk(assignment.expression, scope)
            else:
                self._walk(assignment, scope)
        self._joins(joins, scope)
        where = node.args.get("where")
        if where is not None:
            self._walk(where.this, scope)
            self._predicates(where.this, scope, None)
        if node.args.get("returning") is not None:
            self._walk(node.args["returning"], scope)

    def _delete(self, node: exp.Delete, parent: _Scope | None, ctes: dict) -> None:
        ctes = self._with(node, parent, ctes)
        scope = _Scope(parent, ctes)
        self._add_source(scope, node.this)
        joins: list = []
        for item in node.args.get("using") or []:
            self._add_source(scope, item)
            for j in item.args.get("joins") or []:
                joins.append(self._join(j, scope))
        self._joins(joins, scope)
        where = node.args.get("where")
        if where is not None:
            self._walk(where.this, scope)
            self._predicates(where.this, scope, None)
        if node.args.get("returning") is not None:
            self._walk(node.args["returning"], scope)

    def _merge(self, node: exp.Merge, parent: _Scope | None, ctes: dict) -> None:
        """MERGE INTO target USING source ON cond: the ON condition joins target and source."""
        ctes = self._with(node, parent, ctes)
        scope = _Scope(parent, ctes)
        self._add_source(scope, node.this)
        self._add_source(scope, node.args.get("using"))
        on = node.args.get("on")
        if on is not None:
            self._walk(on, scope)
            self._predicates(on, scope, None)
        whens = node.args.get("whens")
        for when in (whens.expressions if whens is not None else []):
            if when.args.get("condition") is not None:
                self._walk(when.args["condition"], scope)
            then = when.args.get("then")
            if isinstance(then, exp.Update):
                for assignment in then.expressions:
                    self._walk(assignment.expression if isinstance(assignment, exp.EQ) else assignment, scope)
            elif isinstance(then, exp.Insert) and then.args.get("expression") is not None:
                self._walk(then.args["expression"], scope)

    def _insert(self, node: exp.Insert, parent: _Scope | None, ctes: dict) -> None:
        ctes = self._with(node, parent, ctes)
        source = node.args.get("expression")
        if not isinstance(source, (exp.Select, exp.SetOperation, exp.Subquery)):
            raise SkipStatement(
                "not_supported",
                "INSERT ... VALUES reads no table, so there is nothing to index; only INSERT ... SELECT is analysed.",
            )
        self._query(source, parent, ctes)

    # ---- FROM -------------------------------------------------------------------
    def _from(self, from_: exp.From | None, joins: list, scope: _Scope) -> list:
        pending = []
        if from_ is not None:
            self._add_source(scope, from_.this)
            for j in from_.this.args.get("joins") or []:
                pending.append(self._join(j, scope))
            for extra in from_.expressions or []:  # FROM a, b (older sqlglot shape)
                self._add_source(scope, extra)
        for j in joins:
            pending.append(self._join(j, scope))
        return pending

    def _join(self, join: exp.Join, scope: _Scope):
        before = list(scope.sources)
        self._add_source(scope, join.this)
        new = scope.sources[len(before):]
        side = (join.side or "").upper()
        if side == "LEFT":
            for s in new:
                s.outer = True
            allowed: list[_Source] | None = new
        elif side == "RIGHT":
            for s in before:
                s.outer = True
            allowed = before
        elif side == "FULL":
            for s in before + new:
                s.outer = True
            allowed = []
        else:
            allowed = None
        return join, allowed, before, new

    def _joins(self, pending: list, scope: _Scope) -> None:
        for join, allowed, before, new in pending:
            for ident in join.args.get("using") or []:
                name = ident.name if isinstance(ident, (exp.Identifier, exp.Column)) else str(ident)
                left = next((s for s in reversed(before) if s.real_column(name)), None)
                right = next((s for s in new if s.real_column(name)), None)
                for s in (left, right):
                    if s is not None and s.kind == "table":
                        col = s.real_column(name)
                        u = self._usage(s)
                        _add(u.join, col)
                        if u.used_columns is not None:
                            u.used_columns.add(col)
            on = join.args.get("on")
            if on is not None:
                self._walk(on, scope)
                self._predicates(on, scope, allowed)

    def _add_source(self, scope: _Scope, node: exp.Expression | None) -> None:
        if not isinstance(node, exp.Expression):
            raise SkipStatement("parse_error", "The statement could not be parsed: a table name is missing.")
        alias_node = node.args.get("alias")
        alias_cols = []
        if isinstance(alias_node, exp.TableAlias) and alias_node.columns:
            alias_cols = [c.name for c in alias_node.columns]
        alias = alias_node.name if alias_node is not None and alias_node.name else ""

        if isinstance(node, exp.Table) and isinstance(node.this, exp.Identifier):
            name = node.name
            schema = node.db or None
            alias = alias or name
            if schema is None and name in scope.ctes:
                cols = scope.ctes[name]
                scope.sources.append(_Source("derived", alias, columns=alias_cols or cols))
            elif schema in SYSTEM_SCHEMAS:
                self.seen_catalog = True
                scope.sources.append(self._ignored_source(alias, (schema, name)))
            else:
                key = self.catalog.resolve_table(schema, name)
                if key is None:
                    shown = f"{quote_ident(schema)}.{quote_ident(name)}" if schema else quote_ident(name)
                    raise SkipStatement(
                        "unknown_table",
                        f"Table {shown} was not found: it was dropped since the statement ran, "
                        "or its schema is not on the search_path.",
                    )
                key = (key[0], key[1])
                if key[0] in SYSTEM_SCHEMAS:
                    self.seen_catalog = True
                    scope.sources.append(self._ignored_source(alias, key))
                elif key[0] == OWN_SCHEMA:
                    self.seen_own = True
                    scope.sources.append(self._ignored_source(alias, key))
                else:
                    columns = self._catalog_columns(key)
                    colmap = dict(zip(alias_cols, list(columns)[: len(alias_cols)]))
                    src = _Source("table", alias, key, columns, colmap)
                    scope.sources.append(src)
                    self.table_sources.append(src)
                    self._usage(src).aliases.add(alias)
            return

        if isinstance(node, exp.Lateral):
            inner = node.this
            if isinstance(inner, (exp.Subquery, exp.Select)):
                out = self._query(inner, scope, scope.ctes)
                cols = alias_cols or ([n for n, _ in out] if out is not None else None)
            else:
                self._walk(inner, scope)
                cols = alias_cols or None
            scope.sources.append(_Source("derived", alias, columns=cols))
            return

        if isinstance(node, exp.Subquery):
            out = self._query(node.this, scope, scope.ctes)
            cols = alias_cols or ([n for n, _ in out] if out is not None else None)
            scope.sources.append(_Source("derived", alias, columns=cols))
            return

        # Table functions (generate_series, unnest, user functions), VALUES lists.
        body = node.this if isinstance(node, exp.Table) else node
        for child in ([body] if body is not node else list(node.iter_expressions())):
            if child is not alias_node:
                self._walk(child, scope)
        scope.sources.append(_Source("derived", alias, columns=alias_cols or None))

    def _ignored_source(self, alias: str, key: tuple[str, str]) -> _Source:
        # Columns unknown on purpose: no catalog round trip for tables we never index.
        return _Source("ignored", alias, key, None)

    # ---- columns -------------------------------------------------------------
    def _resolve(self, col: exp.Column, scope: _Scope) -> _ColRef | None:
        name = col.name
        qual = col.table
        db = col.db
        s: _Scope | None = scope
        while s is not None:
            if qual:
                for src in s.sources:
                    if src.alias == qual and (not db or (src.key is not None and src.key[0] == db)):
                        return _ColRef(src, src.real_column(name))
            else:
                hits = []
                unknown = False
                for src in s.sources:
                    real = src.real_column(name)
                    if real is not None:
                        hits.append(_ColRef(src, real))
                    elif src.columns is None:
                        unknown = True
                if len(hits) == 1:
                    return hits[0]
                if hits or unknown:
                    return None  # ambiguous
            s = s.parent
        return None

    def _colref(self, node: exp.Expression | None, scope: _Scope) -> _ColRef | None:
        n = _unwrap(node)
        if isinstance(n, exp.Column) and not isinstance(n.this, exp.Star):
            return self._resolve(n, scope) or _ColRef(None, None)
        return None

    def _mark_all(self, src: _Source) -> None:
        if src.kind == "table":
            self._usage(src).used_columns = None

    def _use_column(self, col: exp.Column, scope: _Scope) -> None:
        if isinstance(col.this, exp.Star):
            s: _Scope | None = scope
            while s is not None:
                for src in s.sources:
                    if src.alias == col.table:
                        self._mark_all(src)
                        return
                s = s.parent
            return
        ref = self._resolve(col, scope)
        if _table_column(ref):
            u = self._usage(ref.src)
            if u.used_columns is not None:
                u.used_columns.add(ref.column)
            return
        if ref is None and not col.table:
            # A whole-row reference: SELECT t FROM t, row_to_json(t)
            s = scope
            while s is not None:
                for src in s.sources:
                    if src.alias == col.name:
                        self._mark_all(src)
                        return
                s = s.parent

    def _func_name(self, node: exp.Func) -> str | None:
        """The function's name as written (folded), or None for operators and keywords."""
        start, end = node.meta.get("start"), node.meta.get("end")
        if start is not None and end is not None:
            return fold_identifier(self.text[start : end + 1]).strip('"')
        return next((v for t, v in _FUNC_NAMES_WITHOUT_META.items() if isinstance(node, t)), None)

    def _note_function(self, node: exp.Func) -> None:
        if isinstance(node, _NOT_A_FUNCTION) or node.find(exp.Column) is None:
            return
        name = self._func_name(node)
        if name:
            _add(self.functions, name)

    def _not_immutable(self, node: exp.Expression, column_type: str) -> bool:
        """Best-effort: would PostgreSQL refuse this as an index expression (not IMMUTABLE)?

        Catches the common cases: time-zone dependent conversions of timestamptz, DateStyle
        dependent casts between text and date/time types, to_char(), age(), now() and friends.
        """
        col = " ".join(column_type.lower().split())
        tz = col in ("timestamp with time zone", "timestamptz") or (col.startswith("timestamp(") and "with time" in col)
        datetime_col = col.startswith(("timestamp", "date", "time", "interval"))
        text_col = col.startswith(("text", "character", "varchar", "char", "bpchar", "name", "citext"))
        if node.find(*_VOLATILE_NODES) is not None:
            return True
        for cast in [n for n in node.walk() if type(n) is exp.Cast]:
            target = cast.to.sql("postgres").lower() if isinstance(cast.to, exp.DataType) else ""
            if not isinstance(_unwrap(cast.this), exp.Column):
                continue
            if tz and not target.startswith(("timestamptz", "timestamp with time zone")):
                return True
            if text_col and target.startswith(("timestamp", "date", "time", "interval")):
                return True
            if datetime_col and target.startswith(("text", "varchar", "char")):
                return True
        for func in [n for n in node.walk() if isinstance(n, exp.Func)]:
            name = self._func_name(func) or ""
            if name in _NOT_IMMUTABLE_FUNCTIONS:
                return True
            if not tz:
                continue
            # The timestamptz column itself (not e.g. col AT TIME ZONE 'UTC') feeds a zone-dependent function.
            arg = func.args.get("expression") if isinstance(func, exp.Extract) else func.this
            if not isinstance(_unwrap(arg), exp.Column):
                continue
            if isinstance(func, (exp.Extract, exp.Date)) or name in ("date", "date_part", "extract"):
                return True
            if isinstance(func, exp.TimestampTrunc) and func.args.get("zone") is None:
                return True
        return False

    def _walk(self, node: exp.Expression | None, scope: _Scope) -> None:
        stack = [node]
        while stack:
            n = stack.pop()
            if n is None:
                continue
            if isinstance(n, (exp.Select, exp.SetOperation, exp.Subquery)):
                self._query(n, scope, scope.ctes)
                continue
            if isinstance(n, exp.Column):
                self._use_column(n, scope)
                continue
            if isinstance(n, exp.Func):
                self._note_function(n)
            stack.extend(reversed(list(n.iter_expressions())))

    # ---- predicates -------------------------------------------------------------
    def _predicates(self, cond: exp.Expression, scope: _Scope, allowed: list[_Source] | None) -> None:
        for conj in _conjuncts(cond):
            self._predicate(conj, scope, allowed)

    def _single_ok(self, src: _Source, allowed: list[_Source] | None) -> bool:
        return allowed is None or any(src is a for a in allowed)

    def _predicate(self, conj: exp.Expression, scope: _Scope, allowed: list[_Source] | None) -> None:
        if isinstance(conj, exp.EQ):
            left, right = _unwrap(conj.this), _unwrap(conj.expression)
            if (isinstance(left, exp.Tuple) and isinstance(right, exp.Tuple)
                    and len(left.expressions) == len(right.expressions)):
                # (a, b) = ($1, $2) is a = $1 AND b = $2
                for a, b in zip(left.expressions, right.expressions):
                    self._equality(a, b, scope, allowed)
                    self._equality(b, a, scope, allowed)
                return
            self._equality(conj.this, conj.expression, scope, allowed)
            self._equality(conj.expression, conj.this, scope, allowed)
        elif isinstance(conj, (exp.GT, exp.GTE, exp.LT, exp.LTE)):
            for a, b in ((conj.this, conj.expression), (conj.expression, conj.this)):
                ref = self._colref(a, scope)
                if _table_column(ref) and _is_value(b) and self._single_ok(ref.src, allowed):
                    _add(self._usage(ref.src).range, ref.column)
        elif isinstance(conj, exp.Between):
            ref = self._colref(conj.this, scope)
            if (_table_column(ref) and _is_value(conj.args.get("low"))
                    and _is_value(conj.args.get("high")) and self._single_ok(ref.src, allowed)):
                _add(self._usage(ref.src).range, ref.column)
        elif isinstance(conj, exp.In):
            ref = self._colref(conj.this, scope)
            if not _table_column(ref):
                return
            query = conj.args.get("query")
            if query is not None:
                _add(self._usage(ref.src).join, ref.column)
                self._subquery_output_join(query)
            elif (conj.expressions and all(_is_value(e) for e in conj.expressions)
                  and self._single_ok(ref.src, allowed)):
                _add(self._usage(ref.src).eq, ref.column)
        elif isinstance(conj, exp.Like):
            ref = self._colref(conj.this, scope)
            pattern = _unwrap(conj.expression)
            if (_table_column(ref) and isinstance(pattern, exp.Literal) and pattern.is_string
                    and pattern.this and pattern.this[0] not in "%_" and self._single_ok(ref.src, allowed)):
                _add(self._usage(ref.src).range, ref.column)
        elif isinstance(conj, exp.Is):
            ref = self._colref(conj.this, scope)
            if (_table_column(ref) and isinstance(conj.expression, exp.Null)
                    and self._single_ok(ref.src, allowed)):
                neg = " NOT" if conj.args.get("negate") else ""
                _add(self._usage(ref.src).constant_preds, f"{quote_ident(ref.column)} IS{neg} NULL")
        elif isinstance(conj, exp.Column):
            ref = self._colref(conj, scope)
            if _table_column(ref) and self._is_boolean(ref) and self._single_ok(ref.src, allowed):
                _add(self._usage(ref.src).constant_preds, quote_ident(ref.column))
        elif isinstance(conj, exp.Not):
            inner = _unwrap(conj.this)
            ref = self._colref(inner, scope)
            if isinstance(inner, exp.Is) and isinstance(inner.expression, exp.Null) and not inner.args.get("negate"):
                ref = self._colref(inner.this, scope)
                if _table_column(ref) and self._single_ok(ref.src, allowed):
                    _add(self._usage(ref.src).constant_preds, f"{quote_ident(ref.column)} IS NOT NULL")
            elif (isinstance(inner, exp.Column) and _table_column(ref) and self._is_boolean(ref)
                  and self._single_ok(ref.src, allowed)):
                _add(self._usage(ref.src).constant_preds, f"NOT {quote_ident(ref.column)}")

    def _is_boolean(self, ref: _TableColRef) -> bool:
        typ = (ref.src.columns or {}).get(ref.column, "") if isinstance(ref.src.columns, dict) else ""
        return not typ or typ.lower() in ("boolean", "bool")

    def _equality(self, left: exp.Expression, right: exp.Expression, scope: _Scope,
                  allowed: list[_Source] | None) -> None:
        lref = self._colref(left, scope)
        r = _unwrap(right)
        if _table_column(lref):
            rref = self._colref(r, scope)
            if rref is not None:
                if rref.src is not lref.src:
                    _add(self._usage(lref.src).join, lref.column)
                return
            if isinstance(r, exp.Any):
                inner = _unwrap(r.this)
                if isinstance(inner, (exp.Subquery, exp.Select)):
                    _add(self._usage(lref.src).join, lref.column)
                    self._subquery_output_join(inner)
                elif _is_value(inner) and self._single_ok(lref.src, allowed):
                    _add(self._usage(lref.src).eq, lref.column)
                return
            if _is_value(r) and self._single_ok(lref.src, allowed):
                usage = self._usage(lref.src)
                _add(usage.eq, lref.column)
                literal = _render_literal(r)
                if literal is not None:
                    _add(usage.constant_preds, f"{quote_ident(lref.column)} = {literal}")
            return
        if lref is not None or not _is_value(r):
            return
        expr = self._index_expr(left, scope)
        if expr is None or not self._single_ok(expr[0], allowed):
            return
        src = expr[0]
        column = next((c.name for c in _unwrap(left).find_all(exp.Column)), None)
        column_type = (src.columns or {}).get(column, "") if isinstance(src.columns, dict) else ""
        if not self._not_immutable(_unwrap(left), column_type):
            _add(self._usage(src).expr_eq, expr[1])

    def _subquery_output_join(self, query: exp.Expression) -> None:
        out = self._outputs.get(id(query))
        if out is None and isinstance(query, exp.Subquery):
            out = self._outputs.get(id(query.this))
        ref = out[0][1] if out and len(out) == 1 else None
        if _table_column(ref):  # outputs hold table-column references only (else None)
            _add(self._usage(ref.src).join, ref.column)

    # ---- expressions ------------------------------------------------------------
    def _index_expr(self, node: exp.Expression, scope: _Scope) -> tuple[_Source, str] | None:
        n = _unwrap(node)
        if type(n) is exp.Cast and isinstance(n.to, exp.DataType):
            inner = _unwrap(n.this)
            ref = self._colref(inner, scope)
            if ref is not None:
                if not _table_column(ref):
                    return None
                src, base = ref.src, quote_ident(ref.column)
            else:
                sub = self._index_expr(inner, scope)
                if sub is None:
                    return None
                src, base = sub
                if base.startswith("(") and base.endswith(")"):
                    base = base[1:-1]
            return src, f"({base}::{n.to.sql('postgres').lower()})"
        if not isinstance(n, exp.Func) or isinstance(n, (_NO_INDEX_EXPR, _NOT_A_FUNCTION)):
            return None
        if n.find(*_NO_INDEX_EXPR) is not None and not isinstance(n, _RENDER_BY_SQLGLOT):
            return None
        if isinstance(n, _RENDER_BY_SQLGLOT) and n.find(exp.Parameter, exp.Placeholder, exp.Subquery, exp.Select):
            return None
        cols = list(n.find_all(exp.Column))
        if not cols:
            return None
        all_refs = [self._colref(c, scope) for c in cols]
        refs = [r for r in all_refs if _table_column(r)]
        if len(refs) != len(all_refs):
            return None
        if len({id(r.src) for r in refs}) != 1 or len({r.column for r in refs}) != 1:
            return None
        src = refs[0].src
        if isinstance(n, _RENDER_BY_SQLGLOT):
            copy = n.copy()
            for c in list(copy.find_all(exp.Column)):
                c.replace(exp.column(exp.Identifier(this=c.name, quoted=quote_ident(c.name) != c.name)))
            return src, "(" + copy.sql("postgres") + ")"
        text = self._render_span(n, cols)
        return (src, text) if text else None

    def _render_span(self, func: exp.Func, cols: list[exp.Column]) -> str | None:
        """Render a function call from the statement's own tokens, unqualified and canonically quoted."""
        start = func.meta.get("start")
        i = self.token_at.get(start) if start is not None else None
        if i is None or i + 1 >= len(self.tokens) or self.tokens[i + 1].token_type != TokenType.L_PAREN:
            return None
        depth = 0
        j = i + 1
        while j < len(self.tokens):
            tt = self.tokens[j].token_type
            if tt == TokenType.L_PAREN:
                depth += 1
            elif tt == TokenType.R_PAREN:
                depth -= 1
                if depth == 0:
                    break
            j += 1
        if depth:
            return None
        column_at: dict[int, str] = {}
        qualifier_at: set[int] = set()
        for c in cols:
            ident = c.this
            if ident.meta.get("start") is None:
                return None
            column_at[ident.meta["start"]] = c.name
            for part in ("table", "db", "catalog"):
                q = c.args.get(part)
                if isinstance(q, exp.Identifier) and q.meta.get("start") is not None:
                    qualifier_at.add(q.meta["start"])
        pieces: list[str] = []
        k = i
        while k <= j:
            tok = self.tokens[k]
            if tok.start in qualifier_at and k + 1 <= j and self.tokens[k + 1].token_type == TokenType.DOT:
                k += 2
                continue
            raw = self.text[tok.start : tok.end + 1]
            if tok.start in column_at:
                piece = quote_ident(column_at[tok.start])
            elif tok.token_type in _KEEP_RAW_TOKENS:
                piece = raw
            else:
                piece = fold_identifier(raw)
            pieces.append(piece)
            k += 1
        return _join_pieces(pieces)


def _join_pieces(pieces: list[str]) -> str:
    out = ""
    prev = ""
    for p in pieces:
        if not out:
            out = p
        elif (p in (")", ",", "::", ".", "[", "]") or prev in ("(", "::", ".", "[")
              or (p == "(" and (prev[-1].isalnum() or prev[-1] in '_"'))):
            out += p
        else:
            out += " " + p
        prev = p
    return out


# --------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------


def analyze_statement(sql: str, catalog: Catalog, max_length: int = 100_000) -> StatementInfo:
    """Analyse one statement; raise :class:`SkipStatement` when it cannot or need not be.

    ``catalog.resolve_table(schema, name)`` returns the ``(schema, table)`` a
    name refers to (schema None: search_path lookup), or None; names arrive
    folded by SQL rules.  ``catalog.columns(schema, table)`` returns column
    name → type name in attnum order.
    """
    try:
        return _analyze(sql, catalog, max_length)
    except SkipStatement:
        raise
    except RecursionError:
        raise SkipStatement("parse_error", "The statement is nested too deeply to analyse.") from None
    except Exception as e:
        raise SkipStatement(
            "internal", _shorten(f"The analyser failed on this statement ({type(e).__name__}: {e}).", 240)
        ) from e


def _analyze(sql: str, catalog: Catalog, max_length: int) -> StatementInfo:
    if sql is None or not sql.strip():
        raise SkipStatement("empty", "The statement text is empty.")
    if len(sql) > max_length:
        raise SkipStatement(
            "too_long", f"The statement is {len(sql)} characters long, over the {max_length}-character analysis limit."
        )
    text = prepare_text(sql)
    scan = _scan(text)
    masked = scan.masked(text)
    if not masked.strip("\0 \t\r\n\f\v;"):
        raise SkipStatement("empty", "The statement text holds only comments.")

    word = _first_word(masked)
    # The gate: PostgreSQL's own grammar (libpg_query) decides whether the text is one
    # statement, which kind, and which parameters it has (see pgparse).
    try:
        reading = pgparse.read(text)
    except pgparse.PgParseError as e:
        why = _looks_truncated(sql, text)
        if why:
            raise SkipStatement("truncated", _truncated_reason(why)) from None
        where = ""
        if e.position is not None:
            near = e.near or ""
            where = f" (character {e.position + 1}{': ' + repr(near) if near else ', end of text'})"
        raise SkipStatement("parse_error", _shorten(f"PostgreSQL's parser rejects the statement: {e.message}{where}.",
                                                    240)) from None
    if reading.statements == 0:
        raise SkipStatement("empty", "The statement text holds only comments.")
    if reading.statements > 1:
        raise SkipStatement(
            "multi_statement", "The text holds several statements; each must be analysed on its own."
        )
    if reading.kind == "ddl" or (reading.kind == "utility" and word in _DDL):
        raise SkipStatement("ddl", f"{_command(word, reading)} is a schema change (DDL); only queries are analysed.")
    if reading.kind == "utility":
        raise SkipStatement("utility", f"{_command(word, reading)} is a utility command; only queries are analysed.")
    if reading.select_into:
        raise SkipStatement("ddl", "SELECT ... INTO creates a table; it is not analysed for indexes.")

    text = pgparse.sqlglot_text(text)  # `$1+$2` → `$1+ $2`: whitespace only
    dialect = Postgres()
    try:
        tokens = dialect.tokenize(text)
        trees = [t for t in dialect.parser().parse(tokens, text) if t is not None]
    except (ParseError, TokenError):
        return _read_by_postgres(text, reading, catalog)
    if len(trees) != 1 or isinstance(trees[0], exp.Command):
        return _read_by_postgres(text, reading, catalog)
    tree = trees[0]
    for ident in tree.find_all(exp.Identifier):
        if not ident.quoted:
            ident.set("this", fold_identifier(ident.this))

    analyzer = _Analyzer(catalog, text, tokens)
    kind = analyzer.statement(tree)

    if not analyzer.tables:
        if analyzer.seen_own:
            raise SkipStatement("own", "The statement reads only pg_architect's own tables in schema arch.")
        if analyzer.seen_catalog:
            raise SkipStatement("catalog", "The statement reads only system catalogs, which are not indexed by users.")
        raise SkipStatement("no_tables", "The statement reads no table.")

    for src in analyzer.table_sources:
        if src.outer:
            assert src.key is not None  # a table source always has its key
            analyzer.tables[src.key].outer_side = True

    return StatementInfo(
        kind=kind,
        text=text,
        param_count=max(reading.params, default=0),
        tables=analyzer.tables,
        has_limit=analyzer.has_limit,
        functions=analyzer.functions,
        free_params=reading.free_params,
        reader="sqlglot",
    )


def _command(word: str, reading: pgparse.Reading) -> str:
    """How a DBA names the command: its first word, or the parse node without 'Stmt'."""
    return word.upper() if word else re.sub(r"Stmt$", "", reading.node)


def _read_by_postgres(text: str, reading: pgparse.Reading, catalog: Catalog) -> StatementInfo:
    """A statement PostgreSQL reads and sqlglot does not: its tables, from libpg_query's tree.

    The statement is still planned and costed; the per-column facts (equality, range, join,
    order) that only the sqlglot reader extracts are unknown, so no index candidate comes from it.
    """
    tables: dict[tuple[str, str], TableUsage] = {}
    seen_catalog = seen_own = False
    for schema, name in pgparse.relations(reading):
        if schema in SYSTEM_SCHEMAS:
            seen_catalog = True
            continue
        key = catalog.resolve_table(schema, name)
        if key is None:
            shown = f"{quote_ident(schema)}.{quote_ident(name)}" if schema else quote_ident(name)
            raise SkipStatement(
                "unknown_table",
                f"Table {shown} was not found: it was dropped since the statement ran, "
                "or its schema is not on the search_path.",
            )
        key = (key[0], key[1])
        if key[0] in SYSTEM_SCHEMAS:
            seen_catalog = True
        elif key[0] == OWN_SCHEMA:
            seen_own = True
        elif key not in tables:
            tables[key] = TableUsage(schema=key[0], name=key[1], used_columns=None)
    if not tables:
        if seen_own:
            raise SkipStatement("own", "The statement reads only pg_architect's own tables in schema arch.")
        if seen_catalog:
            raise SkipStatement("catalog", "The statement reads only system catalogs, which are not indexed by users.")
        raise SkipStatement("no_tables", "The statement reads no table.")
    return StatementInfo(kind=reading.kind, text=text, param_count=max(reading.params, default=0),
                         tables=tables, has_limit=False, functions=[], free_params=reading.free_params,
                         reader="postgres")
