"""Issue 7, item 1: planning a workload statement never runs its code with the auditor's rights.

The planner folds IMMUTABLE and STABLE functions (and operators and casts backed by them) with
constant arguments while it plans.  A login role that plants such a function in a statement must
not get it run as the (superuser) auditor.  Each attack function writes a file with lo_export
when it finds itself running as a superuser (exactly the reproduction of the issue) and raises a
NOTICE naming the role it runs as, so the test sees both the side effect and who planned.
"""

import os
import secrets

import psycopg
import pytest

from conftest import recommendations

ROLE = "pga_app"
SCHEMA = "pga_mallory"
LEGIT = "SELECT count(*) FROM orders WHERE user_id = %s"


def _attack_body(lo: int, path: str, tag: str, pre: str = "") -> str:
    return (f"BEGIN {pre} RAISE NOTICE 'pga_probe {tag} ran as %', current_user;"
            f" IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN"
            f" PERFORM lo_export({lo}, '{path}_' || current_user); END IF; RETURN 1; END")


@pytest.fixture
def tenant(low_thresholds, dsn):
    """A login role with SELECT on the sample tables and a schema of its own."""
    db = low_thresholds
    db.sql(f"CREATE ROLE {ROLE} LOGIN")
    db.sql(f"GRANT SELECT ON users, orders TO {ROLE}")
    db.sql(f"CREATE SCHEMA {SCHEMA} AUTHORIZATION {ROLE}")
    conn = psycopg.connect(f"{dsn} user={ROLE}", autocommit=True)
    notices: list[str] = []
    conn.add_notice_handler(lambda d: notices.append(d.message_primary))
    stem = f"/tmp/pga_pwned_{secrets.token_hex(6)}"
    try:
        yield db, conn, stem, notices
    finally:
        conn.close()
        for f in os.listdir("/tmp"):
            if f.startswith(os.path.basename(stem)):
                os.unlink(os.path.join("/tmp", f))
        db.sql("SELECT lo_unlink(oid) FROM pg_largeobject_metadata WHERE lomowner = %s::regrole", (ROLE,))
        db.sql(f"DROP SCHEMA {SCHEMA} CASCADE")
        db.sql(f"DROP OWNED BY {ROLE}")
        db.sql(f"DROP ROLE {ROLE}")


def _pwned(stem: str) -> list[str]:
    base = os.path.basename(stem)
    return sorted(f for f in os.listdir("/tmp") if f.startswith(base))


def _outcomes(db) -> dict[str, tuple]:
    rows = db.sql("SELECT s.query, a.outcome, a.skip_code FROM arch.audit_statement a"
                  " JOIN arch.statement s USING (dbid, userid, queryid)")
    return {q: (o, c) for q, o, c in rows}


