"""Rewrite rules against a real database: planted tables with indexes, NULL-heavy columns,
boundaries and duplicates.  For every rewrite both forms run on the data with several real
parameter values (NULL included) and must return the same rows (multisets; lists where there
is an ORDER BY); where an index makes the rewrite pay off, the planner proof must say so.
The planted schema ``rw`` is dropped at the end of the module."""

from __future__ import annotations

import uuid
from collections import Counter

import psycopg
import pytest

from pg_architect.advisors.rewrite_catalog import DbCatalog
from pg_architect.advisors.rewrite_proof import propose, prove_rewrite
from pg_architect.advisors.rewrite_rules import Options, Refusal, Rewrite, rewrite
from pg_architect.db import PsycopgDb

SCHEMA = """
CREATE SCHEMA rw;
CREATE TABLE rw.events (
    id      bigint PRIMARY KEY,
    ts      timestamptz NOT NULL,
    lts     timestamp NOT NULL,
    n       integer NOT NULL,
    code    bigint NOT NULL,
    sid     uuid NOT NULL,
    score   integer,
    kind    text NOT NULL,
    amount  numeric(10,2) NOT NULL,
    email   text NOT NULL,
    name    text NOT NULL
);
-- 20 000 rows every 7 minutes from 2018-10-30 (UTC): ~97 days across the America/Sao_Paulo DST
-- start at midnight (2018-11-04 00:00 does not exist there) and its end (2019-02-17).
INSERT INTO rw.events
SELECT i,
       timestamptz '2018-10-30 00:00:00+00' + i * interval '7 minutes',
       timestamp '2018-10-30 00:00:00' + i * interval '7 minutes',
       (i % 5000) - 2500,
       CASE WHEN i = 1 THEN 9223372036854775807 WHEN i = 2 THEN -9223372036854775808
            WHEN i = 3 THEN 0 ELSE (i * 7919) % 100000 - 50000 END,
       md5(i::text)::uuid,
       CASE WHEN i % 3 = 0 THEN NULL ELSE i % 50 END,
       (ARRAY['a', 'b', 'c', 'd'])[1 + i % 4],
       ((i * 37) % 10000) / 100.0,
       'user' || i || '@example.com',
       'name' || (i % 2000)
  FROM generate_series(1, 20000) AS i;
CREATE INDEX ON rw.events (ts);
CREATE INDEX ON rw.events (lts);
CREATE INDEX ON rw.events (n, id);
CREATE INDEX ON rw.events (code);
CREATE INDEX ON rw.events (sid);
CREATE INDEX ON rw.events (score);
CREATE INDEX ON rw.events (amount);
CREATE INDEX ON rw.events (email);
CREATE INDEX ON rw.events (name);
CREATE INDEX ON rw.events (kind, id);

CREATE TABLE rw.customers (
    id       bigint PRIMARY KEY,
    email    text NOT NULL,
    name     text NOT NULL
);
INSERT INTO rw.customers SELECT i, 'c' || i || '@example.com', 'cust' || (i % 300) FROM generate_series(1, 3000) i;
CREATE TABLE rw.orders (
    id           bigint PRIMARY KEY,
    customer_id  bigint NOT NULL REFERENCES rw.customers,
    ref_customer bigint,
    status       text NOT NULL
);
-- customers 1..2000 have orders (several each), 2001..3000 have none; ref_customer mostly NULL
INSERT INTO rw.orders
SELECT i, 1 + (i * 13) % 2000, CASE WHEN i % 4 = 0 THEN 1 + (i * 7) % 3000 END,
       (ARRAY['new', 'paid', 'shipped'])[1 + i % 3]
  FROM generate_series(1, 30000) i;
CREATE INDEX ON rw.orders (customer_id);
CREATE INDEX ON rw.orders (ref_customer);
ANALYZE rw.events, rw.customers, rw.orders;
"""


@pytest.fixture(scope="module")
def rw(dsn):
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("DROP SCHEMA IF EXISTS rw CASCADE")
        c.execute(SCHEMA)
    yield dsn
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("DROP SCHEMA rw CASCADE")


