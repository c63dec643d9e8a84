"""pg_architect: an AI database architect that lives inside PostgreSQL.

This package is imported by the PL/Python functions in the ``arch`` schema and by
the ``pg-architect`` command-line tool.  The SQL side checks that the version
below matches the version recorded at install time.
"""

__version__ = "0.1.0"
