"""Unit tests for pg_architect.advisors.rewrite_rules: one statement in, the exact rewritten SQL
(or the reason why not) out, with a catalog given as data (no database)."""

from __future__ import annotations

import pytest

from pg_architect.advisors.rewrite_catalog import StaticCatalog, table
from pg_architect.advisors.rewrite_rules import (
    RULES,
    NotParsable,
    Options,
    Refusal,
    Rewrite,
    rewrite,
)

CATALOG = StaticCatalog({
    "public.users": table("public", "users", [
        ("id", "int8", True), ("email", "text", True), ("name", "text", True),
        ("created_at", "timestamptz", True), ("score", "int4", False), ("n", "int4", True),
        ("small", "int2", True), ("total", "numeric", True), ("ratio", "float8", True),
        ("session_id", "uuid", True), ("born", "date", True)], [("id",), ("email",)]),
    "public.orders": table("public", "orders", [
        ("id", "int8", True), ("user_id", "int8", True), ("ref_user", "int8", False),
        ("created_at", "timestamptz", True), ("day", "timestamp", True), ("status", "text", True)], [("id",)]),
    "shop.items": table("shop", "items", [("sku", "text", True), ("shop", "int4", True), ("label", "text", False)],
                        [("shop", "sku")]),
})


def one(rule: str, sql: str, **opts):
    out = [o for o in rewrite(sql, CATALOG, [rule], Options(**opts) if opts else None)]
    assert len(out) == 1, out
    return out[0]


def rewritten(rule: str, sql: str, **opts) -> str:
    o = one(rule, sql, **opts)
    assert isinstance(o, Rewrite), o
    return o.sql


def refused(rule: str, sql: str) -> str:
    o = one(rule, sql)
    assert isinstance(o, Refusal), o
    assert o.reason.startswith("not rewritten: ")
    return o.reason


def nothing(rule: str, sql: str) -> None:
    assert rewrite(sql, CATALOG, [rule]) == []


def test_every_rule_has_a_name_and_a_one_line_description():
    assert len({r.name for r in RULES}) == len(RULES) == 11
    assert all(r.description and "\n" not in r.description for r in RULES)


def test_not_one_statement_is_refused_by_the_parser():
    with pytest.raises(NotParsable):
        rewrite("SELECT 1; SELECT 2", CATALOG)
    with pytest.raises(NotParsable):
        rewrite("SELEC 1", CATALOG)


# -- sargable_date_trunc ------------------------------------------------------------------------
def test_date_trunc_day_on_timestamptz_keeps_the_boundary_check():
    assert rewritten("sargable_date_trunc", "SELECT id FROM orders WHERE date_trunc('day', created_at) = $1"
                     " AND status = $2") == (
        "SELECT id FROM orders WHERE created_at >= $1 AND created_at < date_trunc('day',"
        " CAST($1 AS timestamp with time zone) + CAST('1 day' AS interval))"
        " AND date_trunc('day', CAST($1 AS timestamp with time zone)) = $1 AND status = $2")


def test_date_trunc_hour_on_timestamp_uses_plain_addition_and_either_side():
    assert rewritten("sargable_date_trunc", "SELECT id FROM orders o WHERE $1 = date_trunc('hour', o.day)") == (
        "SELECT id FROM orders AS o WHERE o.day >= $1 AND o.day < CAST($1 AS timestamp)"
        " + CAST('1 hour' AS interval) AND date_trunc('hour', CAST($1 AS timestamp)) = $1")


def test_date_trunc_below_a_day_on_timestamptz_is_refused():
    assert "DST" in refused("sargable_date_trunc",
                            "SELECT id FROM orders WHERE date_trunc('hour', created_at) = $1")


def test_date_trunc_on_a_date_column_is_refused():
    assert "only timestamp and timestamptz" in refused(
        "sargable_date_trunc", "SELECT id FROM users WHERE date_trunc('day', born) = $1")


def test_date_trunc_under_or_is_not_touched():
    nothing("sargable_date_trunc", "SELECT id FROM orders WHERE date_trunc('day', day) = $1 OR id = $2")


def test_date_trunc_in_a_subquery_is_rewritten_there():
    assert rewritten("sargable_date_trunc", "SELECT * FROM users WHERE id IN (SELECT user_id FROM orders"
                     " WHERE date_trunc('month', day) = $1)") == (
        "SELECT * FROM users WHERE id IN (SELECT user_id FROM orders WHERE day >= $1 AND day <"
        " CAST($1 AS timestamp) + CAST('1 month' AS interval) AND date_trunc('month', CAST($1 AS timestamp)) = $1)")


