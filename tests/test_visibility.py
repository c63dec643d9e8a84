"""Issue 7, item 2: statement texts never leak secrets, and each role sees a statement's text in
arch only where pg_stat_statements would show it to that role."""

import psycopg
import pytest

from conftest import recommendations

SECRET = "Hunter2-TopSecret"
HIDDEN = "<insufficient privilege>"
OWN = "SELECT count(*) FROM orders WHERE user_id = 42"
OWN_NORMALISED = "SELECT count(*) FROM orders WHERE user_id = $1"


@pytest.fixture
def cluster(low_thresholds, dsn):
    """The issue's cluster: a password change, a tenant with its own statements, three readers."""
    db = low_thresholds
    roles = {
        "pga_grafana": "arch_reader",                       # Grafana: arch_reader only
        "pga_stats": "arch_reader, pg_read_all_stats",      # a reader allowed every text
        "pga_owner": "arch_reader",                         # the role that ran the statements
        "pga_victim": None,
    }
    for r, member_of in roles.items():
        db.sql(f"CREATE ROLE {r} LOGIN" + (f" IN ROLE {member_of}" if member_of else ""))
    db.sql("GRANT SELECT ON orders, users TO pga_owner")
    conns = {}
    try:
        for r in roles:
            conns[r] = psycopg.connect(f"{dsn} user={r}", autocommit=True)
        db.sql(f"ALTER ROLE pga_victim PASSWORD '{SECRET}'")
        db.sql(f"CREATE USER pga_other PASSWORD '{SECRET}'")
        for _ in range(2):
            conns["pga_owner"].execute(OWN).fetchall()
            conns["pga_owner"].execute("SELECT 40 + 2 AS answer").fetchall()  # skipped: no table
        db.audit()
        yield db, conns
    finally:
        for c in conns.values():
            c.close()
        db.sql("DROP ROLE IF EXISTS pga_other")
        db.sql("REVOKE SELECT ON orders, users FROM pga_owner")
        for r in roles:
            db.sql(f"DROP ROLE {r}")


def _arch_tables(db) -> list[str]:
    return [r[0] for r in db.sql("SELECT format('arch.%I', relname) FROM pg_class"
                                 " WHERE relnamespace = 'arch'::regnamespace AND relkind IN ('r', 'p')")]


def test_password_never_stored(cluster):
    db, conns = cluster
    assert db.value("SELECT count(*) FROM pg_stat_statements WHERE query LIKE %s", (f"%{SECRET}%",)) >= 1
    for t in _arch_tables(db):
        assert db.value(f"SELECT count(*) FROM {t} x WHERE x::text LIKE %s", (f"%{SECRET}%",)) == 0, t
    # Kept: the fact that it was a utility statement, and its queryid.
    rows = db.dicts("SELECT code, query FROM arch.skipped_statements WHERE code IN ('utility', 'ddl')")
    assert rows and all(SECRET not in (r["query"] or "") for r in rows)
    for name, conn in conns.items():
        for view in ("skipped_statements", "recommendations", "knowledge_cases", "recall_decisions", "explanations"):
            if name == "pga_victim":
                continue
            text = "\n".join(str(r) for r in conn.execute(f"SELECT * FROM arch.{view}").fetchall())
            assert SECRET not in text, (name, view)


def test_texts_follow_pg_stat_statements_visibility(cluster):
    db, conns = cluster
    rec = next(r for r in recommendations(db) if r["table_name"] == "orders")
    assert rec["query"] == OWN_NORMALISED
    db.sql("INSERT INTO arch.statement_explanation (dbid, userid, queryid, explanation)"
           " SELECT dbid, userid, queryid, 'Counts the orders of one customer' FROM arch.statement"
           " WHERE query = %s", (OWN_NORMALISED,))
    expected = {"pga_grafana": HIDDEN, "pga_stats": OWN_NORMALISED, "pga_owner": OWN_NORMALISED}
    for name, want in expected.items():
        conn = conns[name]
        got = conn.execute("SELECT query FROM arch.recommendations WHERE id = %s", (rec["id"],)).fetchone()[0]
        assert got == want, (name, got)
        purpose = conn.execute("SELECT business_purpose FROM arch.recommendations WHERE id = %s",
                               (rec["id"],)).fetchone()[0]
        assert purpose == (HIDDEN if want == HIDDEN else "Counts the orders of one customer"), (name, purpose)
        expl = conn.execute("SELECT query, business_purpose FROM arch.explanations").fetchall()
        assert expl == [(want, HIDDEN if want == HIDDEN else "Counts the orders of one customer")], (name, expl)
        cases = conn.execute("SELECT query, canonical FROM arch.knowledge_cases WHERE recommendation_id = %s",
                             (rec["id"],)).fetchall()
        assert cases and all(q == want for q, _c in cases), (name, cases)
        assert all((c == HIDDEN) == (want == HIDDEN) for _q, c in cases), (name, cases)
    # The superuser (the test session) sees everything, like pg_stat_statements.
    assert db.value("SELECT query FROM arch.recommendations WHERE id = %s", (rec["id"],)) == OWN_NORMALISED
    # Skipped statements of the owner: the reason too is hidden from other readers.
    owned = [q for (q,) in db.sql("SELECT queryid FROM arch.audit_statement WHERE outcome = 'skipped'"
                                  " AND userid = 'pga_owner'::regrole")]
    assert owned
    skipped = {name: conns[name].execute(
        "SELECT query, reason FROM arch.skipped_statements WHERE queryid = ANY(%s)", (owned,)).fetchall()
        for name in expected}
    assert skipped["pga_owner"] == skipped["pga_stats"] and skipped["pga_owner"][0][0] != HIDDEN
    assert all(q == HIDDEN and r == HIDDEN for q, r in skipped["pga_grafana"]), skipped
    # The superuser's own (utility) statements: hidden from the plain reader, placeholder for the others.
    util = {name: {q for (q,) in conns[name].execute(
        "SELECT query FROM arch.skipped_statements WHERE code IN ('utility', 'ddl')").fetchall()} for name in expected}
    assert util["pga_grafana"] == {HIDDEN}
    assert {"ALTER <utility statement: text not stored>",
            "CREATE <utility statement: text not stored>"} <= util["pga_stats"]
    assert all(q.endswith("<utility statement: text not stored>") for q in util["pga_stats"]), util


def test_similar_optimizations_follow_the_rule(cluster, dsn):
    db, conns = cluster
    db.sql("GRANT arch_admin TO pga_grafana")
    try:
        rows = conns["pga_grafana"].execute(
            "SELECT statement FROM arch.similar_optimizations(%s)", (OWN_NORMALISED,)).fetchall()
        assert rows and {r[0] for r in rows} == {HIDDEN}
        rows = db.sql("SELECT statement FROM arch.similar_optimizations(%s)", (OWN_NORMALISED,))
        assert OWN_NORMALISED in {r[0] for r in rows}
    finally:
        db.sql("REVOKE arch_admin FROM pga_grafana")
