"""The sidecar opens pull requests for approved recommendations, against a local HTTP server
that speaks GitHub's REST API (tests/fake_github.py): formats, idempotency, faults, races."""

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time

import psycopg
import pytest
import sqlglot

from conftest import Session, recommendations
from fake_github import FakeGitHub
from pg_architect.sidecar import Sidecar, SidecarError

ORDERS_OF_USER = "SELECT id, total FROM orders WHERE user_id = %s"
EVENTS_OF_USER = ("SELECT id, event_type, created_at FROM behavior_log "
                  "WHERE user_id = %s AND created_at >= %s ORDER BY created_at DESC LIMIT 20")
USER_BY_EMAIL = "SELECT id, name FROM users WHERE lower(email) = lower(%s)"


@pytest.fixture
def github():
    fake = FakeGitHub().start()
    yield fake
    fake.stop()


@pytest.fixture
def gh(low_thresholds, github):
    """The test database pointed at the fake GitHub (repository acme/app, base branch main)."""
    low_thresholds.sql(
        "UPDATE arch.settings SET github_api_url = %s, github_repo = 'acme/app', github_timeout_s = 2,"
        " request_retry_base_s = 0, pr_sync_interval_s = 0", (github.url,))
    return low_thresholds


def approved(db: Session, n: int = 1, table: str | None = None) -> list[dict]:
    """Run the workload, audit, approve ``n`` recommendations (the most beneficial first, or
    the one on ``table``)."""
    db.run(ORDERS_OF_USER, [(u,) for u in (1, 2, 3)])
    db.run(EVENTS_OF_USER, [(u, "2020-01-01") for u in (1, 2)])
    db.run(USER_BY_EMAIL, [("user1@example.com",), ("user2@example.com",)])
    db.audit()
    recs = sorted(recommendations(db), key=lambda r: -r["benefit_ms"])
    recs = [r for r in recs if table is None or r["table_name"] == table][:n]
    assert len(recs) == n, [r["ddl"] for r in recommendations(db)]
    for r in recs:
        db.sql("SELECT arch.approve(%s, 'ship it')", (r["id"],))
    return recs


def forge(db: Session, rec_id: int, column: str, value, rehash: bool = True) -> None:
    """Change an approved recommendation behind the freeze trigger, as only a superuser can,
    with a matching approval hash when ``rehash`` (to reach the sidecar's later checks)."""
    db.sql("ALTER TABLE arch.recommendation DISABLE TRIGGER recommendation_freeze")
    try:
        db.sql(f"UPDATE arch.recommendation SET {column} = %s WHERE id = %s", (value, rec_id))
        if rehash:
            db.sql("UPDATE arch.recommendation SET approved_hash = arch.approval_hash(kind, schema_name,"
                   " table_name, ddl, rollback_ddl) WHERE id = %s", (rec_id,))
    finally:
        db.sql("ALTER TABLE arch.recommendation ENABLE TRIGGER recommendation_freeze")


def sidecar(dsn: str, github: FakeGitHub, sleeps: list | None = None, **kw) -> Sidecar:
    env = {"PGA_GITHUB_TOKEN": github.token}
    return Sidecar(dsn, env=env, sleep=(sleeps.append if sleeps is not None else lambda s: None), **kw)


def requests_of(db: Session, kind: str = "open_pr") -> list[dict]:
    return db.dicts("SELECT id, status, attempts, last_error, result, run_after > now() AS later"
                    " FROM arch.request WHERE kind = %s ORDER BY id", (kind,))


