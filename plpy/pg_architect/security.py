"""Whose rights planning a workload statement uses.

The planner runs code while it plans: it folds IMMUTABLE and STABLE functions (and the
operators and casts backed by them) with constant arguments.  A statement recorded by
pg_stat_statements is therefore planned with the rights of the role that ran it (its
``userid``), never with the auditor's.

``SET ROLE`` alone is not enough: a function of the statement can ``RESET ROLE`` (or carry a
``SET role = ...`` clause), and PostgreSQL checks that against the *session* user, who is the
auditor.  So every planner call for a statement (PREPARE, EXPLAIN EXECUTE, hypopg's
``hypopg_create_index``) goes through a small SECURITY DEFINER function in this backend's
``pg_temp`` schema, owned by the statement's role.  Inside a security-definer function
PostgreSQL refuses any change of ``role`` or ``session_authorization``, so nothing the
statement calls can climb back to the auditor.  The function is dropped when the audit ends.

Statements that cannot be planned that way are skipped (:class:`SkipStatement`), never planned
as the auditor:

* ``untrusted_code``: the role was dropped, is a superuser while the auditor is not, or the
  auditor cannot act as it (not a member), or the auditor cannot create the wrapper;
* ``temp_object``: the statement names a ``pg_temp`` schema, which belongs to the session that
  ran it and cannot be resolved (or would resolve to the auditor's own) here.
"""

from __future__ import annotations

import re

from .analyze import SkipStatement
from .db import QUERY_CANCELED, Db, DbError
from .sqltext import quote_ident as _quote

# Statements pg_stat_statements normalises (constants become $n): everything else is a
# utility statement whose text keeps its literals (ALTER ROLE ... PASSWORD '...') and is never
# stored in arch (kept: queryid and the fact that it is a utility statement).  The same
# expression is in migrations/0005_security.sql (PostgreSQL's ARE syntax).
PLANNABLE_SQL_RE = (r"^(\s|--[^\n]*\n|/\*([^*]|\*+[^*/])*\*+/|\()*"
                    r"(select|insert|update|delete|merge|with|values|table)\M")
# Stored instead of a utility statement's text: its first word (the command) and this marker.
UTILITY_TEXT = "<utility statement: text not stored>"
FIRST_WORD_SQL_RE = r"^(?:\s|--[^\n]*\n|/\*(?:[^*]|\*+[^*/])*\*+/|\()*([A-Za-z_]+)"


def utility_skip(text: str) -> SkipStatement | None:
    """The skip of a stored utility statement (``VACUUM <utility statement: ...>``), else None."""
    if not (text or "").endswith(UTILITY_TEXT):
        return None
    from .analyze import _DDL

    word = text[: -len(UTILITY_TEXT)].strip().lower()
    if word in _DDL:
        return SkipStatement("ddl", f"{word.upper()} is a schema change (DDL); its text is never stored "
                             "(it may hold a password) and only queries are analysed.")
    return SkipStatement("utility", f"{(word or 'a utility statement').upper()} is a utility command; its text "
                         "is never stored (it may hold a password) and only queries are analysed.")

_TEMP_REF = re.compile(r'(?<![\w$])"?pg_temp(?:_\d+)?"?\s*\.', re.I)

_WRAPPER_BODY = r"""
DECLARE r record;
BEGIN
  IF NOT rows THEN
    EXECUTE sql;
    RETURN;
  END IF;
  FOR r IN EXECUTE sql LOOP
    RETURN NEXT pg_catalog.to_json(r)::text;
  END LOOP;
  RETURN;
END
"""


def quote_ident(name: str) -> str:
    return _quote(name, always=True)


def references_temp_schema(sql: str) -> bool:
    """True if the text names ``pg_temp`` or ``pg_temp_N`` as a schema."""
    return bool(_TEMP_REF.search(sql or ""))


class PlanAs:
    """The SECURITY DEFINER wrappers of one audit, one per role; call :meth:`close`."""

    def __init__(self, db: Db):
        self.db = db
        self.me = db.row("SELECT r.oid::bigint AS oid, r.rolname::text AS name, r.rolsuper AS super"
                         " FROM pg_roles r WHERE r.rolname = current_user")
        self.wrappers: dict[int, str] = {}

    def wrapper_for(self, userid: int | None) -> str:
        """The wrapper that plans as role ``userid`` (the caller when None), created on first use;
        raises SkipStatement('untrusted_code') when that cannot be done safely."""
        oid = int(self.me["oid"]) if userid is None else int(userid)
        fn = f"pg_temp.pga_plan_as_{oid}"
        # Created inside a statement's subtransaction: gone again if that statement was skipped.
        if oid in self.wrappers and self._exists(fn):
            return fn
        role = self.db.one("SELECT rolname::text AS name, rolsuper AS super,"
                           " pg_has_role(current_user, oid, 'MEMBER') AS member"
                           " FROM pg_roles WHERE oid = $1::bigint::oid", [oid])
        if role is None:
            raise SkipStatement("untrusted_code", f"the role that ran it (oid {oid}) no longer exists; "
                                "it is never planned with the auditor's rights")
        if role["super"] and not self.me["super"]:
            raise SkipStatement("untrusted_code", f"it was run by superuser {role['name']} and the auditor "
                                f"({self.me['name']}) is not a superuser")
        if not (self.me["super"] or role["member"]):
            raise SkipStatement("untrusted_code", f"the auditor ({self.me['name']}) cannot act as role "
                                f"{role['name']} (not a member), and never plans it with its own rights; "
                                f"GRANT {quote_ident(role['name'])} TO {quote_ident(self.me['name'])} to analyse it")
        try:
            with self.db.subtransaction():
                if self._exists(fn):
                    self.db.execute(f"DROP FUNCTION {fn}(text, boolean)")
                self.db.execute(f"CREATE FUNCTION {fn}(sql text, rows boolean) RETURNS SETOF text"
                                f" LANGUAGE plpgsql VOLATILE AS $pga$ {_WRAPPER_BODY} $pga$")
                self.db.execute(f"REVOKE ALL ON FUNCTION {fn}(text, boolean) FROM PUBLIC")
                if oid != int(self.me["oid"]):
                    self.db.execute(f"ALTER FUNCTION {fn}(text, boolean) OWNER TO {quote_ident(role['name'])}")
                self.db.execute(f"ALTER FUNCTION {fn}(text, boolean) SECURITY DEFINER")
                if oid != int(self.me["oid"]):
                    self.db.execute(f"GRANT EXECUTE ON FUNCTION {fn}(text, boolean) TO {quote_ident(self.me['name'])}")
        except DbError as exc:
            if exc.sqlstate == QUERY_CANCELED:
                raise
            raise SkipStatement("untrusted_code", f"cannot set up planning as role {role['name']}: "
                                f"{str(exc).splitlines()[0]}") from None
        self.wrappers[oid] = fn
        return fn

    def _exists(self, fn: str) -> bool:
        return bool(self.db.scalar("SELECT to_regprocedure($1) IS NOT NULL", [fn + "(text, boolean)"]))

    def close(self) -> None:
        for fn in self.wrappers.values():
            try:
                if not self._exists(fn):
                    continue
                with self.db.subtransaction():
                    self.db.execute(f"DROP FUNCTION {fn}(text, boolean)")
            except DbError:
                pass
        self.wrappers.clear()
