"""Catalog invariants and privileges: what \\df+ arch.* and \\dp arch.* show a DBA."""

import psycopg
import pytest

from conftest import can_run

# Functions allowed without a pinned search_path, and why.
UNPINNED = {
    "analyze_query": "must resolve the caller's unqualified table names with the caller's search_path",
    "run_audit_batched": "a procedure that COMMITs cannot have SET clauses: it sets search_path = pg_catalog, "
                         "pg_temp itself in each batch's transaction",
}


def test_every_function_pins_search_path(db):
    rows = db.dicts("""
        SELECT p.proname, p.proconfig FROM pg_proc p
        WHERE p.pronamespace = 'arch'::regnamespace""")
    assert rows
    for r in rows:
        if r["proname"] in UNPINNED:
            continue
        assert r["proconfig"] and "search_path=pg_catalog, pg_temp" in r["proconfig"], r["proname"]


def test_every_object_has_a_comment(db):
    missing = db.sql("""
        SELECT 'table ' || c.relname FROM pg_class c
        WHERE c.relnamespace = 'arch'::regnamespace AND c.relkind IN ('r', 'v')
          AND obj_description(c.oid, 'pg_class') IS NULL
        UNION ALL
        SELECT 'function ' || p.proname FROM pg_proc p
        WHERE p.pronamespace = 'arch'::regnamespace AND obj_description(p.oid, 'pg_proc') IS NULL""")
    assert missing == []


def test_no_function_is_executable_by_public_except_version(db):
    rows = db.sql("""
        SELECT p.proname FROM pg_proc p
        WHERE p.pronamespace = 'arch'::regnamespace
          AND has_function_privilege('public', p.oid, 'EXECUTE')""")
    assert sorted(r[0] for r in rows) == ["version"]


@pytest.fixture
def roles(dsn):
    with psycopg.connect(dsn, autocommit=True) as su:
        su.execute("CREATE ROLE pga_plain LOGIN")
        su.execute("CREATE ROLE pga_dba LOGIN IN ROLE arch_admin")
        su.execute("CREATE ROLE pga_grafana LOGIN IN ROLE arch_reader")
    yield
    with psycopg.connect(dsn, autocommit=True) as su:
        for r in ("pga_plain", "pga_dba", "pga_grafana"):
            su.execute(f"DROP OWNED BY {r}")
            su.execute(f"DROP ROLE {r}")



def test_privilege_matrix(db, dsn, roles):
    checks = {
        "update settings": "UPDATE arch.settings SET min_calls = 5",
        "change python path": "UPDATE arch.python_env SET package_path = '/tmp/evil'",
        "run audit": "SELECT arch.run_audit()",
        "read pending": "SELECT * FROM arch.pending_recommendations",
        "read settings": "SELECT * FROM arch.settings_overview",
        "schedule": "SELECT arch.schedule()",
    }
    expected = {
        "pga_plain": {"update settings": False, "change python path": False, "run audit": False,
                      "read pending": False, "read settings": False, "schedule": False},
        "pga_grafana": {"update settings": False, "change python path": False, "run audit": False,
                        "read pending": True, "read settings": True, "schedule": False},
        "pga_dba": {"update settings": True, "change python path": False, "run audit": True,
                    "read pending": True, "read settings": True, "schedule": True},
    }
    got = {role: {name: can_run(dsn, role, sql) for name, sql in checks.items()} for role in expected}
    assert got == expected


def test_no_setting_can_redirect_python_imports(db, dsn, roles):
    """The package path comes only from arch.python_env: a plain role has no knob to change it."""
    with psycopg.connect(f"{dsn} user=pga_plain", autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("UPDATE arch.python_env SET package_path = '/tmp'")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT arch._boot()")
    assert db.value("SELECT count(*) FROM pg_settings WHERE name LIKE 'arch.%' OR name LIKE 'pg_architect.%'") == 0


def test_existing_dangerous_role_is_refused(dsn):
    from pg_architect import install as inst

    with psycopg.connect(dsn, autocommit=True) as su:
        su.execute("ALTER ROLE arch_reader CREATEROLE")
        try:
            with pytest.raises(inst.InstallError, match="arch_reader already exists with dangerous attributes"):
                inst.install(su)
        finally:
            su.execute("ALTER ROLE arch_reader NOCREATEROLE")


def test_every_view_a_reader_may_read_works_for_a_reader(db):
    """Grafana connects as a member of arch_reader: each view granted to it must run for it."""
    views = [r[0] for r in db.sql("""
        SELECT format('arch.%I', c.relname) FROM pg_class c
        WHERE c.relnamespace = 'arch'::regnamespace AND c.relkind = 'v'
          AND has_table_privilege('arch_reader', c.oid, 'SELECT') ORDER BY 1""")]
    assert "arch.pending_recommendations" in views and "arch.sidecars" in views
    for view in views:
        with db.conn.transaction(force_rollback=True):
            db.sql("SET LOCAL ROLE arch_reader")
            db.sql(f"SELECT * FROM {view} LIMIT 1")
