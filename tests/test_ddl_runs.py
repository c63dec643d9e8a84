"""Every DDL the audit proposes runs (issue 7, item 6).

A schema built to break DDL generation — a range-partitioned table with a list-sub-partitioned
partition, a materialized view, quoted mixed-case and non-ASCII names, reserved-word columns, a
table and column at the 63-byte limit — gets a workload and an audit; then every recommendation's
migration is applied the way a DBA or a migration tool would (psql -f outside a transaction
block; Prisma's one query string per migration file), checked (index valid, on every partition),
applied again (idempotent), rolled back (gone, nothing left on the partitions) — for real.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import tempfile

import pytest

from conftest import PG_BIN

LONG_TABLE = "a_table_with_a_really_long_name_that_goes_on_and_on_and_on_xyz"  # 63 bytes
LONG_COLUMN = "an_extremely_long_column_name_for_index_name_truncation_tests_x"  # 63 bytes

SCHEMA = f"""
CREATE SCHEMA pga_ddl;
CREATE SCHEMA "Mixed Schéma";
CREATE TABLE pga_ddl.events (
    id bigint NOT NULL, user_id int NOT NULL, kind text NOT NULL, created_at timestamptz NOT NULL,
    "order" int NOT NULL, payload jsonb
) PARTITION BY RANGE (created_at);
CREATE TABLE pga_ddl.events_2024 PARTITION OF pga_ddl.events
    FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE pga_ddl."Events 2025" PARTITION OF pga_ddl.events
    FOR VALUES FROM ('2025-01-01') TO ('2026-01-01') PARTITION BY LIST (kind);
CREATE TABLE "Mixed Schéma".events_2025_click PARTITION OF pga_ddl."Events 2025" FOR VALUES IN ('click');
CREATE TABLE pga_ddl.events_2025_other PARTITION OF pga_ddl."Events 2025" DEFAULT;
INSERT INTO pga_ddl.events
SELECT g, g % 5000, CASE WHEN g % 3 = 0 THEN 'click' ELSE 'view' END,
       timestamptz '2024-01-01' + (g % 700) * interval '1 day', g % 977, NULL
FROM generate_series(1, 120000) g;
CREATE TABLE "Mixed Schéma"."Kundenübersicht" (
    "KundenNr" int NOT NULL, "Straße" text NOT NULL, "select" int NOT NULL, "Email" text NOT NULL,
    "From" date NOT NULL
);
INSERT INTO "Mixed Schéma"."Kundenübersicht"
SELECT g, 'Straße ' || (g % 4000), g % 50, 'Kunde' || g || '@Example.com', date '2020-01-01' + g % 1500
FROM generate_series(1, 60000) g;
CREATE MATERIALIZED VIEW pga_ddl.daily_totals AS
SELECT user_id, date_trunc('day', created_at) AS day, count(*) AS n FROM pga_ddl.events GROUP BY 1, 2;
CREATE TABLE pga_ddl.{LONG_TABLE} ({LONG_COLUMN} int NOT NULL, other int NOT NULL);
INSERT INTO pga_ddl.{LONG_TABLE} SELECT g, g % 10 FROM generate_series(1, 60000) g;
ANALYZE pga_ddl.events, "Mixed Schéma"."Kundenübersicht", pga_ddl.daily_totals, pga_ddl.{LONG_TABLE};
"""

WORKLOAD = [
    ("SELECT * FROM pga_ddl.events WHERE user_id = %s", [(7,), (8,)]),
    ('SELECT id FROM pga_ddl.events WHERE "order" = %s AND kind = \'click\'', [(5,), (6,)]),
    ('SELECT * FROM "Mixed Schéma"."Kundenübersicht" WHERE "KundenNr" = %s', [(11,), (12,)]),
    ('SELECT * FROM "Mixed Schéma"."Kundenübersicht" WHERE lower("Email") = %s', [("kunde5@example.com",)]),
    ('SELECT "KundenNr" FROM "Mixed Schéma"."Kundenübersicht" WHERE "Straße" = %s AND "From" > %s',
     [("Straße 17", dt.date(2021, 1, 1))]),
    ("SELECT * FROM pga_ddl.daily_totals WHERE user_id = %s", [(42,)]),
    ('SELECT "KundenNr" FROM "Mixed Schéma"."Kundenübersicht" WHERE "select" = 3 AND "Email" IS NOT NULL'
     ' ORDER BY "From" DESC LIMIT 20', [()]),
    (f"SELECT other FROM pga_ddl.{LONG_TABLE} WHERE {LONG_COLUMN} = %s", [(99,)]),
    ("SELECT id FROM orders WHERE status = 'pending' ORDER BY created_at LIMIT 50", [()]),
]


def psql(dsn: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([f"{PG_BIN}/psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dsn, *args],
                          capture_output=True, text=True, timeout=300)


def apply_file(dsn: str, content: str) -> None:
    """psql -f, without -1: each statement on its own, as the migration's header says."""
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False, encoding="utf-8") as f:
        f.write(content)
    try:
        proc = psql(dsn, "-f", f.name)
    finally:
        os.unlink(f.name)
    assert proc.returncode == 0, proc.stderr
    assert "truncated" not in proc.stderr, proc.stderr