@pytest.fixture
def session(rw):
    """A DBA session with search_path rw (statements are unqualified, as applications send them)
    and a Db over its own connection for the catalog and the planner."""
    conn = psycopg.connect(rw, autocommit=True)
    conn.execute("SET search_path = rw, public")
    conn.execute("SET TimeZone = 'America/Sao_Paulo'")
    dbconn = psycopg.connect(rw)
    dbconn.execute("SET search_path = rw, public")
    dbconn.execute("SET TimeZone = 'America/Sao_Paulo'")
    dbconn.commit()
    db = PsycopgDb(dbconn)
    yield conn, db
    dbconn.rollback()
    dbconn.close()
    conn.close()


def rows(conn, sql, params=()):
    return named_rows(conn, sql, params)[1]


def named_rows(conn, sql, params=()):
    """(column names, rows) of ``sql`` run with $n parameters, as the application would."""
    cur = psycopg.RawCursor(conn)
    cur.execute(sql, params)
    if cur.description is None:
        return [], []
    return [d.name for d in cur.description], cur.fetchall()


def only_rewrite(db, sql, rule, **opts) -> Rewrite:
    out = [o for o in rewrite(sql, DbCatalog(db), [rule], Options(**opts) if opts else None)]
    rws = [o for o in out if isinstance(o, Rewrite)]
    assert len(rws) == 1 and len(out) == 1, out
    return rws[0]


def only_refusal(db, sql, rule) -> str:
    out = rewrite(sql, DbCatalog(db), [rule])
    assert len(out) == 1 and isinstance(out[0], Refusal), out
    return out[0].reason


def same_results(conn, original, rewritten, params_list, new_params=None, ordered=False) -> int:
    """Run both forms with every parameter tuple: same column names, same rows; returns the
    number of rows seen (so a test can make sure the comparison was not between empty results)."""
    seen = 0
    for params in params_list:
        names_a, a = named_rows(conn, original, params)
        names_b, b = named_rows(conn, rewritten, new_params(params) if new_params else params)
        assert names_a == names_b, (names_a, names_b)
        if ordered:
            assert a == b, (params, len(a), len(b))
        else:
            assert Counter(a) == Counter(b), (params, len(a), len(b))
        seen += len(a)
    return seen


def proof(db, original, rewritten, min_gain_pct=10.0):
    p = prove_rewrite(db, original, rewritten, min_gain_pct)
    assert p.cost_before is not None and p.cost_after is not None, p
    return p


# -- sargable_date_trunc ------------------------------------------------------------------------
DAY_PARAMS = [("2018-11-03 00:00",), ("2018-11-04 01:00",), ("2018-11-04 00:30",), ("2018-11-05 00:00",),
              ("2019-02-16 00:00",), ("2019-02-16 23:00",), ("2019-02-17 00:00",), ("2018-11-10 12:00",),
              ("2018-11-10 00:00:00.000001",), ("2017-01-01",), (None,)]


def test_date_trunc_day_on_timestamptz_across_dst_same_rows_and_cheaper(session):
    conn, db = session
    sql = "SELECT id, ts FROM events WHERE date_trunc('day', ts) = $1"
    r = only_rewrite(db, sql, "sargable_date_trunc")
    assert r.sql == ("SELECT id, ts FROM events WHERE ts >= $1 AND ts < date_trunc('day', CAST($1 AS timestamp"
                     " with time zone) + CAST('1 day' AS interval)) AND date_trunc('day',"
                     " CAST($1 AS timestamp with time zone)) = $1")
    assert same_results(conn, sql, r.sql, DAY_PARAMS) > 500
    # the day that starts at 01:00 (no midnight) has its rows in both forms
    assert len(rows(conn, r.sql, ("2018-11-04 01:00",))) > 100
    p = proof(db, sql, r.sql)
    assert p.kept and p.gain_pct > 50, p
    assert any("events_ts_idx" in n for n in p.added) and "Seq Scan on events" in p.removed


def test_the_naive_date_trunc_rewrite_would_change_results(session):
    """Why the boundary check is there: without it a non-boundary $1 returns a whole day."""
    conn, _ = session
    naive = ("SELECT id FROM events WHERE ts >= date_trunc('day', $1::timestamptz)"
             " AND ts < date_trunc('day', $1::timestamptz) + interval '1 day'")
    assert rows(conn, "SELECT id FROM events WHERE date_trunc('day', ts) = $1", ("2018-11-10 12:00",)) == []
    assert len(rows(conn, naive, ("2018-11-10 12:00",))) > 100


