"""Unit tests for pg_architect.recommend: usage facts in, index candidates out (no database)."""

from __future__ import annotations

import re

import pytest

from pg_architect.advisors.index_candidates import (
    KINDS,
    Candidate,
    ExistingIndex,
    TableMeta,
    generate_candidates,
    is_covered,
    normalize_sql_fragment,
    quote_ident,
)
from pg_architect.analyze import StatementInfo, TableUsage, analyze_statement


class FakeCatalog:
    TABLES = {
        ("public", "users"): {"id": "bigint", "email": "text", "name": "text", "created_at": "timestamptz",
                              "status": "text", "UserName": "text"},
        ("public", "orders"): {"id": "bigint", "user_id": "bigint", "status": "text", "created_at": "timestamptz",
                               "total": "numeric", "deleted_at": "timestamptz", "is_paid": "boolean"},
        ("public", "behavior_log"): {"id": "bigint", "user_id": "bigint", "event_type": "text",
                                     "created_at": "timestamptz", "payload": "jsonb"},
        ("shop", "Bestellungen"): {"id": "bigint", "Kunde": "text", "größe": "integer"},
    }

    def resolve_table(self, schema, name):
        for s in ([schema] if schema else ["public"]):
            if (s, name) in self.TABLES:
                return (s, name)
        return None

    def columns(self, schema, table):
        return dict(self.TABLES[(schema, table)])


def analyze(sql: str) -> StatementInfo:
    return analyze_statement(sql, FakeCatalog())


def info_for(usage: TableUsage, has_limit: bool = False) -> StatementInfo:
    return StatementInfo(kind="select", text="", param_count=0, tables={(usage.schema, usage.name): usage},
                         has_limit=has_limit, functions=[])


def orders_usage(**kw) -> TableUsage:
    kw.setdefault("used_columns", set())
    return TableUsage(schema="public", name="orders", aliases={"orders"}, **kw)


def keys_of(cands: list[Candidate], kind: str | None = None) -> list[tuple[str, ...]]:
    return [c.keys for c in cands if kind is None or c.kind == kind]


# --------------------------------------------------------------------------
# quote_ident
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, quoted",
    [
        ("user_id", "user_id"),
        ("_x1", "_x1"),
        ("UserId", '"UserId"'),
        ("größe", '"größe"'),
        ("order", '"order"'),
        ("user", '"user"'),
        ("timestamp", '"timestamp"'),  # col_name keyword: PostgreSQL's quote_ident quotes it too
        ("left", '"left"'),  # type_func_name keyword
        ("name", "name"),  # unreserved keyword stays bare
        ("1st", '"1st"'),
        ("a b", '"a b"'),
        ('say "hi"', '"say ""hi"""'),
        ("cost$", '"cost$"'),
        ("", '""'),
    ],
)
def test_quote_ident(name, quoted):
    assert quote_ident(name) == quoted


# --------------------------------------------------------------------------
# Candidate rendering
# --------------------------------------------------------------------------


def test_candidate_definition_ddl_hypo_and_rollback():
    c = Candidate("public", "orders", ("user_id", "created_at"), ("total",), "status = 'pending'", "partial")
    d = "ON public.orders USING btree (user_id, created_at) INCLUDE (total) WHERE (status = 'pending')"
    assert c.definition() == d
    assert c.hypo_sql() == "CREATE INDEX " + d
    name = c.name()
    assert c.ddl() == f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} {d}"
    assert c.rollback_ddl() == f"DROP INDEX CONCURRENTLY IF EXISTS public.{name}"
    assert c.columns() == ["user_id", "created_at", "total"]


def test_expression_keys_get_parentheses_in_ddl():
    c = Candidate("public", "users", ("lower(email)", "status"), kind="expression")
    assert c.definition() == "ON public.users USING btree ((lower(email)), status)"
    c = Candidate("public", "users", ("(created_at::date)",), kind="expression")
    assert c.definition() == "ON public.users USING btree ((created_at::date))"
    c = Candidate("public", "users", ("(a) + (b)",), kind="expression")
    assert c.definition() == "ON public.users USING btree (((a) + (b)))"
    assert c.columns() == ["a", "b"]


