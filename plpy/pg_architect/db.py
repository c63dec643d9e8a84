"""The one small interface the pipeline uses to talk to PostgreSQL.

The same pipeline code runs inside the server (PL/Python, :class:`PlpyDb`) and from the
command line over a connection (:class:`PsycopgDb`), for managed databases without
plpython3u.  Statements use ``$1``-style parameters in both hosts.
"""

from __future__ import annotations

import contextlib
import decimal
import json
import logging
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from .errors import INDETERMINATE_DATATYPE, LOCK_NOT_AVAILABLE, QUERY_CANCELED, DbError, UserError  # noqa: F401

log = logging.getLogger("pg_architect")


def _pg_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "bigint"
    if isinstance(value, (float, decimal.Decimal)):
        return "double precision"
    if isinstance(value, (dict, list, tuple)):
        return "jsonb"
    return "text"


def _adapt(value: Any) -> Any:
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, default=str)
    if isinstance(value, decimal.Decimal):
        return float(value)
    return value


def _norm(row: dict) -> dict:
    return {k: (float(v) if isinstance(v, decimal.Decimal) else v) for k, v in row.items()}


class Db:
    """Interface: query/execute with $n parameters, subtransactions, progress notices."""

    host = "abstract"

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[dict]:
        raise NotImplementedError

    def execute(self, sql: str, args: Sequence[Any] = ()) -> None:
        self.query(sql, args)

    def one(self, sql: str, args: Sequence[Any] = ()) -> dict | None:
        rows = self.query(sql, args)
        return rows[0] if rows else None

    def row(self, sql: str, args: Sequence[Any] = ()) -> dict:
        """The first row of a statement that always returns one (an aggregate, INSERT ... RETURNING)."""
        row = self.one(sql, args)
        if row is None:
            raise DbError(f"expected a row from: {sql[:80]}")
        return row

    def scalar(self, sql: str, args: Sequence[Any] = ()) -> Any:
        row = self.one(sql, args)
        return None if row is None else next(iter(row.values()))

    def execute_single(self, sql: str) -> list[dict]:
        """Run ``sql`` through the server's one-statement path (parse/bind): a string holding
        several statements is refused by PostgreSQL itself, whatever our parser thought."""
        raise NotImplementedError

    def check_one_statement(self, sql: str) -> None:
        """Raise DbError if the server's parser finds more than one statement in ``sql``
        (nothing is run).  Hosts that cannot parse without running do nothing."""

    def subtransaction(self):
        raise NotImplementedError

    def commit(self) -> None:
        """COMMIT and start a new transaction (a procedure called by CALL, outside a transaction
        block: ``CALL arch.run_audit_batched()``).  Only the server host implements it:
        ``pg-architect audit`` (the psycopg host) has no batches."""
        raise NotImplementedError

    def rollback(self) -> None:
        """ROLLBACK and start a new transaction (as :meth:`commit`)."""
        raise NotImplementedError

    def notice(self, message: str) -> None:
        log.info(message)

    def progress(self, done: int, total: int, label: str) -> None:
        """Called by the audit for each statement; hosts show it as they can."""


class PlpyDb(Db):
    """Inside PostgreSQL: wraps the ``plpy`` module of PL/Python."""

    host = "plpython"

    def __init__(self, plpy):
        self.plpy = plpy
        self._plans: dict[tuple, Any] = {}

    def query(self, sql, args=()):
        plpy = self.plpy
        try:
            if not args:
                res = plpy.execute(sql)
            else:
                types = tuple(_pg_type(a) for a in args)
                key = (sql, types)
                plan = self._plans.get(key)
                if plan is None:
                    plan = plpy.prepare(sql, list(types))
                    if len(self._plans) < 256:
                        self._plans[key] = plan
                res = plpy.execute(plan, [_adapt(a) for a in args])
        except plpy.SPIError as exc:
            raise DbError(str(exc).strip(), getattr(exc, "sqlstate", None),
                          getattr(exc, "detail", None)) from None
        return [_norm(dict(r)) for r in res]

    def execute_single(self, sql):
        plpy = self.plpy
        try:
            res = plpy.execute(plpy.prepare(sql))
        except plpy.SPIError as exc:
            raise DbError(str(exc).strip(), getattr(exc, "sqlstate", None),
                          getattr(exc, "detail", None)) from None
        return [_norm(dict(r)) for r in res]

    def check_one_statement(self, sql):
        plpy = self.plpy
        try:
            plpy.prepare(sql)  # a utility statement is only parsed here, not analysed or run
        except plpy.SPIError as exc:
            raise DbError(str(exc).strip(), getattr(exc, "sqlstate", None),
                          getattr(exc, "detail", None)) from None

    @contextlib.contextmanager
    def subtransaction(self):
        with self.plpy.subtransaction():
            yield

    def commit(self):
        try:
            self.plpy.commit()
        except self.plpy.SPIError as exc:
            raise DbError(str(exc).strip(), getattr(exc, "sqlstate", None),
                          getattr(exc, "detail", None)) from None

    def rollback(self):
        self.plpy.rollback()

    def notice(self, message):
        self.plpy.notice(message)