def test_approved_recommendation_becomes_one_pull_request(gh, github, sidecar_dsn):
    db = gh
    rec = approved(db)[0]
    # What the knowledge base and Vanna contributed (issue 3's recall, the explain request).
    db.sql("INSERT INTO arch.statement_explanation (dbid, userid, queryid, explanation)"
           " SELECT dbid, userid, queryid, 'Shows a customer their latest activity.' FROM arch.statement"
           " WHERE queryid = %s", (rec["queryid"],))
    db.sql("""UPDATE arch.recommendation SET similar_to = '[{"recommendation_id": 7, "similarity": 0.93,
              "outcome": "improved", "measured_gain_pct": 88.2, "ddl": "CREATE INDEX ON t (a)",
              "applied_at": "2026-01-02 03:04:05+00"}]' WHERE id = %s""", (rec["id"],))
    sidecar(sidecar_dsn, github).run(once=True)

    [req] = requests_of(db)
    assert req["status"] == "done" and req["attempts"] == 1 and req["last_error"] is None
    [pr] = github.pulls()
    assert pr["head"] == f"arch/rec-{rec['id']}" and pr["base"] == "main" and pr["state"] == "open"
    assert req["result"]["pr_number"] == pr["number"] and req["result"]["url"].endswith(f"/pull/{pr['number']}")

    files = {p: t for p, t in github.files(pr["head"]).items() if p != "README.md"}
    [(path, content)] = files.items()
    assert re.fullmatch(rf"migrations/\d{{14}}_arch_rec_{rec['id']}_[a-z0-9_]+\.sql", path), path
    assert content.startswith(f"-- pg_architect recommendation {rec['id']}: ")
    assert "cannot run inside a transaction block" in content
    assert content.rstrip().endswith(rec["ddl"] + ";")
    [stmt] = [s for s in sqlglot.parse(content, read="postgres") if s is not None]
    assert stmt.args["concurrently"]

    body = pr["body"]
    for needle in (rec["ddl"], rec["query"], "Calls in the audit window", "Plan before → after",
                   rec["plan_changes"]["removed"][0], f"{rec['est_gain_pct']:.1f} %", "Confidence:",
                   rec["rollback_ddl"], "How to verify after merge", "indisvalid", "Similar past cases",
                   "#7 (similarity 0.93)", "outcome **improved**, measured +88.2 %",
                   "> Shows a customer their latest activity.", "Approved by `postgres`", "ship it"):
        assert needle in body, needle
    assert pr["title"].startswith(f"pg_architect #{rec['id']}: index ")

    assert db.value("SELECT status FROM arch.recommendation WHERE id = %s", (rec["id"],)) == "pr_open"
    last = db.dicts("SELECT from_status, to_status, changed_by::text, note FROM arch.recommendation_history"
                    " WHERE recommendation_id = %s ORDER BY seq DESC LIMIT 1", (rec["id"],))[0]
    assert last["to_status"] == "pr_open" and last["changed_by"] == "pga_sidecar"
    assert last["note"] == f"pull request #{pr['number']} {github.url}/acme/app/pull/{pr['number']}"
    view = db.dicts("SELECT pr_number, state, url, branch, files FROM arch.pull_requests")
    assert view == [{"pr_number": pr["number"], "state": "open", "url": req["result"]["url"],
                     "branch": f"arch/rec-{rec['id']}", "files": [path]}]
    assert db.value("SELECT pull_request_url FROM arch.recommendations WHERE id = %s", (rec["id"],)) == req["result"]["url"]
    # Nothing was applied to the database.
    assert db.value("SELECT to_regclass(%s)", (f"public.{rec['index_name']}",)) is None

    # Running again changes nothing: one branch, one pull request, one commit.
    commits = github.calls("PUT", "/contents/")
    sidecar(sidecar_dsn, github).run(once=True)
    assert len(github.pulls()) == 1 and github.calls("PUT", "/contents/") == commits
    side = db.dicts("SELECT name, alive, processed, failed, stopped_at IS NOT NULL AS stopped FROM arch.sidecars"
                    " ORDER BY id")
    assert [(s["alive"], s["stopped"]) for s in side] == [(False, True), (False, True)]
    assert side[0]["processed"] == 1


@pytest.mark.parametrize("fmt", ["sql", "prisma", "flyway"])
def test_migration_formats(gh, github, sidecar_dsn, fmt):
    db = gh
    db.sql("UPDATE arch.settings SET migration_format = %s, migrations_dir = 'db/migrations'", (fmt,))
    rec = approved(db)[0]
    sidecar(sidecar_dsn, github).run(once=True)
    files = {p: t for p, t in github.files(f"arch/rec-{rec['id']}").items() if p != "README.md"}
    slug = rf"arch_rec_{rec['id']}_[a-z0-9_]+"
    if fmt == "sql":
        [path] = files
        assert re.fullmatch(rf"db/migrations/\d{{14}}_{slug}\.sql", path), path
        assert "outside a transaction block" in files[path]
    elif fmt == "prisma":
        [path] = files
        assert re.fullmatch(rf"db/migrations/\d{{14}}_{slug}/migration\.sql", path), path
        assert "only this one statement" in files[path]
    else:
        sql_path, conf_path = sorted(files)
        assert re.fullmatch(rf"db/migrations/V\d{{14}}__{slug}\.sql", sql_path), sql_path
        assert conf_path == sql_path + ".conf"
        assert "executeInTransaction=false" in files[conf_path].splitlines()
        assert "executeInTransaction=false" in files[sql_path]
        path = sql_path
    statements = [s for s in sqlglot.parse(files[path], read="postgres") if s is not None]
    assert len(statements) == 1 and statements[0].args["concurrently"]
    assert files[path].rstrip().endswith(rec["ddl"] + ";")
    assert db.value("SELECT migration_format FROM arch.pull_request") == fmt