def test_date_trunc_on_timestamp_by_hour_and_month(session):
    conn, db = session
    for unit, params in (("hour", [("2018-11-04 00:00",), ("2018-11-04 00:30",), ("2019-01-01 23:00",), (None,)]),
                         ("month", [("2018-11-01",), ("2018-12-01",), ("2018-12-02",), ("2019-02-01",), (None,)])):
        sql = f"SELECT id FROM events WHERE date_trunc('{unit}', lts) = $1 AND kind <> 'z'"
        r = only_rewrite(db, sql, "sargable_date_trunc")
        assert same_results(conn, sql, r.sql, params) > 0
    p = proof(db, "SELECT id FROM events WHERE date_trunc('hour', lts) = $1",
              only_rewrite(db, "SELECT id FROM events WHERE date_trunc('hour', lts) = $1", "sargable_date_trunc").sql)
    assert p.kept and any("events_lts_idx" in n for n in p.added), p


def test_date_trunc_hour_on_timestamptz_is_refused(session):
    _, db = session
    assert "DST" in only_refusal(db, "SELECT id FROM events WHERE date_trunc('hour', ts) = $1", "sargable_date_trunc")


# -- sargable_cast ----------------------------------------------------------------------------------
def test_bigint_text_cast_same_rows_for_odd_strings_and_cheaper(session):
    conn, db = session
    sql = "SELECT id FROM events WHERE code::text = $1"
    r = only_rewrite(db, sql, "sargable_cast")
    existing = str(rows(conn, "SELECT code FROM events WHERE id = 500")[0][0])
    params = [(existing,), ("0",), ("-0",), ("00",), ("+" + existing,), (" " + existing,), ("0" + existing,),
              ("9223372036854775807",), ("-9223372036854775808",), ("9223372036854775808",),
              ("-9223372036854775809",), ("99999999999999999999",), ("abc",), ("",), ("1e3",), (None,)]
    assert same_results(conn, sql, r.sql, params) >= 4
    p = proof(db, sql, r.sql)
    assert p.kept and any("events_code_idx" in n for n in p.added), p


def test_integer_and_uuid_text_casts(session):
    conn, db = session
    sql = "SELECT id FROM events WHERE n::text = $1 AND kind = $2"
    r = only_rewrite(db, sql, "sargable_cast")
    assert same_results(conn, sql, r.sql, [("-2499", "a"), ("12", "a"), ("12", "b"), ("-0012", "a"),
                                           ("2147483648", "a"), ("99999999999", "a"), ("x", "a"), (None, "a")]) > 0
    sid = str(rows(conn, "SELECT sid FROM events WHERE id = 77")[0][0])
    sql = "SELECT id FROM events WHERE sid::text = $1"
    r = only_rewrite(db, sql, "sargable_cast")
    assert same_results(conn, sql, r.sql, [(sid,), (sid.upper(),), (sid.replace("-", ""),), ("{" + sid + "}",),
                                           (str(uuid.uuid4()),), ("nope",), (None,)]) == 1
    assert proof(db, sql, r.sql).kept


def test_numeric_text_cast_is_refused(session):
    _, db = session
    assert "numeric(10,2)" in only_refusal(db, "SELECT id FROM events WHERE amount::text = $1", "sargable_cast")


# -- sargable_coalesce ------------------------------------------------------------------------------
def test_coalesce_on_a_nullable_column_same_rows(session):
    conn, db = session
    sql = "SELECT id FROM events WHERE coalesce(score, 0) = $1"
    r = only_rewrite(db, sql, "sargable_coalesce")
    assert "score IS NULL" in r.sql
    assert same_results(conn, sql, r.sql, [(0,), (5,), (49,), (77,), (None,)]) > 6000
    sql2 = "SELECT id FROM events WHERE coalesce(score, $2) = $1"
    r2 = only_rewrite(db, sql2, "sargable_coalesce")
    assert same_results(conn, sql2, r2.sql, [(7, 7), (7, 8), (8, 7), (None, 7), (7, None),
                                             (3000000000, 3000000000)]) > 6000 + 6000
    p = proof(db, sql, r.sql)
    assert p.kept and any("events_score_idx" in n for n in p.added), p


def test_coalesce_on_a_not_null_column_is_the_column(session):
    conn, db = session
    sql = "SELECT id FROM events WHERE coalesce(n, -1) = $1"
    r = only_rewrite(db, sql, "sargable_coalesce")
    assert r.sql == "SELECT id FROM events WHERE n = $1"
    assert same_results(conn, sql, r.sql, [(-1,), (100,), (9999,), (None,)]) > 0
    assert proof(db, sql, r.sql).kept


