"""Install, re-install and upgrade: the catalog always ends the same."""

import psycopg
import pytest

import pg_architect
from conftest import create_database, drop_database, pg_dump_schema
from pg_architect import install as inst


def test_reinstall_is_a_noop(dsn):
    before = pg_dump_schema(dsn)
    with psycopg.connect(dsn) as conn:
        rep = inst.install(conn)
    assert rep.applied == []
    assert rep.already == [p.name for p in inst.migration_files()]
    assert pg_dump_schema(dsn) == before


@pytest.mark.parametrize("stopped_after", [p.name[:4] for p in inst.migration_files()[:-1]])
def test_upgrade_from_older_version_matches_fresh_install(pg_server, stopped_after):
    """A database that stopped at an earlier migration upgrades to the same catalog as a fresh one."""
    old = create_database(pg_server, "pga_upgrade_old")
    fresh = create_database(pg_server, "pga_upgrade_fresh")
    try:
        files = [p.name for p in inst.migration_files()]
        done = [f for f in files if f[:4] <= stopped_after]
        with psycopg.connect(old) as conn:
            rep = inst.install(conn, upto=stopped_after)
        assert rep.applied == done
        with psycopg.connect(old) as conn:
            rep = inst.install(conn)
        assert rep.applied == files[len(done):]
        with psycopg.connect(fresh) as conn:
            inst.install(conn)
        assert pg_dump_schema(old) == pg_dump_schema(fresh)
    finally:
        drop_database(pg_server, "pga_upgrade_old")
        drop_database(pg_server, "pga_upgrade_fresh")


def test_changed_migration_is_refused(dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        name = inst.migration_files()[0].name
        real = conn.execute("SELECT sha256 FROM arch.migration WHERE name = %s", (name,)).fetchone()[0]
        conn.execute("UPDATE arch.migration SET sha256 = 'edited' WHERE name = %s", (name,))
        try:
            with pytest.raises(inst.InstallError, match=f"migration {name} changed"):
                inst.install(conn)
        finally:
            conn.execute("UPDATE arch.migration SET sha256 = %s WHERE name = %s", (real, name))


def test_migration_unknown_to_this_package_is_refused(dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO arch.migration (name, sha256, version) VALUES ('9999_future.sql', 'x', '9.9')")
        try:
            with pytest.raises(inst.InstallError, match="newer pg_architect"):
                inst.install(conn)
        finally:
            conn.execute("DELETE FROM arch.migration WHERE name = '9999_future.sql'")


def test_missing_prerequisite_is_named(dsn, monkeypatch):
    monkeypatch.setitem(inst.REQUIRED_EXTENSIONS, "no_such_ext", "apt-get install no-such-ext")
    with psycopg.connect(dsn) as conn, pytest.raises(inst.InstallError) as err:
        inst.install(conn)
    assert "missing PostgreSQL extensions: no_such_ext" in str(err.value)
    assert "apt-get install no-such-ext" in str(err.value)


def test_install_requires_superuser(dsn):
    with psycopg.connect(dsn, autocommit=True) as su:
        su.execute("CREATE ROLE pga_plain LOGIN")
    try:
        with psycopg.connect(dsn + " user=pga_plain") as conn:
            with pytest.raises(inst.InstallError, match="superuser"):
                inst.install(conn)
    finally:
        with psycopg.connect(dsn, autocommit=True) as su:
            su.execute("DROP ROLE pga_plain")


def test_package_version_mismatch_is_reported(dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("UPDATE arch.python_env SET package_version = '0.0.0-old'")
        try:
            with psycopg.connect(dsn, autocommit=True) as fresh_backend:
                with pytest.raises(psycopg.Error) as err:
                    fresh_backend.execute("SELECT arch.run_audit()")
            assert f"Python package {pg_architect.__version__} does not match the installed SQL version 0.0.0-old" \
                in str(err.value)
            assert "pg-architect install" in err.value.diag.message_hint
        finally:
            conn.execute("UPDATE arch.python_env SET package_version = %s", (pg_architect.__version__,))


def test_version_and_settings_overview(db):
    assert db.value("SELECT arch.version()") == pg_architect.__version__
    rows = {r["name"]: r for r in db.dicts("SELECT * FROM arch.settings_overview")}
    assert rows["min_mean_time_ms"]["value"] == "500"
    assert rows["min_calls"]["value"] == "100"
    assert rows["confidence_threshold"]["value"] == "0.8"
    assert rows["min_gain_pct"]["default_value"] == "10"
    assert all(r["description"] for r in rows.values())


def test_settings_constraints_are_named(db):
    with pytest.raises(psycopg.errors.CheckViolation, match="settings_confidence_threshold"):
        db.sql("UPDATE arch.settings SET confidence_threshold = 1.5")
    with pytest.raises(psycopg.errors.CheckViolation, match="settings_min_calls"):
        db.sql("UPDATE arch.settings SET min_calls = -1")
    with pytest.raises(psycopg.errors.UniqueViolation):
        db.sql("INSERT INTO arch.settings (id) VALUES (true)")
