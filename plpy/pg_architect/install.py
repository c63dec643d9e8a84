"""Install and upgrade pg_architect in a database.

``migrations/`` holds run-once, ordered files (recorded in ``arch.migration`` with their
SHA-256; a recorded file that changed afterwards stops the install).  ``sql/`` holds
idempotent files re-run on every install.  Everything happens in one transaction.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pg_architect

REQUIRED_EXTENSIONS = {
    "plpython3u": "apt-get install postgresql-plpython3-15",
    "vector": "pgvector (not packaged for Debian 12: build it from Debian's source package, see README)",
    "hypopg": "apt-get install postgresql-15-hypopg",
    "pg_stat_statements": "apt-get install postgresql-contrib (and add it to shared_preload_libraries)",
}
ROLES = ("arch_reader", "arch_admin", "arch_approver", "arch_sidecar")
ROLE_COMMENTS = {
    "arch_reader": "pg_architect: reads the arch views (dashboards, Grafana)",
    "arch_admin": "pg_architect: runs audits, changes arch.settings, schedules the weekly audit",
    "arch_approver": "pg_architect: approves and rejects recommendations (arch.approve, arch.reject)",
    "arch_sidecar": "pg_architect: the sidecar process: claims requests and writes their results, nothing else",
}
INSTALL_LOCK = 7237858263748198401


class InstallError(Exception):
    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message if not hint else f"{message}\nHINT: {hint}")
        self.hint = hint


def source_dir() -> Path:
    """Where migrations/ and sql/ are: inside the installed package, or the checkout."""
    here = Path(pg_architect.__file__).resolve().parent
    packaged = here / "_install"
    if (packaged / "migrations").is_dir():
        return packaged
    checkout = here.parent.parent
    if (checkout / "migrations").is_dir():
        return checkout
    raise InstallError(f"cannot find migrations/ and sql/ next to {here}")


def migration_files(src: Path | None = None) -> list[Path]:
    src = src or source_dir()
    return sorted(p for p in (src / "migrations").glob("*.sql"))


def sql_files(src: Path | None = None) -> list[Path]:
    src = src or source_dir()
    return sorted(p for p in (src / "sql").glob("*.sql"))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class InstallReport:
    applied: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    extensions_created: list[str] = field(default_factory=list)
    roles_created: list[str] = field(default_factory=list)
    pg_cron: bool = False
    version: str = pg_architect.__version__
    python_path: str = ""


def default_python_path() -> str:
    """The site-packages directory this very package was imported from."""
    return str(Path(pg_architect.__file__).resolve().parent.parent)


def install(conn, *, upto: str | None = None, python_path: str | None = None, sql: bool = True,
            say: Callable[[str], None] = lambda m: None) -> InstallReport:
    """Install or upgrade in the database of ``conn`` (a psycopg connection, autocommit off)."""
    rep = InstallReport(python_path=python_path or default_python_path())
    if not os.path.isabs(rep.python_path):
        raise InstallError(f"python path must be absolute: {rep.python_path}")
    with conn.transaction():
        cur = conn.cursor()
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (INSTALL_LOCK,))
        cur.execute("SET LOCAL client_min_messages = warning")  # no "does not exist, skipping"
        cur.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        if not cur.fetchone()[0]:
            raise InstallError("pg-architect install must run as a superuser",
                               hint="PL/Python (plpython3u) functions can only be created by a superuser.")
        _check_prerequisites(cur)
        for ext in ("plpython3u", "vector", "hypopg", "pg_stat_statements"):
            cur.execute("SELECT 1 FROM pg_extension WHERE extname = %s", (ext,))
            if cur.fetchone() is None:
                cur.execute(f'CREATE EXTENSION IF NOT EXISTS "{ext}"')
                rep.extensions_created.append(ext)
        rep.pg_cron = _maybe_pg_cron(cur, rep)
        for role in ROLES:
            if _ensure_role(cur, role):
                rep.roles_created.append(role)
        cur.execute("CREATE SCHEMA IF NOT EXISTS arch")
        cur.execute(
            """CREATE TABLE IF NOT EXISTS arch.migration (
                   name       text PRIMARY KEY,
                   sha256     text NOT NULL,
                   version    text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now(),
                   applied_by name NOT NULL DEFAULT current_user)""")
        cur.execute("SELECT name, sha256 FROM arch.migration")
        recorded = dict(cur.fetchall())
        files = migration_files()
        known = {p.name for p in files}
        unknown = sorted(set(recorded) - known)
        if unknown:
            raise InstallError(
                f"this database has migrations this package does not know: {', '.join(unknown)}",
                hint="The database was installed by a newer pg_architect; install that version (or newer).")
        for path in files:
            if upto is not None and path.name[:len(upto)] > upto:
                break
            digest = sha256(path)
            if path.name in recorded:
                if recorded[path.name] != digest:
                    raise InstallError(
                        f"migration {path.name} changed after it was applied to this database",
                        hint="Released migrations must never be edited: restore the file and add a new migration.")
                rep.already.append(path.name)
                continue
            say(f"applying migration {path.name}")
            cur.execute(path.read_text())
            cur.execute("INSERT INTO arch.migration (name, sha256, version) VALUES (%s, %s, %s)",
                        (path.name, digest, pg_architect.__version__))
            rep.applied.append(path.name)
        if sql and upto is None:
            for path in sql_files():
                say(f"loading {path.name}")
                cur.execute(path.read_text())
            cur.execute(
                """INSERT INTO arch.python_env (id, package_path, package_version) VALUES (true, %s, %s)
                   ON CONFLICT (id) DO UPDATE SET package_path = EXCLUDED.package_path,
                       package_version = EXCLUDED.package_version, installed_at = now(),
                       installed_by = current_user""",
                (rep.python_path, pg_architect.__version__))
            _check_embedding_model(cur)
    return rep


def _check_embedding_model(cur) -> None:
    """arch.settings.embedding_model exists and produces vector(384): checked in the server from
    the model's configuration files (nothing is loaded), with a clear error otherwise."""
    import psycopg

    try:
        with cur.connection.transaction():
            cur.execute("SELECT arch._check_embedding_model()")
    except psycopg.Error as exc:
        diag = exc.diag
        detail = f" ({diag.message_detail})" if diag.message_detail else ""
        raise InstallError(f"embedding model check failed: {diag.message_primary or exc}{detail}",
                           hint=diag.message_hint or "Fix arch.settings.embedding_model.") from None