# -- sargable_arithmetic ----------------------------------------------------------------------------
def test_arithmetic_moved_to_the_parameter_same_rows_at_the_limits(session):
    conn, db = session
    cases = [
        # psycopg sends each int as the smallest type that holds it: 3000000000 arrives as bigint
        ("SELECT id FROM events WHERE n + 1 = $1", [(1,), (-2499,), (2501,), (-2147483648,), (2147483647,),
                                                    (3000000000,), (-3000000000,), (None,)]),
        ("SELECT id FROM events WHERE 10 - n = $1", [(0,), (2510,), (-2147483648,), (2147483647,), (None,)]),
        ("SELECT id FROM events WHERE id - 5 = $1", [(-5,), (95,), (9223372036854775802,), (9223372036854775807,),
                                                     (-9223372036854775808,), (None,)]),
        ("SELECT id FROM events WHERE amount + 1.5 = $1", [(2.5,), (1.5,), (3.87,), (None,)]),
    ]
    seen = 0
    for sql, params in cases:
        r = only_rewrite(db, sql, "sargable_arithmetic")
        seen += same_results(conn, sql, r.sql, params)
        assert proof(db, sql, r.sql).kept, sql
    assert seen > 10


def test_arithmetic_on_a_timestamp_is_refused(session):
    _, db = session
    assert "only integer and numeric" in only_refusal(
        db, "SELECT id FROM events WHERE lts + interval '1 day' = $1", "sargable_arithmetic")


# -- not_in_to_not_exists ---------------------------------------------------------------------------
def test_not_in_on_not_null_columns_is_rewritten_and_same_rows(session):
    conn, db = session
    sql = "SELECT id FROM customers WHERE id NOT IN (SELECT customer_id FROM orders WHERE status = $1)"
    r = only_rewrite(db, sql, "not_in_to_not_exists")
    assert r.sql == ("SELECT id FROM customers WHERE NOT EXISTS (SELECT 1 FROM orders WHERE status = $1"
                     " AND customer_id = customers.id)")
    assert same_results(conn, sql, r.sql, [("new",), ("paid",), ("none",), (None,)]) > 1000


def test_not_in_that_cannot_be_hashed_pays_off_as_an_anti_join(session):
    """With the subquery's rows beyond work_mem NOT IN is a plain subplan, rescanned per outer row."""
    conn, db = session
    sql = "SELECT id FROM customers WHERE id NOT IN (SELECT customer_id FROM orders)"
    r = only_rewrite(db, sql, "not_in_to_not_exists")
    assert same_results(conn, sql, r.sql, [()]) == 1000
    db.execute("SET work_mem = '64kB'")
    try:
        p = proof(db, sql, r.sql)
    finally:
        db.execute("RESET work_mem")
    assert p.kept and p.gain_pct > 90 and any("Anti" in n for n in p.added), p


def test_not_in_on_a_nullable_column_is_refused_and_would_differ(session):
    conn, db = session
    sql = "SELECT id FROM customers WHERE id NOT IN (SELECT ref_customer FROM orders)"
    assert only_refusal(db, sql, "not_in_to_not_exists") == (
        "not rewritten: orders.ref_customer is NULLable, NOT IN and NOT EXISTS differ when it holds NULL")
    # the reason is real: the NOT EXISTS form returns rows where NOT IN returns none
    assert rows(conn, sql) == []
    assert len(rows(conn, "SELECT id FROM customers c WHERE NOT EXISTS (SELECT 1 FROM orders o"
                          " WHERE o.ref_customer = c.id)")) > 0


def test_not_in_with_an_is_not_null_filter_is_rewritten(session):
    conn, db = session
    sql = "SELECT id FROM customers WHERE id NOT IN (SELECT ref_customer FROM orders WHERE ref_customer IS NOT NULL)"
    r = only_rewrite(db, sql, "not_in_to_not_exists")
    assert same_results(conn, sql, r.sql, [()]) > 0


