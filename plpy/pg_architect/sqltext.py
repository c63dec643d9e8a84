"""SQL text: identifier and literal quoting, and the lexical gate "exactly one statement".

One place for what every module needs to write SQL text safely:

* :func:`quote_ident` (PostgreSQL's own rule: bare when it may be, ``always=True`` for
  search_path entries), :func:`qualified` (``schema.name``), :func:`quote_literal`;
* :func:`several_statements`: PostgreSQL's lexical rules (strings, quoted identifiers, dollar
  quotes with one tag regex, nested comments); a second guard, independent of the parser,
  before anything reaches PREPARE, used by the audit, the sidecar's GitHub and Vanna code;
* :data:`OWN_CALL`: a call of any ``arch`` function (the product's own calls are not workload).
"""

from __future__ import annotations

import re

# A dollar-quote tag: $$ or $tag$ (identifier characters; non-ASCII letters allowed).
_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_\u0080-\U0010ffff][A-Za-z0-9_\u0080-\U0010ffff]*)?\$")
# Calls of our own functions show up in pg_stat_statements too: never audit them.  Any function
# of the arch schema (tests/unit/test_sqltext.py checks that every function in sql/ is one).
OWN_CALL = re.compile(r"\barch\s*\.\s*\w+\s*\(", re.I)

# Every PostgreSQL keyword that is not UNRESERVED (reserved, col_name and
# type_func_name keywords, from src/include/parser/kwlist.h).  PostgreSQL's own
# quote_ident() quotes exactly these, so names rendered here match
# pg_get_indexdef() output.
PG_KEYWORDS = frozenset(
    """
    all analyse analyze and any array as asc asymmetric both case cast check collate column
    constraint create current_catalog current_date current_role current_time current_timestamp
    current_user default deferrable desc distinct do else end except false fetch for foreign from
    grant group having in initially intersect into lateral leading limit localtime localtimestamp
    not null offset on only or order placing primary references returning select session_user
    some symmetric system_user table then to trailing true union unique user using variadic when
    where window with
    authorization binary collation concurrently cross current_schema freeze full ilike inner is
    isnull join left like natural notnull outer overlaps right similar tablesample verbose
    between bigint bit boolean char character coalesce dec decimal exists extract float greatest
    grouping inout int integer interval json json_array json_arrayagg json_exists json_object
    json_objectagg json_query json_scalar json_serialize json_table json_value least merge_action
    national nchar none normalize nullif numeric out overlay position precision real row setof
    smallint substring time timestamp treat trim values varchar xmlattributes xmlconcat
    xmlelement xmlexists xmlforest xmlnamespaces xmlparse xmlpi xmlroot xmlserialize xmltable
    """.split()
)

_BARE_IDENT = re.compile(r"[a-z_][a-z0-9_]*")


def quote_ident(name: str, always: bool = False) -> str:
    """Quote an identifier the way PostgreSQL's quote_ident() does (``always``: quoted even
    when it need not be)."""
    if not always and _BARE_IDENT.fullmatch(name) and name not in PG_KEYWORDS:
        return name
    return '"' + name.replace('"', '""') + '"'


def fold_identifier(name: str) -> str:
    """Fold an unquoted identifier: PostgreSQL lower-cases ASCII letters only.

    In a UTF-8 database ``Größe`` stays ``Größe`` (multibyte characters are not
    case-folded), ``Orders`` becomes ``orders``.
    """
    return name.translate(_ASCII_LOWER)


_ASCII_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}


def qualified(schema: str, name: str) -> str:
    return f"{quote_ident(schema)}.{quote_ident(name)}"


def quote_literal(text: str) -> str:
    """A standard-conforming string literal (E'' strings are never produced)."""
    return "'" + text.replace("'", "''") + "'"




def several_statements(sql: str) -> bool:
    """True if ``sql`` has a ``;`` outside strings, quoted identifiers, dollar quotes and comments
    (PostgreSQL's lexical rules, standard_conforming_strings on), or an unterminated one of those.

    A second guard, independent of the SQL parser, before anything reaches PREPARE: inside the
    server a PL/Python plan may hold several statements, and all of them would run.
    """
    text = sql.rstrip().rstrip(";").rstrip()
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        nxt = text[i + 1] if i + 1 < n else ""
        if c == "'":
            escape = i > 0 and text[i - 1] in "eE" and (i == 1 or not (text[i - 2].isalnum() or text[i - 2] == "_"))
            i += 1
            while True:
                if i >= n:
                    return True
                if escape and text[i] == "\\":
                    i += 2
                    continue
                if text[i] == "'":
                    if i + 1 < n and text[i + 1] == "'":
                        i += 2
                        continue
                    break
                i += 1
            i += 1
        elif c == '"':
            j = text.find('"', i + 1)
            if j < 0:
                return True
            i = j + 1
        elif c == "-" and nxt == "-":
            j = text.find("\n", i)
            i = n if j < 0 else j + 1
        elif c == "/" and nxt == "*":
            depth, i = 1, i + 2
            while depth:
                if i >= n:
                    return True
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif c == "$" and not (i > 0 and (text[i - 1].isalnum() or text[i - 1] in "_$")):
            m = _DOLLAR_TAG.match(text, i)
            if m:
                j = text.find(m.group(0), m.end())
                if j < 0:
                    return True
                i = j + len(m.group(0))
            else:
                i += 1
        elif c == ";":
            return True
        else:
            i += 1
    return False