def test_ordered_keys_are_plain_columns_in_ddl():
    c = Candidate("public", "orders", ("user_id", "created_at DESC NULLS LAST"), kind="multi")
    assert c.definition() == "ON public.orders USING btree (user_id, created_at DESC NULLS LAST)"
    assert c.columns() == ["user_id", "created_at"]
    assert c.name() == "orders_user_id_created_at_desc_nulls_last_idx"


def test_quoted_schema_table_and_columns_in_ddl():
    c = Candidate("Shop", "Bestellungen", ('"Kunde"', '"größe"'), kind="multi")
    assert c.definition() == 'ON "Shop"."Bestellungen" USING btree ("Kunde", "größe")'
    assert c.rollback_ddl().startswith('DROP INDEX CONCURRENTLY IF EXISTS "Shop".')
    assert c.columns() == ["Kunde", "größe"]


def test_simple_name_has_no_hash():
    assert Candidate("public", "orders", ("user_id", "created_at"), kind="multi").name() == (
        "orders_user_id_created_at_idx"
    )
    assert Candidate("public", "orders", ("user_id",), ("total",), kind="covering").name() == (
        "orders_user_id_incl_total_idx"
    )


def test_non_ascii_name_is_transliterated_and_hashed():
    c = Candidate("shop", "Bestellungen", ('"größe"',))
    name = c.name()
    assert re.fullmatch(r"bestellungen_grosse_[0-9a-f]{6}_idx", name)
    assert name.isascii()


def test_names_are_at_most_63_bytes_and_unique_per_definition():
    long_table = "customer_lifetime_value_snapshots_by_region_and_quarter"
    cands = [
        Candidate("public", long_table, ("a_rather_long_column_name", "another_long_column_name", "third")),
        Candidate("public", long_table, ("a_rather_long_column_name", "another_long_column_name", "fourth")),
        Candidate("public", long_table, ("x",), where="y IS NULL", kind="partial"),
        Candidate("public", long_table, ("x",), where="y IS NOT NULL", kind="partial"),
        Candidate("public", long_table, ("x",)),
        Candidate("public", "orders", ('"UserId"',)),
        Candidate("public", "orders", ("userid",)),
        Candidate("public", "orders", ("lower(email)",), kind="expression"),
        Candidate("public", "orders", ("upper(email)",), kind="expression"),
        Candidate("public", "表", ('"列"',)),
    ]
    names = [c.name() for c in cands]
    assert all(len(n.encode()) <= 63 for n in names)
    assert all(re.fullmatch(r"[a-z0-9_]+", n) for n in names)
    assert len(set(names)) == len(names)


def test_name_hash_is_stable():
    a = Candidate("public", "orders", ("lower(status)",), kind="expression")
    b = Candidate("public", "orders", ("lower(status)",), kind="expression")
    assert a.name() == b.name()


# --------------------------------------------------------------------------
# Candidate generation
# --------------------------------------------------------------------------


def test_single_column_candidates_for_eq_range_and_join():
    u = orders_usage(eq=["status"], range=["created_at"], join=["user_id"])
    singles = keys_of(generate_candidates(info_for(u), {}), "single")
    assert singles == [("status",), ("created_at",), ("user_id",)]


def test_order_by_single_candidates_only_with_limit():
    u = orders_usage(order_by=[("created_at", "DESC")])
    assert ("created_at",) in keys_of(generate_candidates(info_for(u, has_limit=True), {}), "single")
    u = orders_usage(order_by=[("created_at", "DESC"), ("id", "DESC")])
    assert keys_of(generate_candidates(info_for(u, has_limit=False), {}), "single") == []


def test_multicolumn_order_eq_range_order():
    # equality first, then the range column that is also the first ORDER BY column
    info = analyze("SELECT id FROM orders WHERE user_id = $1 AND created_at > $2 ORDER BY created_at, id LIMIT 10")
    multi = keys_of(generate_candidates(info, {}), "multi")
    assert multi[0] == ("user_id", "created_at", "id")


def test_range_column_different_from_order_column_stops_the_key():
    u = orders_usage(eq=["user_id"], range=["total"], order_by=[("created_at", "ASC")])
    multi = keys_of(generate_candidates(info_for(u, has_limit=True), {}), "multi")
    assert multi[0] == ("user_id", "total")
    assert ("user_id", "created_at") in multi
    assert ("user_id", "total", "created_at") not in multi


