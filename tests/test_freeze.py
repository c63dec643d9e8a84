"""Issue 7, item 3: what a human approved is exactly what reaches the pull request."""

import psycopg
import pytest

from test_sidecar import approved, forge, gh, github, requests_of, sidecar  # noqa: F401 (fixtures)


@pytest.fixture
def dba(dsn):
    """A login role in arch_admin (and arch_approver), as a DBA would have."""
    with psycopg.connect(dsn, autocommit=True) as su:
        su.execute("CREATE ROLE pga_freeze_dba LOGIN IN ROLE arch_admin, arch_approver")
    conn = psycopg.connect(f"{dsn} user=pga_freeze_dba", autocommit=True)
    yield conn
    conn.close()
    with psycopg.connect(dsn, autocommit=True) as su:
        su.execute("DROP ROLE pga_freeze_dba")


@pytest.mark.parametrize("column, value", [
    ("ddl", "CREATE INDEX CONCURRENTLY IF NOT EXISTS x ON public.orders USING btree (status)"),
    ("rollback_ddl", "DROP TABLE public.orders"),
    ("table_name", "users"),
    ("kind", "drop_index"),
    ("query", "SELECT 1"),
    ("approved_hash", "0" * 64),
])
def test_approved_recommendation_is_frozen(gh, dba, column, value):
    db = gh
    rec = approved(db, table="orders")[0]
    before = db.dicts("SELECT * FROM arch.recommendation WHERE id = %s", (rec["id"],))[0]
    assert before["approved_hash"] == db.value(
        "SELECT arch.approval_hash(kind, schema_name, table_name, ddl, rollback_ddl) FROM arch.recommendation"
        " WHERE id = %s", (rec["id"],))
    for conn in (dba, db.conn):  # the admin of the issue, and not even a superuser
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState) as err:
            conn.execute(f"UPDATE arch.recommendation SET {column} = %s WHERE id = %s", (value, rec["id"]))
        assert err.value.diag.message_detail and err.value.diag.message_hint
    assert db.dicts("SELECT * FROM arch.recommendation WHERE id = %s", (rec["id"],))[0] == before


def test_proposed_recommendation_can_still_change(gh):
    db = gh
    db.run("SELECT id, total FROM orders WHERE user_id = %s", [(1,), (2,)])
    db.audit()
    rid = db.value("SELECT id FROM arch.recommendation WHERE status = 'proposed' LIMIT 1")
    db.sql("UPDATE arch.recommendation SET rationale = 'edited', ddl = ddl WHERE id = %s", (rid,))
    assert db.value("SELECT approved_hash FROM arch.recommendation WHERE id = %s", (rid,)) is None


def test_sidecar_refuses_ddl_forged_behind_the_trigger(gh, github, sidecar_dsn):
    db = gh
    rec = approved(db, table="orders")[0]
    forged = rec["ddl"].replace("(user_id)", "(status)")
    assert forged != rec["ddl"]
    forge(db, rec["id"], "ddl", forged, rehash=False)  # e.g. a superuser disabled the trigger
    sidecar(sidecar_dsn, github).run(once=True)
    [req] = requests_of(db)
    assert req["status"] == "refused", req
    assert "approval hash does not match" in req["last_error"], req["last_error"]
    assert github.log == [] and github.pulls() == [] and github.branches() == ["main"]
    assert db.value("SELECT status FROM arch.recommendation WHERE id = %s", (rec["id"],)) == "approved"