# -- sargable_cast ----------------------------------------------------------------------------------
def test_int4_text_cast_becomes_a_guarded_comparison():
    assert rewritten("sargable_cast", "SELECT id FROM users WHERE n::text = $1") == (
        "SELECT id FROM users WHERE n = CASE WHEN CAST($1 AS pg_catalog.text) ~ '^(0|-?[1-9][0-9]{0,17})$'"
        " THEN CAST(CAST($1 AS pg_catalog.text) AS bigint) END")


def test_int8_text_cast_admits_nineteen_digit_values_within_range():
    sql = rewritten("sargable_cast", "SELECT id FROM users WHERE CAST(id AS text) = '12'")
    assert "'^[1-9][0-9]{18}$' AND CAST('12' AS pg_catalog.text) COLLATE \"C\" <= '9223372036854775807'" in sql
    assert "<= '-9223372036854775808'" in sql


def test_uuid_text_cast_requires_the_canonical_lowercase_form():
    assert rewritten("sargable_cast", "SELECT id FROM users WHERE session_id::text = $1") == (
        "SELECT id FROM users WHERE session_id = CASE WHEN CAST($1 AS pg_catalog.text) ~"
        " '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'"
        " THEN CAST(CAST($1 AS pg_catalog.text) AS pg_catalog.uuid) END")


@pytest.mark.parametrize("col", ["total", "created_at", "ratio", "born"])
def test_text_cast_of_non_canonical_types_is_refused(col):
    assert "not provably canonical" in refused("sargable_cast", f"SELECT id FROM users WHERE {col}::text = $1")


# -- sargable_coalesce ------------------------------------------------------------------------------
def test_coalesce_on_not_null_column_is_the_column():
    assert rewritten("sargable_coalesce", "SELECT id FROM users WHERE coalesce(n, 0) = $1") == (
        "SELECT id FROM users WHERE n = $1")


def test_coalesce_on_nullable_column_keeps_the_null_arm():
    assert rewritten("sargable_coalesce", "SELECT id FROM users WHERE COALESCE(score, $2) = $1") == (
        "SELECT id FROM users WHERE score = $1 OR (score IS NULL AND $2 = $1)")


def test_coalesce_with_a_default_of_another_type_is_refused():
    assert "could change the comparison's type" in refused(
        "sargable_coalesce", "SELECT id FROM users WHERE coalesce(score, 0.5) = $1")


def test_coalesce_on_the_nullable_side_of_a_left_join_is_not_taken_as_not_null():
    assert rewritten("sargable_coalesce", "SELECT o.id FROM orders o LEFT JOIN users u ON u.id = o.user_id"
                     " WHERE coalesce(u.n, 0) = $1") == (
        "SELECT o.id FROM orders AS o LEFT JOIN users AS u ON u.id = o.user_id"
        " WHERE u.n = $1 OR (u.n IS NULL AND 0 = $1)")


# -- sargable_arithmetic ----------------------------------------------------------------------------
def test_integer_arithmetic_moves_to_the_parameter_with_an_overflow_guard():
    assert rewritten("sargable_arithmetic", "SELECT id FROM users WHERE n + 1 = $1") == (
        "SELECT id FROM users WHERE n = CASE WHEN $1 >= -2147483647 THEN $1 - 1 END")


def test_integer_subtraction_and_constant_minus_column():
    assert rewritten("sargable_arithmetic", "SELECT id FROM users WHERE id - 5 = $1 AND 10 - n = $2") == (
        "SELECT id FROM users WHERE id = CASE WHEN $1 <= 9223372036854775802 THEN $1 + 5 END"
        " AND n = CASE WHEN $2 >= -2147483637 THEN 10 - $2 END")


def test_smallint_plus_int_is_int4_arithmetic():
    assert rewritten("sargable_arithmetic", "SELECT id FROM users WHERE small + 1 = $1") == (
        "SELECT id FROM users WHERE small = CASE WHEN $1 >= -2147483647 THEN $1 - 1 END")


def test_numeric_arithmetic_needs_no_guard():
    assert rewritten("sargable_arithmetic", "SELECT id FROM users WHERE total + 1.5 = $1") == (
        "SELECT id FROM users WHERE total = $1 - 1.5")


def test_float_arithmetic_is_refused():
    assert "floats round" in refused("sargable_arithmetic", "SELECT id FROM users WHERE ratio + 1 = $1")