def test_equality_columns_ordered_most_selective_first():
    u = orders_usage(eq=["status", "user_id", "is_paid"])
    meta = {("public", "orders"): TableMeta("public", "orders", 1_000_000,
                                            {"status": 5, "user_id": -0.2, "is_paid": 2})}
    multi = keys_of(generate_candidates(info_for(u), meta, max_columns=3), "multi")
    assert multi[0] == ("user_id", "status", "is_paid")


def test_unknown_statistics_keep_statement_order_after_known_ones():
    u = orders_usage(eq=["status", "total", "user_id"])
    meta = {("public", "orders"): TableMeta("public", "orders", 1000, {"user_id": -0.5})}
    assert keys_of(generate_candidates(info_for(u), meta), "multi")[0] == ("user_id", "status", "total")
    assert keys_of(generate_candidates(info_for(u), {}), "multi")[0] == ("status", "total", "user_id")


def test_max_columns_limits_multicolumn_keys():
    u = orders_usage(eq=["a", "b", "c", "d"], range=["e"])
    cands = generate_candidates(info_for(u), {}, max_columns=2)
    assert all(len(c.keys) <= 2 for c in cands)


def test_order_columns_that_are_fixed_by_equality_are_skipped():
    u = orders_usage(eq=["user_id"], order_by=[("user_id", "ASC"), ("created_at", "DESC")])
    multi = keys_of(generate_candidates(info_for(u, has_limit=True), {}), "multi")
    assert multi[0] == ("user_id", "created_at")


def test_mixed_sort_directions_become_key_options():
    u = orders_usage(eq=["user_id"], order_by=[("created_at", "DESC"), ("id", "ASC")])
    multi = keys_of(generate_candidates(info_for(u, has_limit=True), {}), "multi")
    assert multi[0] == ("user_id", "created_at", "id DESC")


def test_non_default_nulls_ordering_is_kept():
    u = orders_usage(order_by=[("created_at", "DESC NULLS LAST")])
    singles = keys_of(generate_candidates(info_for(u, has_limit=True), {}), "single")
    assert singles == [("created_at NULLS FIRST",)]  # scanned backwards: DESC NULLS LAST


def test_group_by_follows_equality_columns():
    info = analyze("SELECT user_id, status, count(*) FROM orders WHERE is_paid = $1 GROUP BY user_id, status")
    assert ("is_paid", "user_id", "status") in keys_of(generate_candidates(info, {}), "multi")


def test_join_columns_count_as_equality_for_the_joined_side():
    info = analyze("SELECT o.total FROM users u JOIN orders o ON o.user_id = u.id WHERE o.created_at > $1")
    multi = keys_of([c for c in generate_candidates(info, {}) if c.table == "orders"], "multi")
    assert multi[0] == ("user_id", "created_at")


def test_expression_candidates_alone_and_with_equality_columns():
    info = analyze("SELECT id FROM users WHERE lower(email) = $1 AND status = $2")
    expr = keys_of(generate_candidates(info, {}), "expression")
    assert expr == [("lower(email)",), ("lower(email)", "status")]


def test_partial_candidate_leaves_fixed_columns_out_of_the_key():
    info = analyze(
        "SELECT id FROM orders WHERE status = 'pending' AND deleted_at IS NULL AND user_id = $1 "
        "ORDER BY created_at LIMIT 10"
    )
    partial = [c for c in generate_candidates(info, {}) if c.kind == "partial"]
    assert len(partial) == 1
    assert partial[0].keys == ("user_id", "created_at")
    assert partial[0].where == "status = 'pending' AND deleted_at IS NULL"
    assert partial[0].definition().endswith("WHERE (status = 'pending' AND deleted_at IS NULL)")


def test_partial_with_only_is_null_and_no_other_key_is_skipped():
    u = orders_usage(constant_preds=["deleted_at IS NULL"])
    assert [c for c in generate_candidates(info_for(u), {}) if c.kind == "partial"] == []


def test_partial_with_only_is_null_uses_the_primary_key():
    u = orders_usage(constant_preds=["deleted_at IS NULL"])
    meta = {("public", "orders"): TableMeta("public", "orders", 10, {},
                                            [ExistingIndex("orders_pkey", ["id"], [], None, True)])}
    partial = [c for c in generate_candidates(info_for(u), meta) if c.kind == "partial"]
    assert [(c.keys, c.where) for c in partial] == [(("id",), "deleted_at IS NULL")]