def test_pull_request_state_is_synced_back(gh, github, sidecar_dsn):
    db = gh
    a, b = approved(db, 2)
    sidecar(sidecar_dsn, github).run(once=True)
    numbers = {p["head"]: p["number"] for p in github.pulls()}
    github.merge(numbers[f"arch/rec-{a['id']}"])
    github.close(numbers[f"arch/rec-{b['id']}"])
    sidecar(sidecar_dsn, github).run(once=True)
    rows = {r["id"]: r for r in db.dicts("SELECT r.id, r.status, p.state, p.merged_at IS NOT NULL AS merged"
                                        " FROM arch.recommendation r JOIN arch.pull_request p"
                                        " ON p.recommendation_id = r.id")}
    assert rows[a["id"]] == {"id": a["id"], "status": "merged", "state": "merged", "merged": True}
    assert rows[b["id"]] == {"id": b["id"], "status": "closed", "state": "closed", "merged": False}
    assert "README.md" in github.files("main") and len(github.files("main")) == 2


def test_server_errors_are_retried_with_backoff(gh, github, sidecar_dsn):
    db = gh
    approved(db)
    github.fail("GET", r"^/repos/acme/app$", status=502, times=2)
    github.fail("POST", r"/pulls$", status=503, times=1)
    sleeps = []
    sidecar(sidecar_dsn, github, sleeps).run(once=True)
    [req] = requests_of(db)
    assert req["status"] == "done" and req["attempts"] == 1
    assert sleeps == [0.5, 1.0, 0.5]
    assert len(github.pulls()) == 1


def test_persistent_errors_are_recorded_rescheduled_then_failed(gh, github, sidecar_dsn):
    db = gh
    db.sql("UPDATE arch.settings SET request_retry_base_s = 30, request_max_attempts = 2")
    approved(db)
    github.fail("GET", r"^/repos/acme/app$", status=500, times=100)
    sidecar(sidecar_dsn, github).run(once=True)
    [req] = requests_of(db)
    assert req["status"] == "pending" and req["attempts"] == 1 and req["later"]
    assert "HTTP 500" in req["last_error"] and "failed 4 times" in req["last_error"]
    assert 25 < db.value("SELECT extract(epoch FROM run_after - now()) FROM arch.request") <= 30
    db.sql("UPDATE arch.request SET run_after = now()")
    sidecar(sidecar_dsn, github).run(once=True)
    [req] = requests_of(db)
    assert req["status"] == "failed" and req["attempts"] == 2 and "attempt 2 of 2" in req["last_error"]
    assert github.pulls() == []


def test_timeout_after_the_pull_request_was_created_gives_one_pull_request(gh, github, sidecar_dsn):
    db = gh
    db.sql("UPDATE arch.settings SET github_timeout_s = 1")
    approved(db)
    github.delay_after("POST", r"/pulls$", seconds=2)
    sidecar(sidecar_dsn, github).run(once=True)
    [req] = requests_of(db)
    assert req["status"] == "done", req
    assert github.calls("POST", r"/pulls$") == 1
    assert len(github.pulls()) == 1 and req["result"]["pr_number"] == 1


def test_rate_limit_waits_for_the_reset(gh, github, sidecar_dsn):
    db = gh
    approved(db)
    github.rate_limit("POST", r"/git/refs$", reset_in=30)
    sleeps = []
    sidecar(sidecar_dsn, github, sleeps).run(once=True)
    assert len(sleeps) == 1 and 29 <= sleeps[0] <= 32  # waited for X-RateLimit-Reset (+1 s)
    assert requests_of(db)[0]["status"] == "done" and len(github.pulls()) == 1