def _plant(conn, stem: str) -> list[str]:
    """The attacks of the issue, run twice each by the tenant; returns the statements' texts."""
    lo = conn.execute("SELECT lo_from_bytea(0, 'payload')").fetchone()[0]
    # 1. the reproduction: an IMMUTABLE function in the session's temp schema.
    conn.execute("CREATE FUNCTION pg_temp.t_imm() RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$"
                 + _attack_body(lo, stem + "_temp", "t_imm") + "$$")
    # 2. a STABLE function in a schema the tenant owns.
    conn.execute(f"CREATE FUNCTION {SCHEMA}.stab() RETURNS int LANGUAGE plpgsql STABLE AS $$"
                 + _attack_body(lo, stem + "_stable", "stab") + "$$")
    # 3. an operator backed by such a function (its arguments fold to constants).
    conn.execute(f"CREATE FUNCTION {SCHEMA}.one() RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT 1'")
    conn.execute(f"CREATE FUNCTION {SCHEMA}.opf(int, int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$"
                 + _attack_body(lo, stem + "_op", "opf") + "$$")
    conn.execute(f"CREATE OPERATOR {SCHEMA}.### (LEFTARG = int, RIGHTARG = int, FUNCTION = {SCHEMA}.opf)")
    # 4. a cast backed by such a function.
    conn.execute(f"CREATE TYPE {SCHEMA}.pt AS (x int)")
    conn.execute(f"CREATE FUNCTION {SCHEMA}.mkpt() RETURNS {SCHEMA}.pt LANGUAGE sql IMMUTABLE AS 'SELECT ROW(1)::{SCHEMA}.pt'")
    conn.execute(f"CREATE FUNCTION {SCHEMA}.castf({SCHEMA}.pt) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$"
                 + _attack_body(lo, stem + "_cast", "castf") + "$$")
    conn.execute(f"CREATE CAST ({SCHEMA}.pt AS int) WITH FUNCTION {SCHEMA}.castf({SCHEMA}.pt)")
    # 5. a function that first drops any SET ROLE (checked against the session user, the auditor).
    conn.execute(f"CREATE FUNCTION {SCHEMA}.escape() RETURNS int LANGUAGE plpgsql STABLE AS $$"
                 + _attack_body(lo, stem + "_reset", "escape", pre="PERFORM set_config('role', 'none', true);") + "$$")
    stmts = ["SELECT id FROM public.users WHERE id = pg_temp.t_imm()",
             f"SELECT id FROM public.users WHERE id > {SCHEMA}.stab()",
             f"SELECT id FROM public.users WHERE id = ({SCHEMA}.one() OPERATOR({SCHEMA}.###) {SCHEMA}.one())",
             f"SELECT id FROM public.users WHERE id = {SCHEMA}.mkpt()::int",
             f"SELECT id FROM public.users WHERE id < {SCHEMA}.escape()"]
    for _ in range(2):  # twice, so it is in pg_stat_statements
        for s in stmts:
            conn.execute(s).fetchall()
        conn.execute(LEGIT.replace("%s", "42")).fetchall()
    return stmts


def test_audit_plans_as_the_role_that_ran_it(tenant):
    db, conn, stem, _notices = tenant
    _plant(conn, stem)
    db.notices.clear()
    summary = db.audit()
    assert _pwned(stem) == [], "a tenant's function ran as superuser during the audit"
    probes = [n for n in db.notices if n.startswith("pga_probe")]
    # The planner did fold the tenant's functions, as the tenant and never as anyone else.
    assert probes, db.notices
    assert all(n.endswith(f"ran as {ROLE}") for n in probes), probes
    assert {n.split()[1] for n in probes} >= {"stab", "opf", "castf"}, probes
    out = _outcomes(db)
    by_text = {q.split("WHERE", 1)[1].strip(): v for q, v in out.items() if "public.users" in q}
    assert by_text["id = pg_temp.t_imm()"] == ("skipped", "temp_object"), out
    assert [v for k, v in by_text.items() if "escape" in k] != [("analyzed", None)], out
    # The tenant's legitimate statement is still analysed and gets its index.
    legit = [v for q, v in out.items() if q.startswith("SELECT count(*) FROM orders WHERE user_id")]
    assert legit == [("analyzed", None)], out
    assert any(r["table_name"] == "orders" and "user_id" in r["ddl"] for r in recommendations(db))
    assert summary["statements_analyzed"] >= 1
    # Nothing of the audit's planning machinery is left in the session.
    assert db.value("SELECT count(*) FROM pg_proc WHERE proname LIKE 'pga_plan_as_%'") == 0


def test_cli_audit_plans_as_the_role_that_ran_it(tenant, dsn):
    """`pg-architect audit` (psycopg host) takes the same path."""
    from pg_architect import cli

    db, conn, stem, _notices = tenant
    _plant(conn, stem)
    assert cli.main(["audit", "--dsn", dsn, "--quiet"]) == 0
    assert _pwned(stem) == []
    assert any(r["table_name"] == "orders" for r in recommendations(db)), _outcomes(db)
    assert _outcomes(db)["SELECT id FROM public.users WHERE id = pg_temp.t_imm()"] == ("skipped", "temp_object")


