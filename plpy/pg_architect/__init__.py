"""pg_architect: an AI database architect that lives inside PostgreSQL.

This package is imported by the PL/Python functions in the ``arch`` schema and by
the ``pg-architect`` command-line tool.  The SQL side checks that the version
below matches the version recorded at install time.
"""

__version__ = "0.1.0"

# libpg_query (pglast's parser) carries PostgreSQL's own symbol names: inside a PostgreSQL backend
# it must be loaded with RTLD_DEEPBIND before anything imports pglast, or its calls bind to the
# server's functions and the backend crashes.  Importing pgparse here, first, makes the import
# order of every other module irrelevant.
from . import pgparse  # noqa: F401