# -- not_in_to_not_exists ---------------------------------------------------------------------------
def test_not_in_over_not_null_columns_becomes_not_exists_with_the_outer_column_qualified():
    assert rewritten("not_in_to_not_exists", "SELECT * FROM users WHERE id NOT IN (SELECT user_id FROM orders"
                     " WHERE status = $1)") == (
        "SELECT * FROM users WHERE NOT EXISTS (SELECT 1 FROM orders WHERE status = $1 AND user_id = users.id)")


def test_not_in_over_a_nullable_column_is_refused_with_the_reason():
    assert refused("not_in_to_not_exists", "SELECT * FROM users WHERE id NOT IN (SELECT ref_user FROM orders)") == (
        "not rewritten: orders.ref_user is NULLable, NOT IN and NOT EXISTS differ when it holds NULL")


def test_not_in_with_an_is_not_null_filter_in_the_subquery_is_rewritten():
    assert rewritten("not_in_to_not_exists", "SELECT * FROM users u WHERE u.id NOT IN (SELECT ref_user FROM"
                     " orders WHERE ref_user IS NOT NULL)") == (
        "SELECT * FROM users AS u WHERE NOT EXISTS (SELECT 1 FROM orders WHERE ref_user IS NOT NULL"
        " AND ref_user = u.id)")


def test_not_in_with_a_nullable_outer_column_is_refused():
    assert "users.score is NULLable" in refused(
        "not_in_to_not_exists", "SELECT * FROM users WHERE score NOT IN (SELECT user_id FROM orders)")


def test_not_in_from_the_nullable_side_of_an_outer_join_is_refused():
    assert "users.id (u) is on the nullable side of an outer join" in refused(
        "not_in_to_not_exists", "SELECT * FROM orders o LEFT JOIN users u ON u.id = o.user_id"
        " WHERE u.id NOT IN (SELECT user_id FROM orders o2)")


def test_not_in_with_a_grouped_subquery_is_refused():
    assert "GROUP BY" in refused("not_in_to_not_exists", "SELECT * FROM users WHERE id NOT IN"
                                 " (SELECT user_id FROM orders GROUP BY user_id)")


def test_not_in_when_the_subquery_reuses_the_outer_name_is_refused():
    assert "reuses the name orders" in refused(
        "not_in_to_not_exists", "SELECT * FROM orders WHERE user_id NOT IN (SELECT id FROM orders)")


# -- or_to_union_all --------------------------------------------------------------------------------
def test_or_across_columns_becomes_disjoint_union_all():
    assert rewritten("or_to_union_all", "SELECT id, email FROM users WHERE (email = $1 OR name = $2)"
                     " AND n > 0") == (
        "SELECT id, email FROM users WHERE email = $1 AND n > 0 UNION ALL SELECT id, email FROM users"
        " WHERE name = $2 AND email = $1 IS NOT TRUE AND n > 0")


def test_or_of_an_and_is_negated_as_a_whole():
    sql = rewritten("or_to_union_all", "SELECT id FROM users WHERE (email = $1 AND n = 1) OR name = $2")
    assert sql.endswith("WHERE name = $2 AND (email = $1 AND n = 1) IS NOT TRUE")


def test_or_keeps_an_order_by_on_output_columns():
    assert rewritten("or_to_union_all", "SELECT id, email FROM users WHERE email = $1 OR name = $2"
                     " ORDER BY id") == (
        "SELECT id, email FROM users WHERE email = $1 UNION ALL SELECT id, email FROM users"
        " WHERE name = $2 AND email = $1 IS NOT TRUE ORDER BY id")


@pytest.mark.parametrize("sql, why", [
    ("SELECT id FROM users WHERE id = $1 OR id = $2", "same column"),
    ("SELECT count(*) FROM users WHERE email = $1 OR name = $2", "aggregate"),
    ("SELECT DISTINCT name FROM users WHERE email = $1 OR name = $2", "DISTINCT"),
    ("SELECT id FROM users WHERE email = $1 OR name = $2 LIMIT 5", "not a unique NOT NULL key"),
    ("SELECT id FROM users WHERE email = $1 OR name = $2 ORDER BY n LIMIT 5", "not a unique NOT NULL key"),
    ("SELECT id FROM users WHERE email = $1 OR name = $2 ORDER BY id LIMIT 5 OFFSET 5", "LIMIT"),
    ("SELECT id FROM users WHERE email = $1 OR name = $2 ORDER BY id FETCH FIRST 5 ROWS WITH TIES", "LIMIT"),
    ("SELECT id FROM users WHERE email = $1 OR random() < 0.5", "volatile"),
    ("SELECT id FROM users WHERE email = $1 OR id IN (SELECT user_id FROM orders)", "subquery"),
    ("SELECT u.id FROM users u JOIN orders o ON o.user_id = u.id WHERE u.email = $1 OR o.status = $2",
     "more than one table"),
    ("SELECT id FROM users WHERE email = $1 OR name = $2 ORDER BY n", "ORDER BY"),
])
def test_or_refusals(sql, why):
    assert why in refused("or_to_union_all", sql)