def test_statement_of_a_dropped_role_is_not_planned_as_the_auditor(tenant):
    db, conn, stem, _notices = tenant
    _plant(conn, stem)
    conn.close()
    db.sql(f"DROP SCHEMA {SCHEMA} CASCADE")
    db.sql(f"CREATE SCHEMA {SCHEMA}")  # now the auditor's: owned by the superuser
    db.sql(f"CREATE FUNCTION {SCHEMA}.stab() RETURNS int LANGUAGE sql STABLE AS 'SELECT 1'")
    db.sql("SELECT lo_unlink(oid) FROM pg_largeobject_metadata WHERE lomowner = %s::regrole", (ROLE,))
    db.sql(f"DROP OWNED BY {ROLE}")
    db.sql(f"DROP ROLE {ROLE}")
    db.sql(f"CREATE ROLE {ROLE} LOGIN")  # so that the fixture's cleanup finds it
    db.audit()
    out = _outcomes(db)
    assert out[f"SELECT id FROM public.users WHERE id > {SCHEMA}.stab()"] == ("skipped", "untrusted_code"), out
    reason = db.value("SELECT skip_reason FROM arch.audit_statement WHERE skip_code = 'untrusted_code' LIMIT 1")
    assert "no longer exists" in reason


def test_non_superuser_auditor_skips_a_superusers_statements(low_thresholds, dsn):
    db = low_thresholds
    db.sql('CREATE ROLE "pga Aud""itor" LOGIN IN ROLE arch_admin, pg_read_all_stats')
    db.sql('CREATE ROLE "pga Ten""ant" LOGIN')
    db.sql('GRANT SELECT ON orders TO "pga Ten""ant"')
    db.sql('GRANT "pga Ten""ant" TO "pga Aud""itor"')
    try:
        db.run(LEGIT, [(7,)])  # by the superuser
        with psycopg.connect(f"{dsn} user='pga Ten\"ant'", autocommit=True) as t:
            t.execute("SELECT count(*) FROM orders WHERE user_id >= 42").fetchall()
        with psycopg.connect(f"{dsn} user='pga Aud\"itor'", autocommit=True) as a:
            a.execute("SELECT arch.run_audit()")
        out = _outcomes(db)
        assert out["SELECT count(*) FROM orders WHERE user_id = $1"] == ("skipped", "untrusted_code"), out
        assert out["SELECT count(*) FROM orders WHERE user_id >= $1"] == ("analyzed", None), out
    finally:
        db.sql('DROP OWNED BY "pga Ten""ant"')
        db.sql('DROP ROLE "pga Aud""itor"')
        db.sql('DROP ROLE "pga Ten""ant"')


def test_analyze_query_plans_as_the_caller(tenant, dsn):
    db, conn, stem, notices = tenant
    _plant(conn, stem)
    # The caller's own functions are planned with the caller's own rights.
    db.sql(f"GRANT arch_admin TO {ROLE}")
    notices.clear()
    conn.execute("SELECT * FROM arch.analyze_query('SELECT id FROM public.users WHERE id > pga_mallory.stab()')").fetchall()
    assert any(n.endswith(f"ran as {ROLE}") for n in notices), notices
    # A superuser calling it on a statement with an escaping function: no superuser code runs.
    with pytest.raises(psycopg.Error):
        db.sql("SELECT * FROM arch.analyze_query('SELECT id FROM public.users WHERE id < pga_mallory.escape()')")
    assert _pwned(stem) == []
    assert db.value("SELECT prosecdef FROM pg_proc WHERE oid = 'arch.analyze_query(text)'::regprocedure") is False
    assert db.value("SELECT prosecdef FROM pg_proc WHERE oid = 'arch._analyze_query(text, text)'::regprocedure") is False


def test_statistics_advisor_plans_as_the_role_that_ran_it(tenant):
    """arch.advise_statistics() plans workload statements too: as their role, never the caller's."""
    db, conn, stem, _notices = tenant
    _plant(conn, stem)
    db.notices.clear()
    advice = db.value("SELECT arch.advise_statistics()")
    assert _pwned(stem) == [], "a tenant's function ran as superuser in the statistics advisor"
    probes = [n for n in db.notices if n.startswith("pga_probe")]
    assert probes, db.notices
    assert all(n.endswith(f"ran as {ROLE}") for n in probes), probes
    # The tenant's legitimate statement was planned (as the tenant), not skipped.
    legit = [a for a in advice if (a.get("query") or "").startswith("SELECT count(*) FROM orders")]
    assert legit and legit[0]["cost"] > 0 and not isinstance(legit[0]["skipped"], str), legit
    assert db.value("SELECT count(*) FROM pg_proc WHERE proname LIKE 'pga_plan_as_%'") == 0
