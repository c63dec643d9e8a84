"""The errors every pipeline step raises, and the SQLSTATEs the pipeline looks at.

* :class:`UserError` — for the caller of an ``arch`` function (wrong argument, audit already
  running): ``entry.py`` turns it into ``plpy.error`` with DETAIL, HINT and SQLSTATE.
* :class:`DbError` — a statement we ran failed (raised by :mod:`pg_architect.db` whatever the host,
  without aborting the transaction when it ran in a subtransaction).
* :class:`SkipStatement` — one workload statement is not analysed (a short code and one sentence);
  the audit records it and carries on.
* :class:`TaskError` — a sidecar request that did not succeed (transient, refused or failed).

Only ``entry.py`` talks to plpy's error functions.
"""

from __future__ import annotations

QUERY_CANCELED = "57014"
LOCK_NOT_AVAILABLE = "55P03"
INDETERMINATE_DATATYPE = "42P18"
INVALID_PARAMETER_VALUE = "22023"
OBJECT_IN_USE = "55006"


class DbError(Exception):
    """A database error raised through the interface, whatever the host."""

    def __init__(self, message: str, sqlstate: str | None = None, detail: str | None = None):
        super().__init__(message)
        self.sqlstate = sqlstate
        self.detail = detail


class UserError(Exception):
    """An error for the caller, reported with DETAIL and HINT (wrong arguments, audit already running)."""

    def __init__(self, message: str, detail: str | None = None, hint: str | None = None,
                 sqlstate: str | None = None):
        super().__init__(message)
        self.message = message
        self.detail = detail
        self.hint = hint
        self.sqlstate = sqlstate


class SkipStatement(Exception):
    """The statement is not analysed; ``code`` is a short slug, ``reason`` one sentence."""

    def __init__(self, code: str, reason: str):
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


class TaskError(Exception):
    """A sidecar request that did not succeed.

    ``transient``: worth another attempt (network, 5xx, rate limit), at ``retry_at`` (epoch
    seconds) if given, else after the backoff; ``refused``: a safety check said no (status
    ``refused``); otherwise the request fails now (a setting or the environment must change,
    then ``arch.retry_request``).
    """

    def __init__(self, message: str, *, transient: bool = False, refused: bool = False,
                 retry_at: float | None = None, result: dict | None = None):
        super().__init__(message)
        self.transient = transient
        self.refused = refused
        self.retry_at = retry_at
        self.result = result


def canceled(exc: BaseException | None) -> bool:
    """True for a statement_timeout / pg_cancel_backend error: never swallowed."""
    return isinstance(exc, DbError) and exc.sqlstate == QUERY_CANCELED


class NotApplicable(Exception):
    """A proven candidate cannot be rendered for the relation as it is now (e.g. an index on a
    partitioned table with a foreign partition): noted, not proposed."""