# -- or_to_union_all --------------------------------------------------------------------------------
def test_or_across_columns_as_union_all_same_rows(session):
    conn, db = session
    sql = "SELECT id, email, name FROM events WHERE email = $1 OR name = $2"
    r = only_rewrite(db, sql, "or_to_union_all")
    params = [("user5@example.com", "name5"),      # the same row matches both arms
              ("user5@example.com", "name6"), ("nobody", "name7"), ("user8@example.com", None),
              (None, "name9"), (None, None)]
    assert same_results(conn, sql, r.sql, params) > 30
    sql = "SELECT id, score FROM events WHERE (score = $1 OR kind = $2) AND n > 0 ORDER BY id"
    r = only_rewrite(db, sql, "or_to_union_all")
    assert same_results(conn, sql, r.sql, [(3, "a"), (None, "b"), (3, None)], ordered=True) > 1000


def test_or_with_order_by_limit_same_rows_and_cheaper(session):
    """The case where UNION ALL pays: each branch reads its index in ORDER BY order and stops."""
    conn, db = session
    sql = "SELECT id, kind, score FROM events WHERE kind = $1 OR score = $2 ORDER BY id LIMIT $3"
    r = only_rewrite(db, sql, "or_to_union_all")
    assert same_results(conn, sql, r.sql, [("a", 7, 10), ("b", 7, 25), ("z", 7, 10), ("a", None, 10),
                                           (None, 3, 10), (None, None, 10), ("c", 2, 0)], ordered=True) > 50
    p = proof(db, sql, r.sql)
    assert p.kept and p.gain_pct > 50 and "Merge Append" in p.added, p


def test_or_proof_is_reported(session):
    """Both arms indexed: PostgreSQL already combines them with a BitmapOr, and the proof says
    the rewrite does not pay (the rule is kept honest by the planner, not by hope)."""
    _, db = session
    sql = "SELECT id, email, name FROM events WHERE email = $1 OR name = $2"
    p = proof(db, sql, only_rewrite(db, sql, "or_to_union_all").sql)
    assert not p.kept and p.reason.startswith("dropped: ") and "BitmapOr" in p.removed, p


# -- offset_to_keyset -------------------------------------------------------------------------------
def test_keyset_pages_equal_offset_pages(session):
    conn, db = session
    sql = "SELECT n, id, kind FROM events WHERE kind = $1 ORDER BY n, id LIMIT $2 OFFSET $3"
    r = only_rewrite(db, sql, "offset_to_keyset")
    assert r.sql == "SELECT n, id, kind FROM events WHERE kind = $1 AND (n, id) > ($3, $4) ORDER BY n, id LIMIT $2"
    assert r.changes_code
    page, offset, pages = 700, 0, 0
    first = rows(conn, sql, ("b", page, 0))
    last = first[-1]
    while True:
        offset += page
        a = rows(conn, sql, ("b", page, offset))
        b = rows(conn, r.sql, ("b", page, last[0], last[1]))
        assert a == b, offset
        pages += 1
        if not a:
            break
        last = a[-1]
    assert pages >= 7
    p = proof(db, sql, r.sql, min_gain_pct=0)
    assert p.cost_after < p.cost_before, p


def test_keyset_refused_on_a_non_unique_order(session):
    _, db = session
    assert "not unique" in only_refusal(db, "SELECT n, kind FROM events ORDER BY n LIMIT 10 OFFSET $1",
                                        "offset_to_keyset")


# -- count_to_exists --------------------------------------------------------------------------------
def test_existence_counts_same_rows(session):
    conn, db = session
    sql = "SELECT count(*) > 0 FROM orders WHERE customer_id = $1"
    r = only_rewrite(db, sql, "count_to_exists")
    assert same_results(conn, sql, r.sql, [(1,), (2500,), (None,)]) == 3
    sql = "SELECT id FROM customers c WHERE (SELECT count(*) FROM orders o WHERE o.customer_id = c.id) = 0"
    r = only_rewrite(db, sql, "count_to_exists")
    assert same_results(conn, sql, r.sql, [()]) == 1000
    p = proof(db, sql, r.sql)
    assert p.kept and any("Anti" in n for n in p.added), p


# -- scalar_subquery_to_lateral ---------------------------------------------------------------------
def test_scalar_subquery_as_lateral_same_rows_with_nulls(session):
    conn, db = session
    sql = ("SELECT o.id, (SELECT c.email FROM customers c WHERE c.id = o.ref_customer) FROM orders o"
           " WHERE o.status = $1")
    r = only_rewrite(db, sql, "scalar_subquery_to_lateral")
    assert same_results(conn, sql, r.sql, [("new",), ("paid",), ("none",), (None,)]) > 10000
    assert rows(conn, r.sql.replace("$1", "'new'") + " AND o.ref_customer IS NULL LIMIT 1")[0][1] is None
    p = proof(db, sql, r.sql)
    assert p.kept, p


