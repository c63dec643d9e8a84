"""Index housekeeping (advisor kind drop_index), as a DBA would run it:

    SELECT arch.snapshot_indexes();                      -- the audit does it; here by hand
    SELECT * FROM arch.advise_index_housekeeping();

Snapshots are planted "15 days ago" by moving the taken_at of a fresh snapshot back: the counters
are real, only the clock is moved.
"""

import time

import psycopg
import pytest

from conftest import can_run
from pg_architect.sqltext import quote_literal

SCHEMA = """
CREATE SCHEMA hk;
CREATE TABLE hk.customer (
    id bigint PRIMARY KEY,
    email text NOT NULL CONSTRAINT customer_email_key UNIQUE,
    region int NOT NULL);
CREATE TABLE hk.booking (
    id bigint PRIMARY KEY,
    customer_id bigint NOT NULL CONSTRAINT booking_customer_fkey REFERENCES hk.customer,
    room int NOT NULL,
    during tstzrange NOT NULL,
    status text NOT NULL,
    note text,
    CONSTRAINT booking_no_overlap EXCLUDE USING gist (during WITH &&));
INSERT INTO hk.customer SELECT g, 'c' || g || '@example.com', g % 10 FROM generate_series(1, 2000) g;
INSERT INTO hk.booking
SELECT g, 1 + g % 2000, g % 50, tstzrange(timestamptz '2026-01-01' + g * interval '1 hour',
                                         timestamptz '2026-01-01' + (g + 1) * interval '1 hour'),
       (ARRAY['pending', 'paid', 'cancelled'])[1 + g % 3], NULL
FROM generate_series(1, 5000) g;
CREATE INDEX booking_customer_idx ON hk.booking (customer_id);          -- the only FK cover
CREATE INDEX booking_status_idx ON hk.booking (status);
CREATE INDEX booking_room_status_idx ON hk.booking (room, status);
CREATE INDEX booking_note_idx ON hk.booking (note);                     -- planted unused
CREATE INDEX customer_region_idx ON hk.customer (region);               -- used in the window
CREATE UNIQUE INDEX customer_email_copy ON hk.customer (email);         -- duplicate of the constraint's
ANALYZE hk.customer, hk.booking;
"""


@pytest.fixture
def hk(db):
    db.sql("DROP SCHEMA IF EXISTS hk CASCADE")
    db.sql(SCHEMA)
    flush(db)
    wait_for(db, "SELECT n_tup_ins >= 5000 FROM pg_stat_user_tables WHERE relid = 'hk.booking'::regclass")
    yield db
    db.sql("DROP SCHEMA IF EXISTS hk CASCADE")


def flush(db):
    """Make this session's pending statistics visible to others (PostgreSQL 15 flushes at most once a second)."""
    db.sql("SELECT pg_stat_force_next_flush()")
    db.sql("SELECT 1")