def apply_prisma(dsn: str, files: list[dict]) -> None:
    """Prisma Migrate sends each migration.sql as one query string, in folder-name order."""
    for f in sorted(files, key=lambda f: f["path"]):
        proc = psql(dsn, "-c", f["content"])
        assert proc.returncode == 0, (f["path"], proc.stderr)


@pytest.fixture
def audited(low_thresholds, dsn):
    db = low_thresholds
    db.sql(SCHEMA)
    try:
        db.sql("SELECT pg_stat_statements_reset()")
        for sql, params in WORKLOAD:
            db.run(sql, params, times=2)
        db.audit()
        yield db
    finally:
        db.sql('DROP SCHEMA pga_ddl, "Mixed Schéma" CASCADE')


def index_state(db, schema: str, name: str) -> dict | None:
    rows = db.dicts(
        "SELECT i.indexrelid::regclass::text AS index, i.indisvalid AS valid, c.relkind::text AS kind,"
        " (SELECT count(*) FROM pg_partition_tree(i.indexrelid) t WHERE t.isleaf) AS leaf_indexes,"
        " (SELECT count(*) FROM pg_partition_tree(i.indrelid) t WHERE t.isleaf) AS leaf_tables,"
        " coalesce((SELECT bool_and(x.indisvalid) FROM pg_partition_tree(i.indexrelid) t"
        "   JOIN pg_index x ON x.indexrelid = t.relid), true) AS all_valid"
        " FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relname = %s", (schema, name))
    return rows[0] if rows else None


def indexes_in_test_schemas(db) -> set[str]:
    return {r[0] for r in db.sql(
        "SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind IN ('i', 'I') AND n.nspname IN ('pga_ddl', 'Mixed Schéma', 'public')")}