# -- offset_to_keyset -------------------------------------------------------------------------------
def test_offset_becomes_keyset_on_a_unique_order():
    o = one("offset_to_keyset", "SELECT id, email FROM users WHERE name = $1 ORDER BY id LIMIT $2 OFFSET $3")
    assert o.sql == "SELECT id, email FROM users WHERE name = $1 AND id > $3 ORDER BY id LIMIT $2"
    assert o.changes_code and "last row's (id)" in o.parameters


def test_keyset_on_two_columns_descending_renumbers_parameters():
    o = one("offset_to_keyset", "SELECT id, n FROM users ORDER BY n DESC, id DESC LIMIT 20 OFFSET $1")
    assert o.sql == "SELECT id, n FROM users WHERE (n, id) < ($1, $2) ORDER BY n DESC, id DESC LIMIT 20"


def test_keyset_offset_in_the_middle_renumbers_the_later_parameters():
    o = one("offset_to_keyset", "SELECT id FROM users ORDER BY id LIMIT $2 OFFSET $1")
    assert o.sql == "SELECT id FROM users WHERE id > $2 ORDER BY id LIMIT $1"
    assert "renumbered: $2 -> $1, $3 -> $2" in o.parameters


@pytest.mark.parametrize("sql, why", [
    ("SELECT id, n FROM users ORDER BY n LIMIT 10 OFFSET $1", "not unique"),
    ("SELECT id, score FROM users ORDER BY score, id LIMIT 10 OFFSET $1", "NULLable"),
    ("SELECT id, n FROM users ORDER BY n, id DESC LIMIT 10 OFFSET $1", "mixes ASC and DESC"),
    ("SELECT email FROM users ORDER BY id LIMIT 10 OFFSET $1", "select list lacks id"),
    ("SELECT id FROM users ORDER BY id NULLS FIRST LIMIT 10 OFFSET $1", "NULLS FIRST"),
    ("SELECT id FROM users OFFSET $1", "needs ORDER BY and LIMIT"),
])
def test_keyset_refusals(sql, why):
    assert why in refused("offset_to_keyset", sql)


def test_keyset_with_star_and_a_composite_key():
    o = one("offset_to_keyset", "SELECT * FROM shop.items ORDER BY shop, sku LIMIT 50 OFFSET $1")
    assert o.sql == "SELECT * FROM shop.items WHERE (shop, sku) > ($1, $2) ORDER BY shop, sku LIMIT 50"


# -- count_to_exists --------------------------------------------------------------------------------
def test_count_greater_than_zero_statement_becomes_exists():
    assert rewritten("count_to_exists", "SELECT count(*) > 0 AS has FROM orders WHERE user_id = $1") == (
        "SELECT EXISTS (SELECT 1 FROM orders WHERE user_id = $1) AS has")


@pytest.mark.parametrize("test, form", [("> 0", "EXISTS"), (">= 1", "EXISTS"), ("<> 0", "EXISTS"),
                                        ("= 0", "NOT EXISTS"), ("< 1", "NOT EXISTS")])
def test_count_subquery_compared_with_zero_becomes_exists(test, form):
    assert rewritten("count_to_exists", f"SELECT id FROM users u WHERE (SELECT count(*) FROM orders o"
                     f" WHERE o.user_id = u.id) {test}") == (
        f"SELECT id FROM users AS u WHERE {form} (SELECT 1 FROM orders AS o WHERE o.user_id = u.id)")


def test_zero_less_than_count_is_understood_too():
    assert rewritten("count_to_exists", "SELECT 0 < (SELECT count(*) FROM orders WHERE user_id = $1)") == (
        'SELECT EXISTS (SELECT 1 FROM orders WHERE user_id = $1) AS "?column?"')


def test_count_with_group_by_is_refused():
    assert "GROUP BY" in refused("count_to_exists", "SELECT id FROM users u WHERE (SELECT count(*) FROM orders o"
                                 " WHERE o.user_id = u.id GROUP BY o.status) > 0")


