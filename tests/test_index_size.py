"""The size of an index before it exists (advisors/index_size.py), against the index built:

    CREATE INDEX ...;  SELECT pg_relation_size(...);   -- versus the estimate the set is chosen by

Shapes: a unique bigint, a low-cardinality integer (deduplicated), a text column, two keys with
an INCLUDE column (no deduplication), a numeric key (never deduplicated), a partial index and an
expression.  hypopg's own estimate is printed beside ours (pytest -s) for the README.
"""

import psycopg
import pytest

from pg_architect.advisors import index_size
from pg_architect.advisors.index_candidates import Candidate
from pg_architect.db import PsycopgDb
from pg_architect.prove import Prover

# The estimate is within this share of the built size on every shape.
TOLERANCE = 0.15

SHAPES = [
    ("unique bigint", Candidate("isz", "t", ("id",))),
    ("200 values of an integer (deduplicated)", Candidate("isz", "t", ("k",))),
    ("text, mostly unique", Candidate("isz", "t", ("email",))),
    ("two keys + INCLUDE", Candidate("isz", "t", ("k", "created_at"), ("amount",), kind="covering")),
    ("numeric key", Candidate("isz", "t", ("amount",))),
    ("partial: 5 % of the rows", Candidate("isz", "t", ("created_at",), where="status = 'pending'",
                                           kind="partial")),
    ("expression lower(email)", Candidate("isz", "t", ("lower(email)",), kind="expression")),
]


@pytest.fixture
def table(db):
    db.sql("CREATE SCHEMA isz")
    db.sql("CREATE TABLE isz.t (id bigint, k integer, email text, created_at timestamptz, amount numeric,"
           " status text)")
    db.sql("INSERT INTO isz.t SELECT i, i % 200, 'user' || i || '@example.com', now() - i * interval '1 minute',"
           " round((i % 9973) * 1.37, 2), CASE WHEN i % 20 = 0 THEN 'pending' ELSE 'done' END"
           " FROM generate_series(1, 200000) i")
    db.sql("ANALYZE isz.t")
    yield db
    db.sql("DROP SCHEMA isz CASCADE")


def test_estimate_is_close_to_the_built_index(table, dsn):
    db = table
    rows = []
    with psycopg.connect(dsn) as conn, conn.transaction():
        pdb = PsycopgDb(conn)
        prover = Prover(pdb)
        try:
            for label, cand in SHAPES:
                est = index_size.estimate(pdb, cand, prover.predicate_rows)
                oid, _ = prover.create_hypothetical(cand.hypo_sql())
                hypo = prover.hypothetical_size(oid)
                prover.drop_hypothetical(oid)
                rows.append((label, cand, est, hypo))
        finally:
            prover.close()
    errors = []
    for label, cand, est, hypo in rows:
        db.sql(f"CREATE INDEX isz_probe {cand.definition()}")
        real = db.value("SELECT pg_relation_size('isz.isz_probe')")
        db.sql("DROP INDEX isz.isz_probe")
        err = est / real - 1
        print(f"{label:42} built {real / 1048576:6.2f} MB  estimate {est / 1048576:6.2f} MB ({err:+.0%})"
              f"  hypopg {hypo / 1048576:6.2f} MB ({hypo / real - 1:+.0%})")
        if abs(err) > TOLERANCE:
            errors.append((label, real, est))
    assert not errors, errors


def test_never_analysed_table_has_no_estimate(db, dsn):
    db.sql("CREATE SCHEMA isz")
    try:
        db.sql("CREATE TABLE isz.fresh (id bigint)")
        with psycopg.connect(dsn) as conn:
            assert index_size.estimate(PsycopgDb(conn), Candidate("isz", "fresh", ("id",))) is None
    finally:
        db.sql("DROP SCHEMA isz CASCADE")


def test_btree_arithmetic():
    """A leaf page is filled to 90 %: 1,000 bigint keys (20 bytes each: an 8-byte header and the
    8-byte value, + a 4-byte line pointer) take 3 leaf pages, plus a root and the metapage."""
    t = index_size.Table(reltuples=1000, columns={})
    key = index_size.Column(width=8, align=8, null_frac=0.0, n_distinct=1000, dedup=True)
    assert index_size.btree_bytes(t, [key], [], 1000) == (1 + 3 + 1) * 8192
    # deduplicated: 10 values of 100 rows are 10 posting lists of 16 + 600 bytes: one leaf page
    key.n_distinct = 10
    assert index_size.btree_bytes(t, [key], [], 1000) == (1 + 1) * 8192