def test_scalar_subquery_on_a_non_unique_column_is_refused(session):
    _, db = session
    assert "unique key of customers" in only_refusal(
        db, "SELECT o.id, (SELECT c.email FROM customers c WHERE c.name = o.status) FROM orders o",
        "scalar_subquery_to_lateral")


# -- distinct_join_to_exists ------------------------------------------------------------------------
def test_distinct_over_join_as_exists_same_rows(session):
    conn, db = session
    sql = ("SELECT DISTINCT c.id, c.name FROM customers c JOIN orders o ON o.customer_id = c.id"
           " WHERE o.status = $1 AND c.name <> $2")
    r = only_rewrite(db, sql, "distinct_join_to_exists")
    assert same_results(conn, sql, r.sql, [("new", "cust1"), ("paid", "x"), ("none", "x"), (None, "x")]) > 1000
    sql = "SELECT DISTINCT c.id, c.name FROM customers c JOIN orders o ON o.customer_id = c.id WHERE c.id < $1"
    r = only_rewrite(db, sql, "distinct_join_to_exists")
    assert same_results(conn, sql, r.sql, [(100,), (2500,), (0,), (None,)]) == 99 + 2000
    p = proof(db, sql, r.sql)
    assert p.kept and "Hashed Aggregate" in p.removed, p
    assert any("Semi" in n for n in p.added), p


def test_distinct_without_the_key_is_refused_and_would_differ(session):
    conn, db = session
    sql = "SELECT DISTINCT c.name FROM customers c JOIN orders o ON o.customer_id = c.id"
    assert "no NOT NULL unique key of customers" in only_refusal(db, sql, "distinct_join_to_exists")
    exists = "SELECT c.name FROM customers c WHERE EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = c.id)"
    assert len(rows(conn, sql)) < len(rows(conn, exists))


# -- in_list_to_any ---------------------------------------------------------------------------------
def test_in_list_as_any_same_rows(session):
    conn, db = session
    inlist = ", ".join(f"${i}" for i in range(2, 14))
    sql = f"SELECT id FROM events WHERE kind = $1 AND code IN ({inlist}) AND n > $14"
    r = only_rewrite(db, sql, "in_list_to_any")
    assert r.sql == "SELECT id FROM events WHERE kind = $1 AND code = ANY(CAST($2 AS bigint[])) AND n > $3"
    codes = [c for (c,) in rows(conn, "SELECT code FROM events WHERE id % 997 = 0 ORDER BY id LIMIT 12")]
    params = [("a", *codes, -3000), ("b", *codes, 0), ("a", *([None] * 12), 0), ("a", *codes[:11], None, -3000)]
    seen = same_results(conn, sql, r.sql, params, new_params=lambda p: (p[0], list(p[1:13]), p[13]))
    assert seen > 0
    sql = f"SELECT id FROM events WHERE code NOT IN ({inlist}) AND kind = $1"
    r = only_rewrite(db, sql, "in_list_to_any")
    assert "<> ALL" in r.sql
    params = [("c", *codes), ("c", *codes[:11], None)]
    assert same_results(conn, sql, r.sql, params, new_params=lambda p: (p[0], list(p[1:]))) > 1000


def test_short_in_list_is_left_alone(session):
    _, db = session
    assert rewrite("SELECT id FROM events WHERE code IN ($1, $2, $3)", DbCatalog(db), ["in_list_to_any"]) == []


# -- catalog and proof ------------------------------------------------------------------------------
def test_catalog_reads_types_not_null_and_unique_keys(session):
    _, db = session
    cat = DbCatalog(db)
    t = cat.table(None, "events")
    assert t.qualified == "rw.events" and t.unique_keys == (("id",),)
    assert t.columns["score"].not_null is False and t.columns["ts"].typname == "timestamptz"
    assert t.columns["amount"].display == "numeric(10,2)"
    assert cat.table("rw", "nope") is None and cat.table(None, 'x"; DROP TABLE rw.events; --') is None
    assert cat.function(None, "count").aggregate and cat.function(None, "random").volatile
    assert not cat.function(None, "lower").volatile