def test_count_compared_with_two_is_not_existence():
    nothing("count_to_exists", "SELECT id FROM users u WHERE (SELECT count(*) FROM orders o"
            " WHERE o.user_id = u.id) > 1")


# -- scalar_subquery_to_lateral ---------------------------------------------------------------------
def test_scalar_subquery_on_a_unique_key_becomes_left_join_lateral():
    assert rewritten("scalar_subquery_to_lateral", "SELECT o.id, (SELECT u.email FROM users u"
                     " WHERE u.id = o.user_id) FROM orders o WHERE o.status = $1") == (
        "SELECT o.id, _sq1.v AS email FROM orders AS o LEFT JOIN LATERAL (SELECT u.email AS v FROM users AS u"
        " WHERE u.id = o.user_id) AS _sq1 ON TRUE WHERE o.status = $1")


def test_scalar_aggregate_subquery_keeps_its_alias():
    assert rewritten("scalar_subquery_to_lateral", "SELECT u.id, (SELECT max(o.day) FROM orders o"
                     " WHERE o.user_id = u.id) AS last FROM users u") == (
        "SELECT u.id, _sq1.v AS last FROM users AS u LEFT JOIN LATERAL (SELECT max(o.day) AS v FROM orders AS o"
        " WHERE o.user_id = u.id) AS _sq1 ON TRUE")


def test_scalar_subquery_on_a_composite_unique_key():
    sql = rewritten("scalar_subquery_to_lateral", "SELECT o.id, (SELECT i.label FROM shop.items i"
                    " WHERE i.shop = 1 AND i.sku = o.status) FROM orders o")
    assert "LEFT JOIN LATERAL (SELECT i.label AS v FROM shop.items AS i" in sql


def test_scalar_subquery_on_a_non_unique_column_is_refused():
    assert "do not cover a unique key of users" in refused(
        "scalar_subquery_to_lateral", "SELECT o.id, (SELECT u.email FROM users u WHERE u.name = o.status)"
        " FROM orders o")


def test_uncorrelated_scalar_subquery_is_refused():
    assert "not correlated" in refused("scalar_subquery_to_lateral",
                                       "SELECT o.id, (SELECT max(n) FROM users) FROM orders o")


def test_scalar_subquery_in_a_grouped_query_is_refused():
    assert "groups" in refused("scalar_subquery_to_lateral", "SELECT o.user_id, (SELECT u.email FROM users u"
                               " WHERE u.id = o.user_id) FROM orders o GROUP BY o.user_id")


# -- distinct_join_to_exists ------------------------------------------------------------------------
def test_distinct_over_join_with_the_key_listed_becomes_exists():
    assert rewritten("distinct_join_to_exists", "SELECT DISTINCT u.id, u.email FROM users u JOIN orders o"
                     " ON o.user_id = u.id WHERE o.status = $1 AND u.name = $2") == (
        "SELECT u.id, u.email FROM users AS u WHERE u.name = $2 AND EXISTS (SELECT 1 FROM orders AS o"
        " WHERE o.user_id = u.id AND o.status = $1)")


def test_distinct_over_comma_join_qualifies_the_moved_outer_columns():
    assert rewritten("distinct_join_to_exists", "SELECT DISTINCT email, n FROM users, orders"
                     " WHERE user_id = users.id AND status = name AND n > $1") == (
        "SELECT email, n FROM users WHERE n > $1 AND EXISTS (SELECT 1 FROM orders WHERE user_id = users.id"
        " AND status = users.name)")


def test_distinct_without_a_key_is_refused():
    assert "no NOT NULL unique key of users" in refused(
        "distinct_join_to_exists", "SELECT DISTINCT u.name FROM users u JOIN orders o ON o.user_id = u.id")


def test_distinct_with_columns_of_both_tables_is_refused():
    assert "both tables" in refused("distinct_join_to_exists", "SELECT DISTINCT u.id, o.status FROM users u"
                                    " JOIN orders o ON o.user_id = u.id")


def test_distinct_over_a_left_join_is_not_touched():
    nothing("distinct_join_to_exists", "SELECT DISTINCT u.id FROM users u LEFT JOIN orders o ON o.user_id = u.id")