def test_rate_limit_longer_than_the_bound_reschedules(gh, github, sidecar_dsn):
    db = gh
    db.sql("UPDATE arch.settings SET github_max_wait_s = 5")
    approved(db)
    github.rate_limit("GET", r"^/repos/acme/app$", reset_in=600)
    sleeps = []
    sidecar(sidecar_dsn, github, sleeps).run(once=True)
    [req] = requests_of(db)
    assert sleeps == [] and req["status"] == "pending" and "rate limit" in req["last_error"]
    assert 590 < db.value("SELECT extract(epoch FROM run_after - now()) FROM arch.request") < 610


def test_sidecar_killed_between_branch_and_pull_request(gh, github, sidecar_dsn):
    """Killed (SIGKILL) while the pull request is being created: the restarted sidecar reclaims
    the request at once (the dead one's lock is gone) and ends with one branch and one PR."""
    db = gh
    rec = approved(db)[0]
    hang = github.hang("POST", r"/pulls$")
    env = dict(os.environ, PGA_GITHUB_TOKEN=github.token)
    proc = subprocess.Popen([sys.executable, "-m", "pg_architect.cli", "sidecar", "--dsn", sidecar_dsn, "--once"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert hang.arrived.wait(30), proc.communicate(timeout=5)
        assert f"arch/rec-{rec['id']}" in github.branches()
        proc.kill()
        proc.wait(10)
    finally:
        hang.release.set()
        if proc.poll() is None:
            proc.kill()
    [req] = requests_of(db)
    assert req["status"] == "running"  # claimed by a sidecar that no longer exists
    assert _wait_dead(db)
    sidecar(sidecar_dsn, github).run(once=True)
    [req] = requests_of(db)
    assert req["status"] == "done" and req["attempts"] == 2
    assert len(github.pulls()) == 1 and github.branches().count(f"arch/rec-{rec['id']}") == 1
    assert db.value("SELECT status FROM arch.recommendation WHERE id = %s", (rec["id"],)) == "pr_open"


def _wait_dead(db: Session) -> bool:
    for _ in range(50):
        if not db.value("SELECT bool_or(alive) FROM arch.sidecars"):
            return True
        time.sleep(0.1)
    return False


def test_two_sidecars_racing_never_do_the_same_request_twice(gh, github, sidecar_dsn):
    db = gh
    recs = approved(db, 3)
    # More work: many train-free explain-free requests would need an LLM; pull requests suffice
    # here, plus a slow GitHub so that both sidecars are busy at the same time.
    github.delay_after("GET", r"^/repos/acme/app$", seconds=0.2, times=100)
    a, b = sidecar(sidecar_dsn, github, name="a"), sidecar(sidecar_dsn, github, name="b")
    errors = []

    def run(s):
        try:
            s.run(once=True)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s,)) for s in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    reqs = requests_of(db)
    assert [r["status"] for r in reqs] == ["done"] * 3 and all(r["attempts"] == 1 for r in reqs)
    assert sorted(a.done + b.done) == [r["id"] for r in reqs]
    assert not set(a.done) & set(b.done)
    assert github.calls("POST", r"/pulls$") == 3 and github.calls("POST", r"/git/refs$") == 3
    assert sorted(p["head"] for p in github.pulls()) == sorted(f"arch/rec-{r['id']}" for r in recs)


@pytest.mark.parametrize("ddl, why", [
    ("CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON public.orders USING btree (no_such_column)",
     "column(s) no_such_column do not exist"),
    ("CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON public.no_such_table USING btree (user_id)",
     "is for public.no_such_table"),
    ("CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON public.orders USING btree (user_id); DROP TABLE users",
     "more than one statement"),
    ("CREATE INDEX IF NOT EXISTS {name} ON public.orders USING btree (user_id)", "without CONCURRENTLY"),
    ("DROP TABLE public.orders", "only CREATE INDEX is allowed"),
    ("CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON public.orders USING btree ((SELECT 1))",
     "subquery"),
    ("CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON orders USING btree (user_id)", "schema.table"),
])
def test_ddl_validation_refuses_before_anything_is_written(gh, github, sidecar_dsn, ddl, why):
    db = gh
    rec = approved(db, table="orders")[0]
    forge(db, rec["id"], "ddl", ddl.format(name=rec["index_name"]))
    sidecar(sidecar_dsn, github).run(once=True)
    [req] = requests_of(db)
    assert req["status"] == "refused" and why in req["last_error"], req["last_error"]
    assert req["last_error"].startswith("DDL validation:")
    assert github.log == [] and github.pulls() == [] and github.branches() == ["main"]
    assert db.value("SELECT status FROM arch.recommendation WHERE id = %s", (rec["id"],)) == "approved"