_PARAM_RE = re.compile(r"\$(\d+)")


class PsycopgDb(Db):
    """From the command line: wraps a psycopg 3 connection (autocommit off)."""

    host = "cli"

    def __init__(self, conn, notice: Callable[[str], None] | None = None,
                 progress: Callable[[int, int, str], None] | None = None):
        from psycopg.types.string import StrDumper

        self.conn = conn
        # Send Python str as text (not "unknown"), as PlpyDb declares it: format($1, ...) and
        # other polymorphic calls need a type.
        conn.adapters.register_dumper(str, StrDumper)
        self._notice = notice
        self._progress = progress

    def query(self, sql, args=()):
        import psycopg
        from psycopg.types.json import Jsonb

        if args:
            sql = sql.replace("%", "%%")
            sql = _PARAM_RE.sub(lambda m: "%(p" + m.group(1) + ")s", sql)
            params = {f"p{i + 1}": _adapt(a) for i, a in enumerate(args)}
            for i, a in enumerate(args):
                if isinstance(a, (dict, list, tuple)):
                    params[f"p{i + 1}"] = Jsonb(a)
        else:
            params = None
        try:
            # Like PL/Python's plpy.execute, a failed statement must not abort the transaction.
            with self.conn.transaction(), self.conn.cursor() as cur:
                cur.execute(sql, params, prepare=False)
                if cur.description is None:
                    return []
                names = [d.name for d in cur.description]
                return [_norm(dict(zip(names, r))) for r in cur.fetchall()]
        except psycopg.Error as exc:
            if self.conn.broken:  # the connection is gone, not the statement: the caller reconnects
                raise
            diag = exc.diag
            raise DbError(str(exc).strip(), exc.sqlstate, diag.message_detail if diag else None) from None

    def execute_single(self, sql):
        import psycopg

        try:
            with self.conn.transaction(), self.conn.cursor() as cur:
                cur.execute(sql, prepare=True)  # extended protocol: one statement only
                if cur.description is None:
                    return []
                names = [d.name for d in cur.description]
                return [_norm(dict(zip(names, r))) for r in cur.fetchall()]
        except psycopg.Error as exc:
            if self.conn.broken:  # the connection is gone, not the statement: the caller reconnects
                raise
            raise DbError(str(exc).strip(), exc.sqlstate, exc.diag.message_detail) from None

    def check_one_statement(self, sql):
        import psycopg
        from psycopg import pq

        class _Refused(Exception):
            pass

        try:
            with self.conn.transaction():
                res = self.conn.pgconn.prepare(b"", sql.encode())  # Parse only: nothing runs
                if res.status != pq.ExecStatus.COMMAND_OK:
                    raise _Refused(res.error_message.decode(errors="replace"),
                                   (res.error_field(pq.DiagnosticField.SQLSTATE) or b"").decode() or None)
        except _Refused as exc:
            raise DbError(str(exc.args[0]).strip(), exc.args[1]) from None
        except psycopg.Error as exc:
            if self.conn.broken:
                raise
            raise DbError(str(exc).strip(), exc.sqlstate) from None

    @contextlib.contextmanager
    def subtransaction(self) -> Iterator[None]:
        with self.conn.transaction():
            yield

    def notice(self, message):
        if self._notice:
            self._notice(message)
        else:
            log.info(message)

    def progress(self, done, total, label):
        if self._progress:
            self._progress(done, total, label)


@contextlib.contextmanager
def local_setting(db: Db, name: str, value: str | None) -> Iterator[None]:
    """``set_config(name, value, is_local => true)`` for the block, the previous value restored
    after (error or not; a failed restore in an aborted subtransaction is left to its rollback).
    ``value`` None: nothing is set, the block runs as is."""
    saved = db.scalar("SELECT pg_catalog.current_setting($1)", [name])
    if value is not None:
        db.execute("SELECT pg_catalog.set_config($1, $2, true)", [name, value])
    try:
        yield
    finally:
        try:
            db.execute("SELECT pg_catalog.set_config($1, $2, true)", [name, saved])
        except DbError:
            pass


def extension_schema(db: Db, extname: str) -> str | None:
    """The schema an extension is installed in (unquoted), or None when it is not installed."""
    return db.scalar("SELECT n.nspname::text FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n"
                     " ON n.oid = e.extnamespace WHERE e.extname = $1", [extname])
