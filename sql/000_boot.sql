-- pg_architect: the PL/Python prologue. Re-created on every install (idempotent).
--
-- Every PL/Python function in arch starts with:
--     if "pg_architect" not in __import__("sys").modules: plpy.execute("SELECT arch._boot()")
-- _boot() puts the package directory recorded in arch.python_env on sys.path and checks that the
-- package's version matches the installed SQL. arch.python_env is writable only by its owner (the
-- superuser who ran `pg-architect install`): no role can choose which Python the server imports.

CREATE OR REPLACE FUNCTION arch._boot() RETURNS void
LANGUAGE plpython3u VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $python$
import sys
rows = plpy.execute("SELECT package_path, package_version FROM arch.python_env WHERE id")
if not rows:
    plpy.error("pg_architect is not installed completely: arch.python_env is empty",
               hint="Run `pg-architect install --dsn ...` as a superuser.")
path, version = rows[0]["package_path"], rows[0]["package_version"]
if path not in sys.path:
    sys.path.insert(0, path)
try:
    import pg_architect
except ImportError as exc:
    plpy.error("cannot import the pg_architect Python package", detail="%s (path %s)" % (exc, path),
               hint="Re-run `pg-architect install` from the environment the server should use.")
if pg_architect.__version__ != version:
    plpy.error("pg_architect Python package %s does not match the installed SQL version %s"
               % (pg_architect.__version__, version),
               detail="package loaded from %s" % pg_architect.__file__,
               hint="Run `pg-architect install` with the same version to upgrade the database.")
$python$;
COMMENT ON FUNCTION arch._boot() IS
'Internal: puts the superuser-chosen package path (arch.python_env) on sys.path and checks the package version against the installed SQL.';

CREATE OR REPLACE FUNCTION arch.version() RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT package_version FROM arch.python_env WHERE id $$;
COMMENT ON FUNCTION arch.version() IS
'Version of pg_architect installed in this database.';