def test_is_not_null_predicate_does_not_fix_the_column():
    u = orders_usage(range=["deleted_at"], constant_preds=["deleted_at IS NOT NULL"])
    partial = [c for c in generate_candidates(info_for(u), {}) if c.kind == "partial"]
    assert [(c.keys, c.where) for c in partial] == [(("deleted_at",), "deleted_at IS NOT NULL")]


def test_covering_candidate_includes_remaining_used_columns():
    info = analyze("SELECT id, total FROM orders WHERE user_id = $1 AND status = $2")
    covering = [c for c in generate_candidates(info, {}) if c.kind == "covering"]
    assert [(c.keys, c.include) for c in covering] == [(("user_id", "status"), ("id", "total"))]


def test_no_covering_candidate_for_select_star_or_too_many_columns():
    info = analyze("SELECT * FROM orders WHERE user_id = $1")
    assert not [c for c in generate_candidates(info, {}) if c.kind == "covering"]
    info = analyze("SELECT id, status, created_at, total, deleted_at FROM orders WHERE user_id = $1")
    assert not [c for c in generate_candidates(info, {}, max_include=4) if c.kind == "covering"]
    assert [c for c in generate_candidates(info, {}, max_include=5) if c.kind == "covering"]


def test_covering_include_columns_are_quoted():
    info = analyze('SELECT "Kunde", größe FROM shop."Bestellungen" WHERE id = $1')
    covering = [c for c in generate_candidates(info, {}) if c.kind == "covering"]
    assert covering[0].include == ('"Kunde"', '"größe"')
    assert covering[0].definition() == 'ON shop."Bestellungen" USING btree (id) INCLUDE ("Kunde", "größe")'


def test_every_kind_is_generated_for_a_rich_statement():
    info = analyze(
        "SELECT o.id, o.total FROM orders o JOIN users u ON u.id = o.user_id "
        "WHERE u.email = $1 AND lower(o.status) = $2 AND o.deleted_at IS NULL AND o.created_at > $3 "
        "ORDER BY o.created_at DESC LIMIT 10"
    )
    kinds = {c.kind for c in generate_candidates(info, {})}
    assert kinds == set(KINDS)


def test_candidates_are_unique_and_deterministic():
    sql = ("SELECT id FROM orders WHERE user_id = $1 AND status = 'x' AND created_at > $2 "
           "ORDER BY created_at LIMIT 5")
    first = generate_candidates(analyze(sql), {})
    second = generate_candidates(analyze(sql), {})
    assert first == second
    definitions = [c.definition() for c in first]
    assert len(definitions) == len(set(definitions))


def test_candidates_covered_by_existing_indexes_are_dropped():
    info = analyze("SELECT id FROM orders WHERE user_id = $1 AND created_at > $2")
    meta = {("public", "orders"): TableMeta("public", "orders", 1000, {}, [
        ExistingIndex("orders_user_id_created_at_idx", ["user_id", "created_at", "id"], [], None, False),
    ])}
    keys = keys_of(generate_candidates(info, meta))
    assert ("user_id", "created_at") not in keys
    assert ("user_id",) not in keys
    assert ("created_at",) in keys


def test_candidate_cap_keeps_one_of_each_kind():
    # The first table alone yields more than 30 candidates; the kinds only the second table
    # produces must survive the cap.
    wide = orders_usage(eq=[f"c{i}" for i in range(40)])
    users = TableUsage(schema="public", name="users", aliases={"u"}, eq=["status"], expr_eq=["lower(email)"],
                       constant_preds=["deleted_at IS NULL"], used_columns={"status", "name"})
    info = StatementInfo(kind="select", text="", param_count=0, has_limit=False, functions=[],
                         tables={("public", "orders"): wide, ("public", "users"): users})
    all_cands = generate_candidates(info, {}, max_candidates=1000)
    assert len(all_cands) > 30
    assert [c.kind for c in all_cands[:30]].count("covering") == 0
    capped = generate_candidates(info, {})
    assert len(capped) == 30
    assert {c.kind for c in capped} == {c.kind for c in all_cands} == set(KINDS)
    assert [c for c in all_cands if c in capped] == capped  # order is preserved


def test_tables_without_usable_predicates_get_no_candidates():
    info = analyze("SELECT count(*) FROM orders")
    assert generate_candidates(info, {}) == []


# --------------------------------------------------------------------------
# is_covered
# --------------------------------------------------------------------------


