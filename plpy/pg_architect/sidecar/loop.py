"""The sidecar: a small external process that does what the database cannot reach.

``pg-architect sidecar --dsn ...`` takes only how to connect (``--dsn``, ``PGA_DSN`` or libpq's
``PG*`` variables) and its secrets from its environment (``PGA_GITHUB_TOKEN``, the LLM key, see
:mod:`pg_architect.llm`); everything else is read from ``arch.settings`` on every loop.  All its
state is in ``arch`` tables: it can be killed at any moment.

The loop: heartbeat → claim one request at a time (``FOR UPDATE SKIP LOCKED``) and do it →
sync open pull requests when due → wait for ``NOTIFY arch_request`` or the poll timeout.

* A claim marks the request ``running`` with this sidecar's id; while connected, the sidecar
  holds the advisory lock (``arch._sidecar_lock_key()``, its id), so a request whose sidecar
  died (lock gone) or went silent for ``sidecar_lease_s`` is claimed again by another one.
  Results are written only while the claim is still ours: several sidecars on one database
  never do the same request twice.
* A failed attempt is retried after ``request_retry_base_s × 2^(attempts-1)`` (at most an hour;
  a rate limit: at its reset) until ``request_max_attempts``; the error is kept on the request.
* SIGTERM / SIGINT: the current request is finished, then the process exits 0.
* At start the installed ``arch`` version must equal this package's version.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import pg_architect

from ..db import PsycopgDb
from ..errors import TaskError
from .llm import LLMError

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger("pg_architect.sidecar")

CHANNEL = "arch_request"
TOKEN_VARS = ("PGA_GITHUB_TOKEN", "GITHUB_TOKEN")
MAX_BACKOFF_S = 3600.0
SYNC_LOCK = (1885430131, 0)

_LIVE_CLAIM = (
    "EXISTS (SELECT 1 FROM arch.sidecar s WHERE s.id = q.claimed_by AND s.stopped_at IS NULL"
    " AND s.heartbeat_at > now() - make_interval(secs => $2)"
    " AND EXISTS (SELECT 1 FROM pg_catalog.pg_locks l WHERE l.locktype = 'advisory' AND l.granted"
    "   AND l.objsubid = 2 AND l.classid = arch._sidecar_lock_key()::oid AND l.objid = s.id::oid))")
_CLAIMABLE = (f"q.run_after <= now() AND (q.status = 'pending' OR (q.status = 'running' AND NOT {_LIVE_CLAIM}))")


_T = TypeVar("_T")


def _started(value: _T | None) -> _T:
    """A connection of the sidecar, which exists between start() and close()."""
    if value is None:
        raise SidecarError("the sidecar is not started")
    return value


class SidecarError(Exception):
    """The sidecar cannot start (wrong version, arch not installed, no connection)."""


class Sidecar:
    def __init__(self, dsn: str, *, name: str | None = None, env: dict[str, str] | None = None,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.time,
                 embedder: Callable | None = None):
        self.dsn = dsn
        self.env = dict(os.environ if env is None else env)
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self._sleep = sleep
        self.clock = clock
        self.embedder = embedder  # None: arch.settings.embedding_model (pg_architect.embed)
        self.stopping = threading.Event()
        self._conn: psycopg.Connection[Any] | None = None
        self._listen_conn: psycopg.Connection[Any] | None = None
        self._db: PsycopgDb | None = None
        self.id: int | None = None
        self.settings: dict = {}
        self._last_sync = 0.0
        self.done: list[int] = []  # request ids this process finished (for tests and the log)

    @property
    def conn(self) -> psycopg.Connection[Any]:
        return _started(self._conn)

    @property
    def listen_conn(self) -> psycopg.Connection[Any]:
        return _started(self._listen_conn)

    @property
    def db(self) -> PsycopgDb:
        return _started(self._db)

    # ------------------------------------------------------------------ start / stop
    def start(self) -> None:
        import psycopg

        try:
            self._conn = psycopg.connect(self.dsn, autocommit=True, application_name="pg_architect sidecar")
            self._listen_conn = psycopg.connect(self.dsn, autocommit=True,
                                               application_name="pg_architect sidecar (listen)")
        except psycopg.Error as exc:
            raise SidecarError(f"cannot connect: {str(exc).strip()}") from None
        self._db = PsycopgDb(self._conn)
        try:
            self.check_version()
        except SidecarError:
            self.close()
            raise
        row = self.db.row(
            "INSERT INTO arch.sidecar (name, host, pid, backend_pid, version) VALUES ($1, $2, $3, pg_backend_pid(), $4)"
            " RETURNING id", [self.name, socket.gethostname(), os.getpid(), pg_architect.__version__])
        self.id = int(row["id"])
        self.db.execute("SELECT pg_advisory_lock(arch._sidecar_lock_key(), $1::integer)", [self.id])
        self.listen_conn.execute(f"LISTEN {CHANNEL}")
        self.reload()
        log.info("sidecar %s (id %s) started, pg_architect %s", self.name, self.id, pg_architect.__version__)

    def check_version(self) -> None:
        try:
            installed = self.db.scalar("SELECT package_version FROM arch.python_env WHERE id")
            has_queue = self.db.scalar("SELECT to_regclass('arch.request') IS NOT NULL")
        except Exception as exc:
            raise SidecarError(f"pg_architect is not installed in this database (or this role cannot read it): "
                               f"{str(exc).splitlines()[0]}") from None
        if installed != pg_architect.__version__ or not has_queue:
            raise SidecarError(
                f"this sidecar is pg_architect {pg_architect.__version__} but the database has "
                f"{installed or 'no version'} installed: run `pg-architect install` with the same version")

    def stop(self, *_args) -> None:
        self.stopping.set()

    def close(self) -> None:
        if self._db is not None and self._conn is not None and self.id is not None and not self._conn.closed:
            try:
                self.db.execute("UPDATE arch.sidecar SET stopped_at = clock_timestamp(),"
                                " heartbeat_at = clock_timestamp()"
                                " WHERE id = $1", [self.id])
                # Requests we claimed but did not finish go back to the queue at once.
                self.db.execute("UPDATE arch.request SET status = 'pending', run_after = now()"
                                " WHERE claimed_by = $1 AND status = 'running'", [self.id])
            except Exception as exc:
                log.warning("could not record the stop: %s", exc)
        for c in (self._listen_conn, self._conn):
            if c is not None:
                try:
                    c.close()
                except Exception:
                    pass

    # ------------------------------------------------------------------ the loop
    def run(self, once: bool = False) -> int:
        """Run until SIGTERM (or, with ``once``, until the queue has nothing claimable)."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.stop)
            signal.signal(signal.SIGINT, self.stop)
        if self._conn is None:
            self.start()
        try:
            while not self.stopping.is_set():
                self.heartbeat()
                self.reload()
                while not self.stopping.is_set() and self.process_one():
                    pass
                self.maybe_sync(force=once)
                if once:
                    break
                self.wait(float(self.settings["sidecar_poll_s"]))
        finally:
            self.close()
        log.info("sidecar %s stopped", self.name)
        return 0

    def wait(self, timeout: float) -> None:
        """Until a NOTIFY arrives, the timeout passes or we are asked to stop (checked every second)."""
        end = time.monotonic() + timeout
        while not self.stopping.is_set():
            left = end - time.monotonic()
            if left <= 0:
                return
            woken = False
            # (The generator holds the connection's lock until it ends: let it end by itself.)
            for _ in self.listen_conn.notifies(timeout=min(1.0, left), stop_after=1):
                woken = True
            if woken:
                return  # one claim pass handles whatever else was notified

    def _say(self, message: str) -> None:
        """Progress of a long request: logged, and the heartbeat kept fresh."""
        log.info(message)
        self.heartbeat()

    def heartbeat(self) -> None:
        self.db.execute("UPDATE arch.sidecar SET heartbeat_at = clock_timestamp() WHERE id = $1", [self.id])

    def sleep(self, seconds: float) -> None:
        """Waits inside a request (backoff, rate limit) keep the heartbeat fresh."""
        self.heartbeat()
        self._sleep(seconds)
        self.heartbeat()

    def reload(self) -> None:
        settings = self.db.one("SELECT * FROM arch.settings WHERE id")
        if settings is None:
            raise SidecarError("arch.settings has no row: is pg_architect installed in this database?")
        self.settings = settings

    # ------------------------------------------------------------------ claims
    def claim(self) -> dict | None:
        lease = float(self.settings["sidecar_lease_s"])
        for _ in range(50):
            row = self.db.one(
                "WITH c AS (SELECT q.id FROM arch.request q WHERE " + _CLAIMABLE +
                "           ORDER BY q.run_after, q.id LIMIT 1 FOR UPDATE SKIP LOCKED)"
                " UPDATE arch.request q SET status = 'running', claimed_by = $1, claimed_at = now(),"
                "   attempts = q.attempts + 1"
                " FROM c WHERE q.id = c.id"
                " RETURNING q.id, q.kind, q.payload, q.attempts, q.requested_by::text AS requested_by",
                [self.id, lease])
            if row is not None:
                return row
            # Nothing claimed: either nothing is claimable, or another sidecar held the row we
            # looked at for an instant; look again while something claimable is left.
            if not self.db.scalar("SELECT EXISTS (SELECT 1 FROM arch.request q WHERE " + _CLAIMABLE + ")",
                                  [self.id, lease]):
                return None
            time.sleep(0.02)
        return None

    def process_one(self) -> bool:
        req = self.claim()
        if req is None:
            return False
        log.info("request %s (%s), attempt %s", req["id"], req["kind"], req["attempts"])
        try:
            handler = getattr(self, f"do_{req['kind']}")
            result = handler(req)
            self.finish(req, "done", result=result)
        except TaskError as exc:
            self.fail(req, exc)
        except LLMError as exc:
            self.fail(req, TaskError(str(exc), transient=exc.transient))
        except Exception as exc:  # a bug or an unexpected error: recorded, retried with backoff
            log.exception("request %s failed", req["id"])
            self.fail(req, TaskError(f"{type(exc).__name__}: {exc}", transient=True))
        return True

    def finish(self, req: dict, status: str, result: Any = None, error: str | None = None) -> bool:
        row = self.db.one(
            "UPDATE arch.request SET status = $3, result = $4::jsonb, last_error = $5::text, finished_at = now()"
            " WHERE id = $1 AND claimed_by = $2 AND status = 'running' RETURNING id",
            [req["id"], self.id, status, result if result is not None else None, error])
        counter = "processed" if status == "done" else "failed"
        self.db.execute(f"UPDATE arch.sidecar SET {counter} = {counter} + 1,"
                        " last_error = coalesce($2::text, last_error)"
                        " WHERE id = $1", [self.id, error])
        if row is None:
            log.warning("request %s was claimed by another sidecar meanwhile: result not written", req["id"])
            return False
        self.done.append(req["id"])
        return True

    def fail(self, req: dict, exc: TaskError) -> None:
        message = str(exc)
        if exc.refused:
            log.warning("request %s refused: %s", req["id"], message)
            self.finish(req, "refused", result=exc.result or {"refused": message}, error=message)
            return
        max_attempts = int(self.settings["request_max_attempts"])
        if not exc.transient or req["attempts"] >= max_attempts:
            why = message if not exc.transient else f"{message} (attempt {req['attempts']} of {max_attempts})"
            log.error("request %s failed: %s", req["id"], why)
            self.finish(req, "failed", result=exc.result, error=why)
            return
        if exc.retry_at is not None:
            delay = max(0.0, exc.retry_at - self.clock())
        else:
            delay = min(MAX_BACKOFF_S, float(self.settings["request_retry_base_s"]) * 2 ** (req["attempts"] - 1))
        log.warning("request %s: %s; retry in %.0f s", req["id"], message, delay)
        self.db.execute(
            "UPDATE arch.request SET status = 'pending', last_error = $3, run_after = now() + make_interval(secs => $4)"
            " WHERE id = $1 AND claimed_by = $2 AND status = 'running'", [req["id"], self.id, message, delay])
        self.db.execute("UPDATE arch.sidecar SET last_error = $2 WHERE id = $1", [self.id, message])

    # ------------------------------------------------------------------ the kinds
    def github(self):
        from .github import GitHub

        token = next((self.env[v] for v in TOKEN_VARS if self.env.get(v)), None)
        if not token:
            raise TaskError("the sidecar has no GitHub token: set PGA_GITHUB_TOKEN in its environment")
        s = self.settings
        return GitHub(s["github_api_url"], token, timeout=int(s["github_timeout_s"]),
                      max_wait=float(s["github_max_wait_s"]), sleep=self.sleep, clock=self.clock)

    def do_open_pr(self, req: dict) -> dict:
        from .github import open_pull_request

        rec_id = (req["payload"] or {}).get("recommendation_id")
        if not isinstance(rec_id, int):
            raise TaskError("open_pr request without a recommendation_id")
        if self.settings.get("validate_policy") == "before_pr":
            self.validate_before_pr(req, rec_id)
        return open_pull_request(self.db, self.github, rec_id, self.settings)

    def validate_before_pr(self, req: dict, rec_id: int) -> None:
        """``validate_policy = 'before_pr'``: no pull request without a successful validation on
        staging (its latest one measured at least one statement). Without one, validate now when
        the sidecar has ``PGA_STAGING_DSN``; else, or when that measures nothing, refuse."""
        from ..validate import ValidationRefused, handle_validate_request, validated_ok

        if validated_ok(self.db, rec_id):
            return
        staging = self.env.get("PGA_STAGING_DSN")
        if not staging:
            raise TaskError(f"validate_policy is before_pr and recommendation {rec_id} has no successful validation "
                            "on staging: set PGA_STAGING_DSN in the sidecar's environment, or run "
                            f"pg-architect validate --recommendation {rec_id} --staging-dsn ...", refused=True)
        rec = self.db.one("SELECT status FROM arch.recommendation WHERE id = $1", [rec_id])
        if rec is None or rec["status"] in ("rejected", "superseded", "applied", "pr_open", "merged", "closed"):
            return  # open_pull_request says what to do with it
        try:
            request = {"id": req["id"], "payload": {"recommendation_id": rec_id}}
            out = handle_validate_request(self.conn, staging, request,
                                          say=self._say)
        except ValidationRefused as exc:
            raise TaskError(f"validate_policy is before_pr: {exc}", refused=True) from None
        if not validated_ok(self.db, rec_id):
            raise TaskError(f"validate_policy is before_pr and the validation of recommendation {rec_id} on staging "
                            f"measured no statement ({out.get('problem') or 'see arch.validations'}): "
                            "no pull request", refused=True)

    def vanna(self):
        from . import llm, vanna

        return vanna.make_vanna(self.db, llm.from_settings(self.settings, self.env), self.embedder)

    def do_explain(self, req: dict) -> dict:
        from . import vanna

        p = req["payload"] or {}
        st = self.db.one("SELECT query FROM arch.statement WHERE dbid = $1::bigint::oid AND userid = $2::bigint::oid"
                         " AND queryid = $3", [p.get("dbid"), p.get("userid"), p.get("queryid")])
        if st is None:
            return {"skipped": "the statement is no longer in arch.statement"}
        from ..security import PLANNABLE_SQL_RE, UTILITY_TEXT

        plannable = re.match(PLANNABLE_SQL_RE.replace("\\M", "\\b"), st["query"], re.I)
        if st["query"].endswith(UTILITY_TEXT) or not plannable:
            # Never send a utility statement (it may hold a password) to an LLM.
            return {"skipped": "a utility statement: its text is never sent to an LLM"}
        vn = self.vanna()
        if vn.llm is None:
            raise TaskError("no LLM is configured (arch.settings.llm_provider is NULL)")
        text = vanna.explain(vn, st["query"])
        if not text:
            raise TaskError("the LLM returned an empty explanation", transient=True)
        with self.conn.transaction():
            self.db.execute(
                "INSERT INTO arch.statement_explanation (dbid, userid, queryid, explanation, provider, model,"
                " request_id)"
                " VALUES ($1::bigint::oid, $2::bigint::oid, $3, $4, $5, $6, $7)"
                " ON CONFLICT (dbid, userid, queryid) DO UPDATE SET explanation = EXCLUDED.explanation,"
                "   provider = EXCLUDED.provider, model = EXCLUDED.model, request_id = EXCLUDED.request_id,"
                "   explained_at = clock_timestamp()",
                [p["dbid"], p["userid"], p["queryid"], text, vn.llm.provider, vn.llm.model, req["id"]])
        return {"explanation": text}

    def do_ask(self, req: dict) -> dict:
        from . import vanna

        question = (req["payload"] or {}).get("question")
        if not question:
            raise TaskError("ask request without a question")
        vn = self.vanna()
        if vn.llm is None:
            raise TaskError("no LLM is configured (arch.settings.llm_provider is NULL)")
        s = self.settings
        result = vanna.ask(vn, self.conn, question, row_cap=int(s["ask_row_cap"]),
                                 timeout_ms=int(s["ask_statement_timeout_ms"]))
        if not result["accepted"]:
            log.warning("ask %s: generated SQL refused: %s", req["id"], result.get("refusal"))
        return result

    def do_train(self, req: dict) -> dict:
        from . import vanna

        return vanna.train(self.db, self.vanna())

    def do_validate(self, req: dict) -> dict:
        from ..validate import ValidationRefused, handle_validate_request

        try:  # the staging DSN only ever comes from the sidecar's environment
            return handle_validate_request(self.conn, self.env.get("PGA_STAGING_DSN"), req,
                                           say=self._say)
        except ValidationRefused as exc:
            raise TaskError(str(exc), refused=True) from None

    # ------------------------------------------------------------------ pull request sync
    def maybe_sync(self, force: bool = False) -> dict | None:
        from .github import sync_pull_requests

        s = self.settings
        if not s.get("github_repo"):
            return None
        interval = float(s["pr_sync_interval_s"])
        if not force and (interval <= 0 or time.monotonic() - self._last_sync < interval):
            return None
        self._last_sync = time.monotonic()
        if not self.db.scalar("SELECT pg_try_advisory_lock($1::integer, $2::integer)", list(SYNC_LOCK)):
            return None  # another sidecar is syncing
        try:
            stats = sync_pull_requests(self.db, self.github)
            if stats["merged"] or stats["closed"]:
                log.info("pull requests synced: %s", stats)
            return stats
        except TaskError as exc:
            log.warning("pull request sync: %s", exc)
            return None
        finally:
            self.db.execute("SELECT pg_advisory_unlock($1::integer, $2::integer)", list(SYNC_LOCK))
