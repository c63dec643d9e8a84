"""Index candidates from a statement's usage facts.

:func:`generate_candidates` turns a :class:`~pg_architect.analyze.StatementInfo`
and per-table catalog facts (:class:`TableMeta`) into :class:`Candidate`
indexes of every kind the audit proves with hypopg: single-column,
multi-column, expression, partial and covering.  Candidates already served by
an existing index (:func:`is_covered`) are dropped.  Pure functions: no
database access here.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, field

from ..analyze import StatementInfo, TableUsage, quote_ident

__all__ = [
    "KINDS",
    "Candidate",
    "ExistingIndex",
    "TableMeta",
    "generate_candidates",
    "is_covered",
    "normalize_sql_fragment",
    "quote_ident",
]

KINDS = ("multi", "covering", "partial", "expression", "single")
MAX_NAME_BYTES = 63


@dataclass
class ExistingIndex:
    """An index the table already has; keys rendered like candidate keys."""

    name: str
    keys: list[str]
    include: list[str] = field(default_factory=list)
    predicate: str | None = None
    unique: bool = False
    am: str = "btree"


@dataclass
class TableMeta:
    schema: str
    name: str
    reltuples: float = 0.0
    n_distinct: dict[str, float] = field(default_factory=dict)
    indexes: list[ExistingIndex] = field(default_factory=list)


# --------------------------------------------------------------------------
# Key helpers
# --------------------------------------------------------------------------

_IDENT = r'(?:[a-z_][a-z0-9_]*|"(?:[^"]|"")+")'
_PLAIN_KEY = re.compile(rf"({_IDENT})(\s+(?:ASC|DESC))?(\s+NULLS\s+(?:FIRST|LAST))?", re.IGNORECASE)


def _unquote(ident: str) -> str:
    if len(ident) >= 2 and ident[0] == '"' and ident[-1] == '"':
        return ident[1:-1].replace('""', '"')
    return ident


def _key_column(key: str) -> str | None:
    """The column a plain key (``"UserId" DESC``) names, or None for an expression key."""
    m = _PLAIN_KEY.fullmatch(key.strip())
    return _unquote(m.group(1)) if m else None


def _outer_parens(text: str) -> bool:
    """True when the whole text is one parenthesised group: ``(a::date)`` but not ``(a) + (b)``."""
    text = text.strip()
    if not (text.startswith("(") and text.endswith(")")):
        return False
    depth = 0
    quote = None
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = None
            continue
        if ch in "'\"":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0 and i != len(text) - 1:
                return False
    return depth == 0


def _index_element(key: str) -> str:
    if _key_column(key) is not None or _outer_parens(key):
        return key
    return f"({key})"


_TRANSLIT = str.maketrans({"ß": "ss", "æ": "ae", "Æ": "AE", "ø": "o", "Ø": "O", "œ": "oe", "Œ": "OE",
                           "ł": "l", "Ł": "L", "đ": "d", "Đ": "D", "þ": "th", "Þ": "TH", "ð": "d"})


def _ascii_words(text: str) -> tuple[str, bool]:
    """ASCII name fragment for ``text`` and whether it was reproduced without loss."""
    lossless = re.fullmatch(r"[a-z0-9_]+", text) is not None
    t = unicodedata.normalize("NFKD", text.translate(_TRANSLIT))
    t = "".join(ch for ch in t if not unicodedata.combining(ch)).lower()
    t = re.sub(r"[^a-z0-9]+", "_", t).strip("_")
    return t, lossless


# --------------------------------------------------------------------------
# Candidate
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    schema: str
    table: str
    keys: tuple[str, ...]
    include: tuple[str, ...] = ()
    where: str | None = None
    kind: str = "single"

    def definition(self) -> str:
        """Canonical, name-free definition; the deduplication fingerprint."""
        elements = ", ".join(_index_element(k) for k in self.keys)
        out = f"ON {quote_ident(self.schema)}.{quote_ident(self.table)} USING btree ({elements})"
        if self.include:
            out += f" INCLUDE ({', '.join(self.include)})"
        if self.where:
            out += f" WHERE ({self.where})"
        return out

    def name(self) -> str:
        """An ASCII index name of at most 63 bytes, unique per definition."""
        parts: list[str] = []
        lossless = True
        table_part, ok = _ascii_words(self.table)
        parts.append(table_part)
        lossless &= ok
        for key in self.keys:
            m = _PLAIN_KEY.fullmatch(key.strip())
            if m:
                word, ok = _ascii_words(_unquote(m.group(1)))
                suffix = "".join((m.group(2) or "") + (m.group(3) or "")).lower().split()
                parts.append("_".join([word, *suffix]))
            else:
                word, ok = _ascii_words(key)
                ok = False  # punctuation of an expression is not in the name
                parts.append(word)
            lossless &= ok
        if self.include:
            parts.append("incl")
            for col in self.include:
                word, ok = _ascii_words(_unquote(col))
                parts.append(word)
                lossless &= ok
        if self.where:
            parts.append("part")
            lossless = False  # the predicate itself is not in the name
        base = "_".join(p for p in parts if p) or "index"
        name = f"{base}_idx"
        if lossless and len(name) <= MAX_NAME_BYTES:
            return name
        digest = hashlib.sha1(self.definition().encode("utf-8")).hexdigest()[:6]
        room = MAX_NAME_BYTES - len("_idx") - 1 - len(digest)
        return f"{base[:room].rstrip('_')}_{digest}_idx"

    def hypo_sql(self) -> str:
        """Statement for hypopg_create_index()."""
        return f"CREATE INDEX {self.definition()}"

    def ddl(self) -> str:
        return f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {quote_ident(self.name())} {self.definition()}"

    def rollback_ddl(self) -> str:
        return f"DROP INDEX CONCURRENTLY IF EXISTS {quote_ident(self.schema)}.{quote_ident(self.name())}"

    def columns(self) -> list[str]:
        """Column names (unquoted) the index stores: keys first, then INCLUDE columns."""
        out: list[str] = []
        for key in self.keys:
            col = _key_column(key)
            for c in [col] if col is not None else _expression_columns(key):
                if c not in out:
                    out.append(c)
        for inc in self.include:
            c = _unquote(inc)
            if c not in out:
                out.append(c)
        return out


# --------------------------------------------------------------------------
# Normalisation of SQL fragments (keys, predicates) for comparison
# --------------------------------------------------------------------------

_FRAGMENT_TOKEN = re.compile(
    r"""
    (?P<string>[eE]?'(?:[^']|'')*')
  | (?P<ident>"(?:[^"]|"")*")
  | (?P<word>[^\W\d][\w$]*)
  | (?P<number>\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)
  | (?P<op>::|->>|->|\#>>|\#>|<=|>=|<>|!=|\|\||[^\s\w])
    """,
    re.VERBOSE,
)
_TRIVIAL_CASTS = {("text",), ("varchar",), ("character", "varying"), ("bpchar",), ("name",)}
_NOT_CALLS = frozenset({"and", "or", "not", "when", "then", "else", "case", "is", "distinct", "from"})
_SQL_WORDS = frozenset(
    """
    and or not is null true false in like ilike between case when then else end as at time zone
    with without asc desc nulls first last from for distinct similar to any all some array
    collate using escape interval
    """.split()
)


def _fragment_tokens(text: str) -> list[tuple[str, str]]:
    out = []
    for m in _FRAGMENT_TOKEN.finditer(text):
        kind = m.lastgroup or ""
        value = m.group()
        if kind == "word":
            value = value.lower()
        elif kind == "ident":
            inner = _unquote(value)
            if quote_ident(inner) == inner:
                kind, value = "word", inner
        out.append((kind, value))
    return out


def normalize_sql_fragment(text: str | None) -> str | None:
    """Canonical form of an index key or predicate for comparison.

    Case and whitespace are ignored, grouping parentheses dropped, identifiers
    unquoted when quoting is not needed, casts to text types removed and
    default ordering options (``ASC``, ``NULLS LAST`` after ASC, ``NULLS
    FIRST`` after DESC) dropped, so ``lower((email)::text)`` equals
    ``lower(email)`` and ``((status = 'pending'::text) AND (x IS NULL))`` equals
    ``status = 'pending' AND x IS NULL``.  Heuristic: used only to decide
    whether an existing index already serves a candidate.
    """
    if text is None:
        return None
    toks = _fragment_tokens(text)
    # Drop casts to text-like types.
    i = 0
    out: list[tuple[str, str]] = []
    while i < len(toks):
        if toks[i] == ("op", "::"):
            for cast in sorted(_TRIVIAL_CASTS, key=len, reverse=True):
                words = tuple(v for _, v in toks[i + 1 : i + 1 + len(cast)])
                if words == cast and all(k == "word" for k, _ in toks[i + 1 : i + 1 + len(cast)]):
                    i += 1 + len(cast)
                    break
            else:
                out.append(toks[i])
                i += 1
            continue
        out.append(toks[i])
        i += 1
    toks = out
    # Drop grouping parentheses (those not opening a function call).
    drop: set[int] = set()
    stack: list[tuple[int, bool]] = []
    for idx, (kind, value) in enumerate(toks):
        if value == "(" and kind == "op":
            prev = toks[idx - 1] if idx else None
            call = prev is not None and prev[0] in ("word", "ident") and prev[1] not in _NOT_CALLS
            stack.append((idx, call))
        elif value == ")" and kind == "op" and stack:
            start, call = stack.pop()
            if not call:
                drop.update((start, idx))
    toks = [t for idx, t in enumerate(toks) if idx not in drop]
    ordered = [v for _, v in toks]
    # Default ordering options.
    if ((ordered[-2:] == ["nulls", "last"] and "desc" not in ordered[-3:-2])
            or ordered[-3:] == ["desc", "nulls", "first"]):
        ordered = ordered[:-2]
    if ordered[-1:] == ["asc"]:
        ordered = ordered[:-1]
    return " ".join(ordered)


def _expression_columns(expr: str) -> list[str]:
    """Identifiers in an expression that are neither functions, types nor SQL words."""
    toks = _fragment_tokens(expr)
    out: list[str] = []
    for idx, (kind, value) in enumerate(toks):
        if kind not in ("word", "ident"):
            continue
        nxt = toks[idx + 1][1] if idx + 1 < len(toks) else None
        prev = toks[idx - 1][1] if idx else None
        if nxt == "(" or prev == "::" or (kind == "word" and value in _SQL_WORDS):
            continue
        name = _unquote(value) if kind == "ident" else value
        if name not in out:
            out.append(name)
    return out


def is_covered(candidate: Candidate, indexes: list[ExistingIndex]) -> ExistingIndex | None:
    """The existing index that already serves ``candidate``, or None.

    An existing btree index serves it when the candidate's keys are a leading
    prefix of its keys, its predicate equals the candidate's (both none, or the
    same after normalisation) and every INCLUDE column of the candidate is a key
    or INCLUDE column of the index.
    """
    want_keys = [normalize_sql_fragment(k) for k in candidate.keys]
    want_where = normalize_sql_fragment(candidate.where) if candidate.where else None
    want_include = {normalize_sql_fragment(c) for c in candidate.include}
    for idx in indexes:
        if (idx.am or "btree").lower() != "btree":
            continue
        keys = [normalize_sql_fragment(k) for k in idx.keys]
        if keys[: len(want_keys)] != want_keys:
            continue
        have_where = normalize_sql_fragment(idx.predicate) if idx.predicate else None
        if have_where != want_where:
            continue
        if not want_include <= set(keys) | {normalize_sql_fragment(c) for c in idx.include}:
            continue
        return idx
    return None


# --------------------------------------------------------------------------
# Candidate generation
# --------------------------------------------------------------------------


def _distinct_values(column: str, meta: TableMeta | None) -> float | None:
    if meta is None:
        return None
    nd = meta.n_distinct.get(column)
    if nd is None:
        return None
    if nd < 0:
        rows = meta.reltuples if meta.reltuples and meta.reltuples > 0 else 1e6
        return -nd * rows
    return float(nd)


def _by_selectivity(columns: list[str], meta: TableMeta | None) -> list[str]:
    """Most selective first; columns without statistics after, in statement order."""

    def sort_key(col: str) -> tuple[int, float]:
        d = _distinct_values(col, meta)
        return (1, 0.0) if d is None else (0, -d)

    return sorted(columns, key=sort_key)


_FLIP = {"ASC": "DESC", "DESC": "ASC", "FIRST": "LAST", "LAST": "FIRST"}


def _order_keys(order_by: list[tuple[str, str]]) -> list[str]:
    """Index keys for ORDER BY items; all-same-direction sorts use plain keys (backward scans)."""
    if not order_by:
        return []
    parsed = []
    for col, direction in order_by:
        words = direction.upper().split()
        desc = bool(words) and words[0] == "DESC"
        nulls = words[-1] if len(words) >= 3 and words[-2] == "NULLS" else ("FIRST" if desc else "LAST")
        parsed.append((col, desc, nulls))
    if parsed[0][1]:  # first item DESC: flip everything, the index is scanned backwards
        parsed = [(c, not d, _FLIP[n]) for c, d, n in parsed]
    keys = []
    for col, desc, nulls in parsed:
        key = quote_ident(col)
        if desc:
            key += " DESC"
        default_nulls = "FIRST" if desc else "LAST"
        if nulls != default_nulls:
            key += f" NULLS {nulls}"
        keys.append(key)
    return keys


_FIXED_PRED = re.compile(rf"(?:NOT\s+)?({_IDENT})(?:\s*=\s*.+|\s+IS\s+NULL)?", re.IGNORECASE | re.DOTALL)


def _fixed_columns(preds: list[str]) -> list[str]:
    """Columns whose value a constant predicate fixes (``col = 'x'``, ``col IS NULL``, ``flag``, ``NOT flag``)."""
    out = []
    for p in preds:
        m = _FIXED_PRED.fullmatch(p.strip())
        if m and not re.search(r"\bIS\s+NOT\s+NULL\s*$", p, re.IGNORECASE):
            col = _unquote(m.group(1))
            if col not in out:
                out.append(col)
    return out


def _plain_kind(keys: list[str]) -> str:
    return "multi" if len(keys) > 1 else "single"


def _table_candidates(info: StatementInfo, u: TableUsage, meta: TableMeta | None,
                      max_columns: int, max_include: int) -> list[Candidate]:
    def make(keys: list[str], kind: str, include: list[str] | tuple = (), where: str | None = None) -> Candidate:
        return Candidate(u.schema, u.name, tuple(keys), tuple(include), where, kind)

    eq_cols = _by_selectivity(list(dict.fromkeys([*u.eq, *u.join])), meta)
    eq_keys = [quote_ident(c) for c in eq_cols]
    range_cols = [c for c in u.range if c not in eq_cols]
    order_tail = [(c, d) for c, d in u.order_by if c not in eq_cols]
    order_keys = _order_keys(order_tail)
    group_keys = [quote_ident(c) for c in u.group_by if c not in eq_cols]

    # The best plain key set: equality, then one range column or the ORDER BY columns.
    main = list(eq_keys)
    if order_tail and (not range_cols or range_cols[0] == order_tail[0][0]):
        main += order_keys
    elif range_cols:
        main.append(quote_ident(range_cols[0]))
    main = main[:max_columns]

    out: list[Candidate] = []
    plain_sets: list[list[str]] = [main]
    for r in range_cols:
        plain_sets.append((eq_keys + [quote_ident(r)])[:max_columns])
    if order_keys:
        plain_sets.append((eq_keys + order_keys)[:max_columns])
    if group_keys:
        plain_sets.append((eq_keys + group_keys)[:max_columns])
    if len(eq_keys) > 1:
        plain_sets.append(eq_keys[:max_columns])
    for keys in plain_sets:
        if len(keys) > 1:
            out.append(make(keys, "multi"))

    # Covering: the best key set plus the statement's other columns of this table.
    if u.used_columns is not None and main:
        in_keys = {_key_column(k) for k in main}
        rest = sorted(c for c in u.used_columns if c not in in_keys)
        if 1 <= len(rest) <= max_include:
            out.append(make(main, "covering", [quote_ident(c) for c in rest]))

    # Partial: the best key set restricted by the constant predicates.
    if u.constant_preds:
        fixed = set(_fixed_columns(u.constant_preds))
        where = " AND ".join(u.constant_preds)
        pool = list(dict.fromkeys(main + eq_keys + [quote_ident(c) for c in range_cols] + order_keys))
        keys = [k for k in pool if _key_column(k) not in fixed][:max_columns]
        if not keys and meta is not None:
            pk = next((i for i in meta.indexes if i.unique and not i.predicate and i.keys), None)
            if pk is not None and _key_column(pk.keys[0]) not in fixed:
                keys = [pk.keys[0]]
        if keys:
            out.append(make(keys, "partial", where=where))

    # Expressions compared with =, alone and followed by the equality columns.
    for expr in u.expr_eq:
        out.append(make([expr], "expression"))
        if eq_keys:
            out.append(make(([expr] + eq_keys)[:max_columns], "expression"))

    # Single columns.
    singles = [*u.eq, *u.range, *u.join]
    for col in dict.fromkeys(singles):
        out.append(make([quote_ident(col)], "single"))
    if info.has_limit and u.order_by:
        for col, direction in u.order_by:
            out.append(make(_order_keys([(col, direction)]), "single"))
    if len(main) == 1:
        out.append(make(main, _plain_kind(main)))
    return out


def generate_candidates(info: StatementInfo, meta: dict[tuple[str, str], TableMeta],
                        max_columns: int = 3, max_include: int = 4,
                        max_candidates: int = 30) -> list[Candidate]:
    """Index candidates for one statement, most specific first, without duplicates.

    Candidates an existing index already serves are left out.  At most
    ``max_candidates`` are returned, keeping at least one of every kind present.
    """
    meta = meta or {}
    seen: set[str] = set()
    out: list[Candidate] = []
    for key, usage in info.tables.items():
        table_meta = meta.get(key)
        existing = table_meta.indexes if table_meta is not None else []
        for cand in _table_candidates(info, usage, table_meta, max_columns, max_include):
            d = cand.definition()
            if d in seen:
                continue
            seen.add(d)
            if is_covered(cand, existing) is None:
                out.append(cand)
    if len(out) <= max_candidates:
        return out
    keep: set[int] = set()
    for kind in KINDS:
        first = next((i for i, c in enumerate(out) if c.kind == kind), None)
        if first is not None:
            keep.add(first)
    for i in range(len(out)):
        if len(keep) >= max_candidates:
            break
        keep.add(i)
    return [c for i, c in enumerate(out) if i in keep]