def test_every_proposed_ddl_and_rollback_runs(audited, dsn):
    import psycopg

    from pg_architect import index_ddl
    from pg_architect.db import PsycopgDb
    from pg_architect.sidecar import github as github_pr

    db = audited
    recs = db.dicts("SELECT id, schema_name::text AS schema_name, table_name::text AS table_name,"
                    " index_name::text AS index_name, index_kind, ddl, rollback_ddl FROM arch.recommendation"
                    " ORDER BY id")
    tables = {r["table_name"] for r in recs}
    # The workload reaches every kind of relation this test is about.
    assert {"events", "Kundenübersicht", "daily_totals", LONG_TABLE, "orders"} <= tables, tables
    assert "expression" in {r["index_kind"] for r in recs}, recs
    names = [(r["schema_name"], r["index_name"]) for r in recs]
    assert len(set(names)) == len(names)
    baseline = indexes_in_test_schemas(db)
    stamp = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    with psycopg.connect(dsn, autocommit=True) as conn:
        pdb = PsycopgDb(conn)
        for r in recs:
            assert len(r["index_name"].encode()) <= 63
            rec = github_pr.load_recommendation(pdb, r["id"])
            validated = github_pr.validate_ddl(pdb, rec)
            github_pr.validate_rollback(rec, validated)
            partitioned = r["table_name"] == "events"
            assert isinstance(validated, index_ddl.Procedure) is partitioned
            steps = index_ddl.statements(r["ddl"])
            if partitioned:
                assert steps[0].startswith(f"CREATE INDEX IF NOT EXISTS {r['index_name']} ON ONLY pga_ddl.events ")
                assert sum("CONCURRENTLY" in s for s in steps) == 3  # the three leaf partitions
                assert sum("ATTACH PARTITION" in s for s in steps) == 4  # incl. the sub-partitioned one
                assert all(len(n.encode()) <= 63 for _s, n in validated.index_names)
            else:
                assert len(steps) == 1 and "CONCURRENTLY" in steps[0]
            files = {fmt: github_pr.render_files(rec, fmt, "db/migrations", stamp) for fmt in github_pr.FORMATS}
            for _fmt, fl in files.items():
                github_pr.check_files(fl, validated)
            if partitioned:
                assert len(files["prisma"]) == len(steps)
                assert [f["path"] for f in files["prisma"]] == sorted(f["path"] for f in files["prisma"])
            assert files["flyway"][1]["content"].endswith("executeInTransaction=false\n")

            for how in ("sql", "prisma"):
                if how == "sql":
                    apply_file(dsn, files["sql"][0]["content"])
                    apply_file(dsn, files["sql"][0]["content"])  # again: IF NOT EXISTS, attach is a no-op
                else:
                    apply_prisma(dsn, files["prisma"])
                st = index_state(db, r["schema_name"], r["index_name"])
                assert st is not None, f"{how}: {r['ddl']}"
                assert st["valid"] and st["all_valid"], st
                if partitioned:
                    assert st["kind"] == "I" and st["leaf_indexes"] == st["leaf_tables"] == 3, st
                # Now applied, the sidecar refuses to propose it again.
                with pytest.raises(Exception, match="already exists"):
                    github_pr.validate_ddl(pdb, github_pr.load_recommendation(pdb, r["id"]))
                apply_file(dsn, "\n".join(index_ddl.statements(r["rollback_ddl"])) + "\n")
                assert index_state(db, r["schema_name"], r["index_name"]) is None
                assert indexes_in_test_schemas(db) == baseline, r["ddl"]


def test_partitioned_rollback_cleans_up_a_half_applied_procedure(audited, dsn):
    """The procedure stopped after some partitions: the rollback still leaves nothing behind."""
    from pg_architect import index_ddl

    db = audited
    rec = db.dicts("SELECT ddl, rollback_ddl FROM arch.recommendation WHERE table_name = 'events' LIMIT 1")[0]
    baseline = indexes_in_test_schemas(db)
    steps = index_ddl.statements(rec["ddl"])
    apply_file(dsn, "\n".join(steps[:3]) + "\n")  # parent ON ONLY, one partition built and attached, ...
    assert indexes_in_test_schemas(db) != baseline
    apply_file(dsn, "\n".join(index_ddl.statements(rec["rollback_ddl"])) + "\n")
    assert indexes_in_test_schemas(db) == baseline


