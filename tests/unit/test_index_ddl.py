"""The partitioned-table procedure: shape, names and rollback (no database; the real runs are
in tests/test_ddl_runs.py)."""

from pg_architect import index_ddl
from pg_architect.index_ddl import Partition

TREE = [Partition("public", "events_2024", False),
        Partition("Archiv Ä", "Events 2025", True, [Partition("public", "events_2025_click", False),
                                                   Partition("public", "x" * 63, False)])]


def test_procedure_is_on_only_concurrently_attach_recursively():
    proc = index_ddl.procedure("public", "events", "events_user_id_idx", "ON public.events USING btree (user_id)", TREE)
    assert proc.ddl[0] == "CREATE INDEX IF NOT EXISTS events_user_id_idx ON ONLY public.events USING btree (user_id);"
    kinds = [("ONLY" if " ON ONLY " in s else "CONC" if "CONCURRENTLY" in s else "ATTACH") for s in proc.ddl]
    assert kinds == ["ONLY", "CONC", "ATTACH", "ONLY", "CONC", "ATTACH", "CONC", "ATTACH", "ATTACH"]
    # The sub-partitioned partition's index is attached to the parent's after its own partitions.
    mid = proc.index_names[2]
    assert mid[0] == "Archiv Ä" and proc.ddl[-1] == (
        f'ALTER INDEX public.events_user_id_idx ATTACH PARTITION "Archiv Ä".{mid[1]};')
    assert '"Archiv Ä"."Events 2025"' in proc.ddl[3]


def test_names_are_at_most_63_bytes_unique_and_stable():
    proc = index_ddl.procedure("public", "events", "events_user_id_idx", "ON public.events USING btree (user_id)", TREE)
    names = [n for _s, n in proc.index_names]
    assert len(set(names)) == len(names) == 5
    assert all(len(n.encode()) <= 63 for n in names)
    again = index_ddl.procedure("public", "events", "events_user_id_idx", "ON public.events USING btree (user_id)", TREE)
    assert again == proc
    other = index_ddl.procedure("public", "events", "events_kind_idx", "ON public.events USING btree (kind)", TREE)
    assert not set(names[1:]) & {n for _s, n in other.index_names}


def test_rollback_drops_the_parent_first_then_leftovers():
    proc = index_ddl.procedure("public", "events", "e_idx", "ON public.events USING btree (user_id)", TREE)
    assert proc.rollback[0] == "DROP INDEX IF EXISTS public.e_idx;"
    assert [("CONCURRENTLY" in s) for s in proc.rollback] == [False, True, False, True, True]


def test_statements_ignores_comments_and_blank_lines():
    assert index_ddl.statements("-- header\n\nCREATE INDEX a ON ONLY t (x);\n  ALTER INDEX a ATTACH PARTITION b;\n") == [
        "CREATE INDEX a ON ONLY t (x);", "ALTER INDEX a ATTACH PARTITION b;"]