def wait_for(db, query, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        db.sql("SELECT pg_stat_clear_snapshot()")
        if db.value(query):
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for: {query}")


def plant_snapshot(db, age="15 days"):
    """A real snapshot whose clock is moved back: 'taken `age` ago with today's counters'."""
    n = db.value("SELECT arch.snapshot_indexes()")
    assert n > 0
    db.sql("UPDATE arch.snapshot_index SET taken_at = taken_at - %s::interval WHERE taken_at = now()"
           " OR taken_at > now() - interval '1 minute'", (age,))


def scan(db, query, index):
    """Run ``query`` with an index scan on ``index`` (checked with EXPLAIN) and wait until it is counted."""
    before = db.value("SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelid = %s::regclass", (index,))
    db.sql("SET enable_seqscan = off")
    db.sql("SET enable_bitmapscan = off")
    try:
        plan = "\n".join(r[0] for r in db.sql("EXPLAIN " + query))
        assert f"Index Scan using {index.split('.')[1]} " in plan or f"Index Only Scan using {index.split('.')[1]} " in plan, plan
        db.sql(query)
    finally:
        db.sql("RESET enable_seqscan")
        db.sql("RESET enable_bitmapscan")
    flush(db)
    wait_for(db, f"SELECT idx_scan > {int(before)} FROM pg_stat_user_indexes"
                f" WHERE indexrelid = {quote_literal(index)}::regclass")


def plant_history(db, age="15 days"):
    """A DBA's two weeks: the snapshot of `age` ago; since then the application used the status and
    (room, status) indexes, never booking_note_idx; and yesterday someone created a duplicate of the
    status index and an index on room alone (no old snapshot: they are judged on structure only)."""
    plant_snapshot(db, age)
    scan(db, "SELECT id FROM hk.booking WHERE status = 'paid'", "hk.booking_status_idx")
    scan(db, "SELECT id FROM hk.booking WHERE room = 3 AND status = 'paid'", "hk.booking_room_status_idx")
    db.sql("CREATE INDEX booking_status_idx1 ON hk.booking (status)")   # planted duplicate
    db.sql("CREATE INDEX booking_room_idx ON hk.booking (room)")        # planted prefix-redundant


def advice(db, schema="hk"):
    rows = db.dicts("SELECT * FROM arch.advise_index_housekeeping()")
    return {r["index_name"]: r for r in rows if r["table_name"].startswith(schema + ".")}


def test_planted_duplicate_prefix_and_unused_are_found(hk):
    plant_history(hk)
    got = advice(hk)

    dup = got["hk.booking_status_idx1"]
    assert dup["reason"] == "duplicate"
    assert dup["covering_index"] == "hk.booking_status_idx"
    assert dup["ddl"] == "DROP INDEX CONCURRENTLY IF EXISTS hk.booking_status_idx1;"
    assert dup["rollback"] == ("CREATE INDEX CONCURRENTLY IF NOT EXISTS booking_status_idx1"
                               " ON hk.booking USING btree (status);")
    assert "exact duplicate of hk.booking_status_idx" in dup["rationale"]
    assert "numbered copy" in dup["rationale"]
    assert dup["size_bytes"] > 0

    pre = got["hk.booking_room_idx"]
    assert pre["reason"] == "prefix_redundant"
    assert pre["covering_index"] == "hk.booking_room_status_idx"
    assert "leading key columns of hk.booking_room_status_idx" in pre["rationale"]

    unused = got["hk.booking_note_idx"]
    assert unused["reason"] == "unused"
    assert unused["scans"] == 0
    assert unused["covering_index"] is None
    assert "never scanned in the window" in unused["rationale"]
    assert "hot standbys" in unused["rationale"]

    # The unique copy of a unique constraint's index is a duplicate; the constraint's index stays.
    copy = got["hk.customer_email_copy"]
    assert copy["reason"] == "duplicate" and copy["covering_index"] == "hk.customer_email_key"
    assert "backs unique constraint customer_email_key" in copy["rationale"]


def test_constraint_indexes_and_the_fk_cover_are_never_proposed(hk):
    """All of them look unused (planted snapshot), none is proposed; the FK cover is named in a NOTICE."""
    plant_history(hk)
    hk.notices.clear()
    got = advice(hk)
    assert got["hk.customer_region_idx"]["reason"] == "unused"  # as unused as the ones below
    for name in ("hk.customer_pkey", "hk.booking_pkey", "hk.customer_email_key", "hk.booking_no_overlap",
                 "hk.booking_customer_idx", "hk.booking_status_idx", "hk.booking_room_status_idx"):
        assert name not in got, got.get(name)
    assert any("hk.booking_customer_idx would be dropped as unused but is kept" in n
               and "foreign key booking_customer_fkey" in n for n in hk.notices), hk.notices


def test_fk_cover_is_kept_but_its_wider_twin_makes_it_redundant(hk):
    """With a wider index on (customer_id, room) the single-column one is prefix-redundant and the FK stays covered."""
    hk.sql("CREATE INDEX booking_customer_room_idx ON hk.booking (customer_id, room)")
    got = advice(hk)
    row = got["hk.booking_customer_idx"]
    assert row["reason"] == "prefix_redundant"
    assert row["covering_index"] == "hk.booking_customer_room_idx"
    assert "booking_customer_fkey stays covered by hk.booking_customer_room_idx" in row["rationale"]
    assert "hk.booking_customer_room_idx" not in got


def test_index_used_in_the_window_is_not_unused(hk):
    plant_snapshot(hk)
    assert advice(hk)["hk.customer_region_idx"]["reason"] == "unused"
    scan(hk, "SELECT id FROM hk.customer WHERE region = 3", "hk.customer_region_idx")
    got = advice(hk)
    assert "hk.customer_region_idx" not in got
    assert got["hk.booking_note_idx"]["reason"] == "unused"  # the same snapshots, nothing scanned it


def test_snapshots_younger_than_the_window_are_not_evidence(hk):
    plant_snapshot(hk, "13 days")
    hk.notices.clear()
    got = advice(hk)
    assert "hk.booking_note_idx" not in got
    assert any("not enough evidence" in n and "no snapshot old enough" in n for n in hk.notices), hk.notices
    hk.sql("UPDATE arch.settings SET unused_index_window = '12 days'")
    assert advice(hk)["hk.booking_note_idx"]["reason"] == "unused"


def test_stats_reset_inside_the_window_prevents_unused(hk):
    plant_history(hk)
    assert advice(hk)["hk.booking_note_idx"]["reason"] == "unused"
    # Resetting one index's counters moves pg_stat_database.stats_reset (PostgreSQL 15).
    hk.sql("SELECT pg_stat_reset_single_table_counters('hk.booking_note_idx'::regclass)")
    wait_for(hk, "SELECT stats_reset > now() - interval '1 minute' FROM pg_stat_database"
                 " WHERE datname = current_database()")
    hk.notices.clear()
    got = advice(hk)
    assert "hk.booking_note_idx" not in got
    assert any("the statistics were reset inside the window" in n for n in hk.notices), hk.notices
    # The structural reasons need no window.
    assert got["hk.booking_status_idx1"]["reason"] == "duplicate"


def test_write_cost_saved_counts_inserts_and_non_hot_updates(hk):
    plant_snapshot(hk, "10 days")
    hk.sql("UPDATE arch.settings SET unused_index_window = '7 days'")
    hk.sql("INSERT INTO hk.booking SELECT g, 1, 1, tstzrange(timestamptz '2030-01-01' + g * interval '1 hour',"
           " timestamptz '2030-01-01' + (g + 1) * interval '1 hour'), 'pending', NULL"
           " FROM generate_series(100001, 101000) g")
    flush(hk)
    wait_for(hk, "SELECT n_tup_ins >= 6000 FROM pg_stat_user_tables WHERE relid = 'hk.booking'::regclass")
    row = advice(hk)["hk.booking_note_idx"]
    # 1,000 rows written over the 10 days since the planted snapshot.
    assert row["writes_saved_per_day"] == pytest.approx(100.0, rel=0.02)
    assert "index entries written per day" in row["rationale"]


def test_ddl_and_rollback_run_for_real(hk):
    plant_history(hk)
    got = advice(hk)
    assert {r["reason"] for r in got.values()} == {"unused", "duplicate", "prefix_redundant"}
    for name, row in got.items():
        indexdef = hk.value("SELECT pg_get_indexdef(%s::regclass)", (name,))
        hk.sql(row["ddl"])
        assert hk.value("SELECT to_regclass(%s)", (name,)) is None
        hk.sql(row["ddl"])  # IF EXISTS: running it twice is harmless
        hk.sql(row["rollback"])
        assert hk.value("SELECT pg_get_indexdef(%s::regclass)", (name,)) == indexdef
        assert hk.value("SELECT indisvalid FROM pg_index WHERE indexrelid = %s::regclass", (name,))


def test_partitioned_index_drop_is_not_concurrent_and_rollback_rebuilds_partitions(hk):
    hk.sql("""
        CREATE TABLE hk.event (id bigint, kind text, at date) PARTITION BY RANGE (at);
        CREATE TABLE hk.event_2025 PARTITION OF hk.event FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
        CREATE TABLE hk.event_2026 PARTITION OF hk.event FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')
            PARTITION BY LIST (kind);
        CREATE TABLE hk.event_2026_click PARTITION OF hk.event_2026 FOR VALUES IN ('click');
        CREATE TABLE hk.event_2026_other PARTITION OF hk.event_2026 DEFAULT;
        INSERT INTO hk.event SELECT g, CASE WHEN g % 2 = 0 THEN 'click' ELSE 'view' END,
            date '2025-06-01' + g % 400 FROM generate_series(1, 2000) g;
        CREATE INDEX event_kind_idx ON hk.event (kind);
        CREATE INDEX event_kind_idx1 ON hk.event (kind);""")
    row = advice(hk)["hk.event_kind_idx1"]
    assert row["reason"] == "duplicate" and row["covering_index"] == "hk.event_kind_idx"
    assert row["ddl"] == "DROP INDEX IF EXISTS hk.event_kind_idx1;"
    assert "ACCESS EXCLUSIVE" in row["rationale"]
    lines = row["rollback"].splitlines()
    assert lines[0] == "CREATE INDEX IF NOT EXISTS event_kind_idx1 ON ONLY hk.event USING btree (kind);"
    assert sum("CONCURRENTLY" in line for line in lines) == 3  # one per leaf partition
    before = hk.sql("SELECT c.relname, pg_get_indexdef(c.oid) FROM pg_partition_tree('hk.event_kind_idx1') t"
                    " JOIN pg_class c ON c.oid = t.relid ORDER BY 1")
    hk.sql(row["ddl"])
    assert hk.value("SELECT count(*) FROM pg_class WHERE relname LIKE 'event%%kind_idx1'") == 0
    for statement in lines:
        hk.sql(statement)
    after = hk.sql("SELECT c.relname, pg_get_indexdef(c.oid) FROM pg_partition_tree('hk.event_kind_idx1') t"
                   " JOIN pg_class c ON c.oid = t.relid ORDER BY 1")
    assert after == before
    assert hk.value("SELECT indisvalid FROM pg_index WHERE indexrelid = 'hk.event_kind_idx1'::regclass")


def test_snapshots_are_pruned_but_the_window_baseline_is_kept(hk):
    plant_snapshot(hk, "200 days")
    plant_snapshot(hk, "100 days")
    plant_snapshot(hk, "15 days")
    hk.value("SELECT arch.snapshot_indexes()")
    ages = [r[0] for r in hk.sql("SELECT DISTINCT date_part('day', now() - taken_at)::int"
                                 " FROM arch.snapshot_index ORDER BY 1")]
    # 200 and 100 days are beyond snapshot_retention (90 days); 15 days spans the window: kept.
    assert ages == [0, 15]


def test_an_admin_runs_it_and_a_reader_cannot(hk, dsn):
    with psycopg.connect(dsn, autocommit=True) as su:
        su.execute("CREATE ROLE pga_hk_dba LOGIN IN ROLE arch_admin")
        su.execute("CREATE ROLE pga_hk_reader LOGIN IN ROLE arch_reader")
    try:
        assert can_run(dsn, "pga_hk_dba", "SELECT arch.snapshot_indexes()")
        assert can_run(dsn, "pga_hk_dba", "SELECT * FROM arch.advise_index_housekeeping()")
        assert not can_run(dsn, "pga_hk_reader", "SELECT * FROM arch.advise_index_housekeeping()")
        assert not can_run(dsn, "pga_hk_reader", "SELECT arch.snapshot_indexes()")
    finally:
        with psycopg.connect(dsn, autocommit=True) as su:
            for r in ("pga_hk_dba", "pga_hk_reader"):
                su.execute(f"DROP OWNED BY {r}")
                su.execute(f"DROP ROLE {r}")


def test_near_duplicates_are_not_redundant(hk):
    """Another operator class, collation, ordering, predicate or a missing INCLUDE column: not the same index."""
    hk.sql("""
        CREATE INDEX customer_email_pattern_idx ON hk.customer (email text_pattern_ops);
        CREATE INDEX customer_email_c_idx ON hk.customer (email COLLATE "C");
        CREATE INDEX customer_region_desc_idx ON hk.customer (region DESC);
        CREATE INDEX customer_region_part_idx ON hk.customer (region) WHERE region > 5;
        CREATE INDEX booking_room_note_idx ON hk.booking (room) INCLUDE (note);
        CREATE INDEX booking_room_status_note_idx ON hk.booking (room, status) INCLUDE (note);
        CREATE INDEX booking_room_inc_idx ON hk.booking (room) INCLUDE (customer_id);""")
    got = advice(hk)
    for name in ("hk.customer_email_pattern_idx", "hk.customer_email_c_idx", "hk.customer_region_desc_idx",
                 "hk.customer_region_part_idx", "hk.customer_region_idx", "hk.booking_room_inc_idx",
                 "hk.booking_room_status_note_idx"):
        assert name not in got, got.get(name)
    # (room) INCLUDE (note) is served by (room, status) INCLUDE (note), the widest cover.
    row = got["hk.booking_room_note_idx"]
    assert row["reason"] == "prefix_redundant"
    assert row["covering_index"] == "hk.booking_room_status_note_idx"
    # booking_room_status_idx is itself a prefix of (room, status) INCLUDE (note).
    assert got["hk.booking_room_status_idx"]["covering_index"] == "hk.booking_room_status_note_idx"


def test_rollback_keeps_the_tablespace(hk, tmp_path):
    location = tmp_path / "ts"
    location.mkdir()
    hk.sql(f"CREATE TABLESPACE hk_ts LOCATION '{location}'")
    try:
        hk.sql("CREATE INDEX booking_paid_idx ON hk.booking (room) TABLESPACE hk_ts WHERE status = 'paid'")
        hk.sql("CREATE INDEX booking_paid_idx1 ON hk.booking (room) TABLESPACE hk_ts WHERE status = 'paid'")
        row = advice(hk)["hk.booking_paid_idx1"]
        assert row["reason"] == "duplicate"
        assert row["rollback"] == ("CREATE INDEX CONCURRENTLY IF NOT EXISTS booking_paid_idx1 ON hk.booking"
                                   " USING btree (room) TABLESPACE hk_ts WHERE (status = 'paid'::text);")
        hk.sql(row["ddl"])
        hk.sql(row["rollback"])
        assert hk.value("SELECT t.spcname FROM pg_class c JOIN pg_tablespace t ON t.oid = c.reltablespace"
                        " WHERE c.oid = 'hk.booking_paid_idx1'::regclass") == "hk_ts"
    finally:
        hk.sql("DROP INDEX IF EXISTS hk.booking_paid_idx, hk.booking_paid_idx1")
        hk.sql("DROP TABLESPACE IF EXISTS hk_ts")