def test_is_covered_by_prefix_of_existing_keys():
    idx = ExistingIndex("i", ["user_id", "created_at"], [], None, False)
    assert is_covered(Candidate("public", "orders", ("user_id",)), [idx]) is idx
    assert is_covered(Candidate("public", "orders", ("user_id", "created_at")), [idx]) is idx
    assert is_covered(Candidate("public", "orders", ("created_at",)), [idx]) is None
    assert is_covered(Candidate("public", "orders", ("user_id", "created_at", "id")), [idx]) is None


def test_is_covered_requires_equal_predicates():
    partial = ExistingIndex("p", ["user_id"], [], "((status = 'pending'::text) AND (deleted_at IS NULL))", False)
    same = Candidate("public", "orders", ("user_id",), where="status = 'pending' AND deleted_at IS NULL")
    other = Candidate("public", "orders", ("user_id",), where="status = 'done'")
    full = Candidate("public", "orders", ("user_id",))
    assert is_covered(same, [partial]) is partial
    assert is_covered(other, [partial]) is None
    assert is_covered(full, [partial]) is None
    assert is_covered(same, [ExistingIndex("f", ["user_id"], [], None, False)]) is None


def test_is_covered_compares_expressions_after_normalisation():
    idx = ExistingIndex("e", ["lower((email)::text)"], [], None, False)
    assert is_covered(Candidate("public", "users", ("lower(email)",), kind="expression"), [idx]) is idx
    idx = ExistingIndex("e", ["LOWER( Email )"], [], None, False)
    assert is_covered(Candidate("public", "users", ("lower(email)",), kind="expression"), [idx]) is idx
    assert is_covered(Candidate("public", "users", ("upper(email)",), kind="expression"), [idx]) is None


def test_is_covered_understands_pg_get_indexdef_output():
    # What pg_get_indexdef(indexrelid, k, true) and pg_get_expr(indpred, ...) return for these indexes.
    indexes = [
        ExistingIndex("t", ["date_trunc('day'::text, (created_at AT TIME ZONE 'UTC'::text))"], [], None, False),
        ExistingIndex("j", ["(payload ->> 'kind'::text)"], [], None, False),
        ExistingIndex("p", ["user_id"], [], "NOT is_paid AND deleted_at IS NULL", False),
    ]
    assert is_covered(Candidate("public", "t", ("date_trunc('day', created_at at time zone 'UTC')",)), indexes)
    assert is_covered(Candidate("public", "t", ("(payload ->> 'kind')",)), indexes)
    assert is_covered(Candidate("public", "t", ("user_id",), where="NOT is_paid AND deleted_at IS NULL"), indexes)


def test_is_covered_ignores_non_btree_indexes():
    idx = ExistingIndex("h", ["user_id"], [], None, False, am="hash")
    assert is_covered(Candidate("public", "orders", ("user_id",)), [idx]) is None


def test_is_covered_checks_include_columns():
    idx = ExistingIndex("i", ["user_id", "status"], ["total"], None, False)
    assert is_covered(Candidate("public", "orders", ("user_id",), ("status", "total"), kind="covering"), [idx]) is idx
    assert is_covered(Candidate("public", "orders", ("user_id",), ("id",), kind="covering"), [idx]) is None


def test_is_covered_treats_quoted_and_bare_names_alike_but_respects_case():
    idx = ExistingIndex("i", ['"user_id"', '"UserName"'], [], None, False)
    assert is_covered(Candidate("public", "users", ("user_id", '"UserName"')), [idx]) is idx
    assert is_covered(Candidate("public", "users", ("user_id", "username")), [idx]) is None


def test_is_covered_ignores_default_sort_options():
    idx = ExistingIndex("i", ["user_id ASC", "created_at DESC NULLS FIRST"], [], None, False)
    assert is_covered(Candidate("public", "orders", ("user_id", "created_at DESC")), [idx]) is idx
    assert is_covered(Candidate("public", "orders", ("user_id", "created_at")), [idx]) is None


def test_normalize_sql_fragment():
    assert normalize_sql_fragment("((status = 'Pending'::text))") == "status = 'Pending'"
    assert normalize_sql_fragment("date_trunc('day'::text, created_at)") == "date_trunc ( 'day' , created_at )"
    assert normalize_sql_fragment("(created_at::date)") == "created_at :: date"
    assert normalize_sql_fragment(None) is None