# -- in_list_to_any ---------------------------------------------------------------------------------
def test_long_in_list_becomes_one_array_parameter():
    o = one("in_list_to_any", "SELECT * FROM orders WHERE status = $1 AND user_id IN ($2, $3, $4, $5)"
            " AND id > $6", min_in_list=4)
    assert o.sql == "SELECT * FROM orders WHERE status = $1 AND user_id = ANY(CAST($2 AS bigint[])) AND id > $3"
    assert o.changes_code and "takes one array $2" in o.parameters and "$6 -> $3" in o.parameters


def test_not_in_list_becomes_all():
    assert rewritten("in_list_to_any", "SELECT id FROM orders WHERE status NOT IN ($1, $2, $3)",
                     min_in_list=3) == "SELECT id FROM orders WHERE status <> ALL(CAST($1 AS pg_catalog.text[]))"


def test_short_in_list_is_left_alone():
    nothing("in_list_to_any", "SELECT id FROM orders WHERE user_id IN ($1, $2, $3)")


def test_in_list_of_constants_is_left_alone():
    nothing("in_list_to_any", "SELECT id FROM orders WHERE user_id IN (1, 2, 3)")


def test_arithmetic_with_a_parameter_operand_is_refused():
    assert "only a numeric literal" in refused("sargable_arithmetic", "SELECT id FROM users WHERE n + $2 = $1")


def test_scalar_subquery_with_a_bare_star_is_refused():
    assert "bare *" in refused("scalar_subquery_to_lateral", "SELECT *, (SELECT u.email FROM users u"
                               " WHERE u.id = o.user_id) FROM orders o")


def test_unnamed_existence_count_keeps_its_column_name():
    assert rewritten("count_to_exists", "SELECT count(*) > 0 FROM orders WHERE user_id = $1") == (
        'SELECT EXISTS (SELECT 1 FROM orders WHERE user_id = $1) AS "?column?"')


def test_in_list_in_a_subquery_is_typed_by_the_subquery_s_own_table():
    sql = rewritten("in_list_to_any", "SELECT id FROM users WHERE id IN (SELECT user_id FROM orders"
                    " WHERE status IN ($1, $2, $3))", min_in_list=3)
    assert sql == ("SELECT id FROM users WHERE id IN (SELECT user_id FROM orders"
                   " WHERE status = ANY(CAST($1 AS pg_catalog.text[])))")


def test_sargable_rules_apply_to_update_and_delete():
    assert rewritten("sargable_coalesce", "UPDATE users SET name = $2 WHERE coalesce(n, 0) = $1") == (
        "UPDATE users SET name = $2 WHERE n = $1")
    assert rewritten("sargable_date_trunc", "DELETE FROM orders WHERE date_trunc('year', day) = $1").startswith(
        "DELETE FROM orders WHERE day >= $1 AND day < CAST($1 AS timestamp) + CAST('1 year' AS interval)")


def test_a_with_query_named_like_a_table_hides_the_table():
    """WITH orders AS (...) is not public.orders: its user_id may be NULL."""
    assert "not a column of the outer FROM list" not in (r := refused(
        "not_in_to_not_exists", "WITH orders AS (SELECT ref_user AS user_id FROM public.orders)"
        " SELECT * FROM users WHERE id NOT IN (SELECT user_id FROM orders)"))
    assert "cannot be resolved" in r
    nothing("sargable_coalesce", "WITH users AS (SELECT * FROM public.users)"
            " SELECT id FROM users WHERE coalesce(n, 0) = $1")


def test_in_list_whose_parameter_is_used_elsewhere_is_refused():
    assert "also used elsewhere" in refused("in_list_to_any", "SELECT id FROM orders WHERE user_id IN"
                                            " ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) AND ref_user = $1")


def test_count_subquery_in_the_select_list_keeps_its_column_name():
    assert rewritten("count_to_exists", "SELECT u.id, (SELECT count(*) FROM orders o WHERE o.user_id = u.id) > 0"
                     " FROM users u") == (
        'SELECT u.id, EXISTS (SELECT 1 FROM orders AS o WHERE o.user_id = u.id) AS "?column?" FROM users AS u')


def test_or_with_a_unique_order_and_limit_limits_every_branch():
    assert rewritten("or_to_union_all", "SELECT id, email FROM users WHERE email = $1 OR name = $2"
                     " ORDER BY id DESC LIMIT $3") == (
        "(SELECT id, email FROM users WHERE email = $1 ORDER BY id DESC LIMIT $3) UNION ALL"
        "(SELECT id, email FROM users WHERE name = $2 AND email = $1 IS NOT TRUE ORDER BY id DESC LIMIT $3)"
        " ORDER BY id DESC LIMIT $3")