def test_proof_drops_a_rewrite_that_does_not_pay_and_restores_the_session(session):
    _, db = session
    sql = "SELECT id FROM events WHERE n = $1"
    p = prove_rewrite(db, sql, sql, min_gain_pct=10)
    assert not p.kept and p.gain_pct == 0 and p.reason.startswith("dropped: ")
    assert db.scalar("SELECT current_setting('plan_cache_mode')") == "auto"
    assert db.scalar("SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'pga_rewrite%'") == 0
    bad = prove_rewrite(db, sql, "SELECT id FROM events WHERE nope = $1")
    assert not bad.kept and bad.reason.startswith("unproven: the rewrite cannot be planned")


def test_propose_proves_every_rewrite_of_a_statement(session):
    """One statement, three rules that apply: each rewrite is proven on its own, the best first."""
    _, db = session
    sql = ("SELECT id FROM events WHERE date_trunc('day', ts) = $1 AND code::text = $2"
           " AND coalesce(score, 0) = $3")
    kept, dropped, refused = propose(db, sql, min_gain_pct=10)
    rules = [p.rewrite.rule for p in kept + dropped]
    assert sorted(rules) == ["sargable_cast", "sargable_coalesce", "sargable_date_trunc"]
    assert refused == []
    assert all(p.proof.cost_after < p.proof.cost_before for p in kept)
    gains = [p.proof.gain_pct for p in kept]
    assert gains == sorted(gains, reverse=True) and len(kept) >= 1


# -- every rule on a corpus -------------------------------------------------------------------------
CORPUS = [
    ("SELECT e.id, e.score FROM events e WHERE coalesce(e.score, -1) = $1 AND e.kind = $2",
     [(-1, "a"), (3, "b"), (None, "a"), (-1, None)]),
    ("SELECT c.id, o.id FROM customers c LEFT JOIN orders o ON o.customer_id = c.id"
     " WHERE coalesce(o.ref_customer, 0) = $1", [(0,), (7,), (None,)]),
    ("SELECT id FROM customers c WHERE c.id NOT IN (SELECT o.ref_customer FROM orders o WHERE o.status = $1)",
     [("new",), (None,)]),
    ("SELECT c.id FROM customers c LEFT JOIN orders o ON o.id = c.id"
     " WHERE o.customer_id NOT IN (SELECT customer_id FROM orders WHERE status = 'new')", [()]),
    ("WITH o AS (SELECT ref_customer AS customer_id FROM orders) SELECT id FROM customers"
     " WHERE id NOT IN (SELECT customer_id FROM o)", [()]),
    ("SELECT id FROM events WHERE date_trunc('week', ts) = $1 OR n = 5", [("2018-11-05",), (None,)]),
    ("SELECT id, name FROM events WHERE (score = $1 OR name = $2) AND (kind = 'a' OR kind = 'b')",
     [(1, "name1"), (None, "name2"), (2, None)]),
    ("SELECT id FROM events WHERE score = $1 OR score IS NULL OR kind = $2", [(1, "c"), (None, "c")]),
    ("SELECT (SELECT count(*) FROM orders o WHERE o.customer_id = c.id) > 0, c.id FROM customers c"
     " WHERE c.id < $1", [(2100,), (None,)]),
    ("SELECT c.id, (SELECT min(o.status) FROM orders o WHERE o.customer_id = c.id),"
     " (SELECT c2.email FROM customers c2 WHERE c2.id = c.id + 1) FROM customers c WHERE c.id > $1", [(2900,)]),
    ("SELECT DISTINCT c.* FROM customers c JOIN orders o ON o.customer_id = c.id AND o.status = $1"
     " WHERE c.name = $2", [("new", "cust7"), ("paid", "none")]),
    ("UPDATE customers SET name = name WHERE coalesce(id, 0) + 0 = $1 RETURNING id", [(5,)]),
]


def test_no_rewrite_changes_results_on_a_corpus(session):
    """Every rule on every statement; every rewrite that keeps the parameters runs against the
    original (UPDATEs inside a rolled-back transaction)."""
    conn, db = session
    checked = 0
    for sql, params in CORPUS:
        for o in rewrite(sql, DbCatalog(db)):
            if not isinstance(o, Rewrite) or o.changes_code:
                continue
            with conn.transaction(force_rollback=True):
                same_results(conn, sql, o.sql, params)
            checked += 1
    assert checked >= 8