def _check_prerequisites(cur) -> None:
    cur.execute("SELECT name FROM pg_available_extensions WHERE name = ANY(%s)",
                (list(REQUIRED_EXTENSIONS),))
    available = {r[0] for r in cur.fetchall()}
    missing = [n for n in REQUIRED_EXTENSIONS if n not in available]
    if missing:
        raise InstallError(
            "missing PostgreSQL extensions: " + ", ".join(missing),
            hint="; ".join(f"{n}: {REQUIRED_EXTENSIONS[n]}" for n in missing))
    cur.execute("SELECT current_setting('shared_preload_libraries')")
    preload = [s.strip().strip('"') for s in cur.fetchone()[0].split(",")]
    if "pg_stat_statements" not in preload:
        raise InstallError(
            "pg_stat_statements is not in shared_preload_libraries",
            hint="Add shared_preload_libraries = 'pg_stat_statements' (and pg_cron for the weekly audit) "
                 "to postgresql.conf and restart the server.")


def _maybe_pg_cron(cur, rep: InstallReport) -> bool:
    cur.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_cron'")
    if cur.fetchone():
        return True
    cur.execute("SELECT current_setting('shared_preload_libraries'), "
                "current_setting('cron.database_name', true), current_database(), "
                "EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_cron')")
    preload, cron_db, db, available = cur.fetchone()
    if available and "pg_cron" in preload and (cron_db or "postgres") == db:
        cur.execute("CREATE EXTENSION IF NOT EXISTS pg_cron")
        rep.extensions_created.append("pg_cron")
        return True
    return False


def _ensure_role(cur, role: str) -> bool:
    cur.execute("SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls "
                "FROM pg_roles WHERE rolname = %s", (role,))
    row = cur.fetchone()
    if row is None:
        cur.execute(f"CREATE ROLE {role} NOLOGIN")
        cur.execute(f"COMMENT ON ROLE {role} IS '{ROLE_COMMENTS[role]}'")
        return True
    if any(row):
        raise InstallError(
            f"role {role} already exists with dangerous attributes "
            "(SUPERUSER, CREATEROLE, CREATEDB, REPLICATION or BYPASSRLS)",
            hint=f"pg_architect grants its privileges to {role}; drop or ALTER ROLE {role} "
                 "NOSUPERUSER NOCREATEROLE NOCREATEDB NOREPLICATION NOBYPASSRLS first.")
    return False