def test_applied_indexes_are_detected(audited, dsn):
    """Every index applied as proposed is recognised by the next audit: the partitioned
    procedure (the parent's index prints as ON ONLY), quoted mixed-case and non-ASCII names,
    reserved-word columns (hypopg prints them unquoted), the materialized view."""
    db = audited
    recs = db.dicts("SELECT id, index_kind, ddl FROM arch.recommendation"
                    " WHERE schema_name IN ('pga_ddl', 'Mixed Schéma') ORDER BY id")
    assert len(recs) >= 5
    db.audit()  # signs the recommendations
    for rec in recs:
        apply_file(dsn, rec["ddl"] + "\n")
    db.run("SELECT * FROM pga_ddl.events WHERE user_id = %s", [(9,)])
    summary = db.audit()
    assert summary["knowledge"]["applied_detected"] >= len(recs), (
        db.dicts("SELECT id, index_signature FROM arch.recommendation WHERE status <> 'applied'"))
    for rec in recs:
        assert db.value("SELECT status FROM arch.recommendation WHERE id = %s", (rec["id"],)) == "applied", rec


@pytest.mark.parametrize("keys, where, include", [
    (('"From"',), '"select" = 3', ()),
    (('lower("Email")',), '"Straße" IS NOT NULL AND "From" > \'2021-01-01\'::date', ('"KundenNr"',)),
    (('("KundenNr" + "select")', '"Straße" DESC NULLS LAST'), None, ('"select"',)),
])
def test_partial_and_expression_ddl_quotes_correctly(audited, dsn, keys, where, include):
    """Partial, expression and covering indexes on quoted, non-ASCII, reserved-word columns: the
    candidate's DDL and rollback run as written, under a name PostgreSQL keeps as is."""
    from pg_architect import index_ddl
    from pg_architect.advisors.index_candidates import Candidate

    db = audited
    baseline = indexes_in_test_schemas(db)
    for table in ("Kundenübersicht",):
        cand = Candidate(schema="Mixed Schéma", table=table, keys=keys, include=include, where=where,
                         kind="partial" if where else "expression")
        assert len(cand.name().encode()) <= 63
        apply_file(dsn, cand.ddl() + ";\n")
        st = index_state(db, "Mixed Schéma", cand.name())
        assert st is not None and st["valid"]
        # PostgreSQL's own rendering of the index has the same definition.
        defn = db.value("SELECT pg_get_indexdef(%s::regclass)", (st["index"],))
        assert '"Mixed Schéma"."Kundenübersicht"' in defn
        apply_file(dsn, cand.rollback_ddl() + ";\n")
        assert indexes_in_test_schemas(db) == baseline
        assert index_ddl.statements(cand.ddl()) == [cand.ddl()]


def test_foreign_table_partition_refused_by_the_sidecar(audited, dsn):
    """A foreign-table partition cannot have an index, so the parent's ON ONLY index could never
    become valid: once one is attached, the sidecar refuses the recommendation's pull request."""
    import psycopg

    from pg_architect.db import PsycopgDb
    from pg_architect.errors import TaskError
    from pg_architect.sidecar import github as github_pr

    db = audited
    rec_id = db.value("SELECT id FROM arch.recommendation WHERE table_name = 'events' LIMIT 1")
    db.sql("CREATE EXTENSION IF NOT EXISTS file_fdw")
    db.sql("CREATE SERVER pga_files FOREIGN DATA WRAPPER file_fdw")
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            pdb = PsycopgDb(conn)
            github_pr.validate_ddl(pdb, github_pr.load_recommendation(pdb, rec_id))  # fine so far
            db.sql("CREATE FOREIGN TABLE pga_ddl.events_old PARTITION OF pga_ddl.events"
                   " FOR VALUES FROM (MINVALUE) TO ('2024-01-01') SERVER pga_files"
                   " OPTIONS (filename '/dev/null', format 'csv')")
            with pytest.raises(TaskError, match="events_old is a foreign table") as err:
                github_pr.validate_ddl(pdb, github_pr.load_recommendation(pdb, rec_id))
            assert err.value.refused
    finally:
        db.sql("DROP FOREIGN TABLE IF EXISTS pga_ddl.events_old")
        db.sql("DROP SERVER pga_files")
        db.sql("DROP EXTENSION file_fdw")
