"""Per-object error handling for the audit: one bad object never aborts the audit.

Every per-object step (applied-index detection, outcome measurement, knowledge, housekeeping)
runs each object in its own subtransaction through :func:`guarded`: a database error on that
object (permission denied, lock not available, a dropped relation ...) rolls back only that
object's work and becomes a note (``arch.audit_run.notes``); a cancel (``statement_timeout``,
``pg_cancel_backend``) is never swallowed.

:func:`lock_timeout` applies ``arch.settings.lock_timeout`` for the duration of the audit
(``set_config(..., is_local => true)``, the previous value restored after).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from .db import QUERY_CANCELED, Db, DbError, local_setting


class Notes(list):
    """What per-object steps could not do, one line each (kept short)."""

    def add(self, db: Db, what: str, exc: BaseException) -> None:
        line = f"{what}: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}"
        self.append(line[:500])
        db.notice(f"pg_architect:     note: {line}")


def guarded(db: Db, notes: Notes | None, what: str, fn: Callable[..., Any], *args, default: Any = None) -> Any:
    """``fn(*args)`` in a subtransaction; a DbError other than a cancel becomes a note and
    ``default`` is returned."""
    try:
        with db.subtransaction():
            return fn(*args)
    except DbError as exc:
        if exc.sqlstate == QUERY_CANCELED:
            raise
        if notes is not None:
            notes.add(db, what, exc)
        return default


@contextlib.contextmanager
def lock_timeout(db: Db):
    """Apply arch.settings.lock_timeout (local to the transaction) and restore the previous value."""
    ms = db.scalar("SELECT (extract(epoch FROM lock_timeout) * 1000)::bigint FROM arch.settings WHERE id")
    with local_setting(db, "lock_timeout", None if ms is None else f"{int(ms)}ms"):
        yield