def test_rollback_and_existing_index_are_validated_too(gh, github, sidecar_dsn):
    db = gh
    rec = approved(db)[0]
    forge(db, rec["id"], "rollback_ddl", "DROP TABLE public.orders")
    sidecar(sidecar_dsn, github).run(once=True)
    assert "the rollback must be DROP INDEX" in requests_of(db)[0]["last_error"]
    forge(db, rec["id"], "rollback_ddl", rec["rollback_ddl"])
    db.sql(f"CREATE INDEX {rec['index_name']} ON orders (status)")
    try:
        db.sql("SELECT arch.retry_request(%s)", (requests_of(db)[0]["id"],))
        sidecar(sidecar_dsn, github).run(once=True)
        assert "already exists" in requests_of(db)[0]["last_error"]
    finally:
        db.sql(f"DROP INDEX {rec['index_name']}")
    assert github.log == []


def test_missing_token_and_repository_fail_with_a_clear_error(gh, github, sidecar_dsn):
    db = gh
    approved(db)
    Sidecar(sidecar_dsn, env={}).run(once=True)
    [req] = requests_of(db)
    assert req["status"] == "failed" and "PGA_GITHUB_TOKEN" in req["last_error"]
    db.sql("UPDATE arch.settings SET github_repo = 'acme/missing'")
    db.sql("SELECT arch.retry_request(%s)", (req["id"],))
    sidecar(sidecar_dsn, github).run(once=True)
    [req] = requests_of(db)
    assert req["status"] == "failed" and "repository acme/missing" in req["last_error"]


def test_rejected_before_the_sidecar_ran_opens_nothing(gh, github, sidecar_dsn):
    db = gh
    rec = approved(db)[0]
    db.sql("SELECT arch.reject(%s, 'not now')", (rec["id"],))
    sidecar(sidecar_dsn, github).run(once=True)
    [req] = requests_of(db)
    assert req["status"] == "done" and "is rejected" in req["result"]["skipped"]
    assert github.log == []


def test_auto_policy_opens_pull_requests_without_approval(gh, github, sidecar_dsn):
    db = gh
    db.sql("UPDATE arch.settings SET approval_policy = 'auto_above_threshold', confidence_threshold = 0.01")
    db.run(ORDERS_OF_USER, [(u,) for u in (1, 2, 3)])
    db.audit()
    sidecar(sidecar_dsn, github).run(once=True)
    recs = recommendations(db)
    assert recs and all(r["status"] == "pr_open" for r in recs)
    assert len(github.pulls()) == len(recs)
    assert all("the review of this pull request is the approval" in p["body"] for p in github.pulls())
    hist = db.sql("SELECT DISTINCT from_status, to_status FROM arch.recommendation_history WHERE from_status IS NOT NULL")
    assert hist == [("proposed", "pr_open")]


