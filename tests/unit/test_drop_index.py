"""drop_index: the rules on index descriptions, and the pull request section (no database needed)."""

from pg_architect.advisors.drop_index import Advice, Index, _covers, _keep_order


def idx(oid, keys, include=(), predicate=None, unique=False, am="btree", name=None, protected=None):
    return Index(oid=oid, table_oid=1, name=name or f"s.i{oid}", table="s.t", am=am, unique=unique,
                 nulls_not_distinct=False, valid=True, nkey=len(keys),
                 keys=[(k, "1978", "0", 0) for k in keys], include=list(include),
                 attnums=list(range(1, len(keys) + 1)), predicate=predicate, indexdef="", tablespace=None,
                 partitioned=False, protected=protected)


def test_prefix_cover_needs_the_same_predicate_and_the_include_columns():
    a, ab = idx(1, ["a"]), idx(2, ["a", "b"])
    assert _covers(ab, a) and not _covers(a, ab)
    assert not _covers(idx(3, ["a", "b"], predicate="(a > 0)"), a)
    assert not _covers(ab, idx(4, ["a"], include=["c"]))
    assert _covers(idx(5, ["a", "b"], include=["c"]), idx(4, ["a"], include=["c"]))
    assert _covers(idx(6, ["a"], include=["b"]), a)          # same key, wider INCLUDE
    assert not _covers(idx(7, ["a"]), a)                     # equal: a duplicate, not a prefix
    assert not _covers(idx(8, ["a", "b"], am="hash"), a)


def test_the_kept_duplicate_is_the_constraint_then_unique_then_not_a_numbered_copy_then_older():
    plain, copy = idx(10, ["a"], name="s.t_a_idx"), idx(5, ["a"], name="s.t_a_idx1")
    assert sorted([copy, plain], key=_keep_order)[0] is plain
    uniq = idx(20, ["a"], unique=True, name="s.t_a_idx2")
    assert sorted([copy, plain, uniq], key=_keep_order)[0] is uniq
    pk = idx(30, ["a"], unique=True, name="s.t_pkey", protected="it backs primary key t_pkey")
    assert sorted([copy, plain, uniq, pk], key=_keep_order)[0] is pk


def test_pr_section_shows_evidence_ddl_and_rollback():
    a = Advice(table_name="public.t", index_name="public.t_a_idx1", reason="duplicate",
               ddl="DROP INDEX CONCURRENTLY IF EXISTS public.t_a_idx1;",
               rollback="CREATE INDEX CONCURRENTLY IF NOT EXISTS t_a_idx1 ON public.t USING btree (a);",
               size_bytes=3 * 1048576, scans=0, covering_index="public.t_a_idx", writes_saved_per_day=1234.0,
               rationale="public.t_a_idx1 is an exact duplicate of public.t_a_idx.")
    text = a.pr_section()
    assert text.startswith("### Drop `public.t_a_idx1` (duplicate)")
    assert "- size: 3.0 MB; scans since the statistics reset: 0" in text
    assert "- covering index: `public.t_a_idx`" in text
    assert "about 1,234 index entries per day" in text
    assert "```sql\nDROP INDEX CONCURRENTLY IF EXISTS public.t_a_idx1;\n```" in text
    assert a.kind == "drop_index"