def test_notify_wakes_a_waiting_sidecar(gh, github, sidecar_dsn):
    db = gh
    db.sql("UPDATE arch.settings SET sidecar_poll_s = 600")
    first = approved(db)[0]
    second = next(r for r in recommendations(db) if r["status"] == "proposed")
    s = sidecar(sidecar_dsn, github)
    t = threading.Thread(target=s.run)
    t.start()
    try:
        deadline = time.monotonic() + 30
        while not (len(github.pulls()) == 1 and db.value("SELECT count(*) FROM arch.request WHERE status = 'done'")):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.3)  # the sidecar is now waiting (poll: 600 s)
        t0 = time.monotonic()
        db.sql("SELECT arch.approve(%s)", (second["id"],))
        while len(github.pulls()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(github.pulls()) == 2 and time.monotonic() - t0 < 5  # woken by NOTIFY, not the poll
    finally:
        s.stop()
        t.join(10)
    assert not t.is_alive()
    assert {p["head"] for p in github.pulls()} == {f"arch/rec-{first['id']}", f"arch/rec-{second['id']}"}


@contextlib.contextmanager
def sidecar_process(db: Session, github: FakeGitHub, sidecar_dsn: str, name: str):
    """`pg-architect sidecar` as its own process, yielded once arch.sidecars shows it alive;
    killed on the way out if it is still running."""
    env = dict(os.environ, PGA_GITHUB_TOKEN=github.token)
    proc = subprocess.Popen([sys.executable, "-m", "pg_architect.cli", "sidecar", "--dsn", sidecar_dsn,
                             "--name", name], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(proc, lambda: db.value("SELECT bool_or(alive) FROM arch.sidecars WHERE name = %s", (name,)))
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=5)


def sigterm(proc: subprocess.Popen) -> str:
    """Stop it as a service manager would; its output."""
    proc.send_signal(signal.SIGTERM)
    return proc.communicate(timeout=15)[0]


def wait_for(proc: subprocess.Popen, condition, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(proc.communicate(timeout=5)[0])
        time.sleep(0.1)


def test_sigterm_stops_the_sidecar_cleanly(gh, github, sidecar_dsn):
    db = gh
    with sidecar_process(db, github, sidecar_dsn, "sigterm-test") as proc:
        out = sigterm(proc)
    assert proc.returncode == 0, out
    assert "stopped" in out
    row = db.dicts("SELECT alive, stopped_at IS NOT NULL AS stopped FROM arch.sidecars WHERE name = 'sigterm-test'")
    assert row == [{"alive": False, "stopped": True}]


def test_version_is_checked_at_start(gh, dsn, sidecar_dsn):
    db = gh
    db.sql("UPDATE arch.python_env SET package_version = '0.0.1'")
    try:
        with pytest.raises(SidecarError, match=r"has 0\.0\.1 installed"):
            Sidecar(sidecar_dsn, env={}).start()
        out = subprocess.run([sys.executable, "-m", "pg_architect.cli", "sidecar", "--dsn", sidecar_dsn, "--once"],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 2 and "pg-architect install" in out.stderr
    finally:
        import pg_architect

        db.sql("UPDATE arch.python_env SET package_version = %s", (pg_architect.__version__,))


def test_sidecar_cannot_do_more_than_its_role_allows(gh, sidecar_dsn):
    with psycopg.connect(sidecar_dsn, autocommit=True) as side:
        for sql in ("UPDATE arch.settings SET github_repo = 'evil/repo'",
                    "INSERT INTO arch.request (kind) VALUES ('ask')",
                    "SELECT * FROM public.users LIMIT 1",
                    "DELETE FROM arch.recommendation"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                side.execute(sql)


@pytest.mark.skipif(not (os.environ.get("PGA_TEST_GITHUB_TOKEN") and os.environ.get("PGA_TEST_GITHUB_REPO")),
                    reason="set PGA_TEST_GITHUB_TOKEN and PGA_TEST_GITHUB_REPO (a scratch repository) to open a real PR")
def test_real_github(gh, sidecar_dsn):  # pragma: no cover - needs the network and credentials
    db = gh
    db.sql("UPDATE arch.settings SET github_api_url = 'https://api.github.com', github_repo = %s,"
           " github_timeout_s = 30", (os.environ["PGA_TEST_GITHUB_REPO"],))
    approved(db)
    Sidecar(sidecar_dsn, env={"PGA_GITHUB_TOKEN": os.environ["PGA_TEST_GITHUB_TOKEN"]}).run(once=True)
    [req] = requests_of(db)
    assert req["status"] == "done" and req["result"]["url"].startswith("https://github.com/")


def test_sidecar_reconnects_after_losing_the_database(gh, github, sidecar_dsn):
    """Its backends are terminated (a restart, a failover): it registers again and carries on."""
    db = gh
    with sidecar_process(db, github, sidecar_dsn, "reconnect-test") as proc:
        db.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'pga_sidecar'")
        wait_for(proc, lambda: db.value("SELECT count(*) FROM arch.sidecar WHERE name = 'reconnect-test'") >= 2)
        rec = approved(db)[0]  # and it still works: an approval becomes a pull request
        wait_for(proc, github.pulls)
        out = sigterm(proc)
    assert proc.returncode == 0, out
    assert "reconnecting in" in out
    assert [p["head"] for p in github.pulls()] == [f"arch/rec-{rec['id']}"]


def test_lost_connection_is_not_a_statement_error(db, dsn):
    """Through the CLI host a lost connection surfaces as psycopg.OperationalError (the sidecar
    reconnects), never as a DbError that would be recorded against a request."""
    from pg_architect.db import PsycopgDb

    with psycopg.connect(dsn, autocommit=True) as conn:
        host = PsycopgDb(conn)
        db.sql("SELECT pg_terminate_backend(%s)", (conn.info.backend_pid,))
        with pytest.raises(psycopg.OperationalError):
            host.query("SELECT 1")
