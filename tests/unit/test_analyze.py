"""Unit tests for pg_architect.analyze: statement text in, usage facts out (no database)."""

from __future__ import annotations

import pytest

from pg_architect.analyze import (
    SkipStatement,
    StatementInfo,
    TableUsage,
    analyze_statement,
    fold_identifier,
    prepare_text,
)


class FakeCatalog:
    """A catalog with a search_path of pg_catalog, public; records its calls."""

    TABLES = {
        ("public", "users"): {
            "id": "bigint", "email": "text", "name": "text",
            "created_at": "timestamp with time zone", "status": "text", "UserName": "text",
        },
        ("public", "orders"): {
            "id": "bigint", "user_id": "bigint", "status": "text",
            "created_at": "timestamp with time zone", "total": "numeric",
            "deleted_at": "timestamp with time zone", "is_paid": "boolean",
        },
        ("public", "behavior_log"): {
            "id": "bigint", "user_id": "bigint", "event_type": "text",
            "created_at": "timestamp with time zone", "payload": "jsonb",
        },
        ("public", "visits"): {"id": "bigint", "visited_at": "timestamp without time zone", "page": "text"},
        ("public", "words"): {"id": "bigint", "order": "integer", "select": "text", "interval": "interval"},
        ("shop", "Bestellungen"): {"id": "bigint", "Kunde": "text", "größe": "integer"},
        ("shop", "Ärger"): {"id": "bigint", "Grund": "text"},
        ("pg_catalog", "pg_class"): {"oid": "oid", "relname": "name"},
        ("information_schema", "tables"): {"table_name": "name"},
        ("arch", "recommendation"): {"id": "bigint", "status": "text"},
    }
    SEARCH_PATH = ("pg_catalog", "public")

    def __init__(self):
        self.calls: list[tuple] = []

    def resolve_table(self, schema, name):
        self.calls.append(("resolve_table", schema, name))
        if schema is None:
            for s in self.SEARCH_PATH:
                if (s, name) in self.TABLES:
                    return (s, name)
            return None
        return (schema, name) if (schema, name) in self.TABLES else None

    def columns(self, schema, table):
        self.calls.append(("columns", schema, table))
        return dict(self.TABLES[(schema, table)])


@pytest.fixture
def catalog():
    return FakeCatalog()


def analyze(sql: str, catalog: FakeCatalog | None = None, **kw) -> StatementInfo:
    return analyze_statement(sql, catalog or FakeCatalog(), **kw)


def usage(info: StatementInfo, table: str, schema: str = "public") -> TableUsage:
    return info.tables[(schema, table)]


def skip_code(sql: str, catalog=None, **kw) -> SkipStatement:
    with pytest.raises(SkipStatement) as caught:
        analyze_statement(sql, catalog or FakeCatalog(), **kw)
    assert caught.value.reason and caught.value.reason.endswith(".")
    return caught.value


# --------------------------------------------------------------------------
# prepare_text
# --------------------------------------------------------------------------


def test_interval_param_rewritten():
    assert prepare_text("SELECT * FROM t WHERE created_at > now() - interval $1") == (
        "SELECT * FROM t WHERE created_at > now() - $1::interval"
    )


def test_typed_params_of_every_kind_rewritten():
    text = prepare_text(
        "SELECT timestamp $1, TIMESTAMPTZ $2, timestamp with time zone $3, date $4, time $5, "
        "numeric $6, Timestamp Without Time Zone $7, numeric(10,2) $8"
    )
    assert text == (
        "SELECT $1::timestamp, $2::timestamptz, $3::timestamp with time zone, $4::date, $5::time, "
        "$6::numeric, $7::timestamp without time zone, $8::numeric(10, 2)"
    )


def test_typed_literal_rewrite_leaves_strings_identifiers_and_comments_alone():
    sql = (
        "SELECT \"interval\", t.date FROM t WHERE note = 'interval $1' AND e = E'it\\'s date $2' "
        "AND d = $$ time $3 $$ /* date $4 */ AND x > interval $5 -- timestamp $6\n"
    )
    assert prepare_text(sql) == (
        "SELECT \"interval\", t.date FROM t WHERE note = 'interval $1' AND e = E'it\\'s date $2' "
        "AND d = $$ time $3 $$ /* date $4 */ AND x > $5::interval"
    )


def test_qualified_column_named_like_a_type_is_not_rewritten():
    assert prepare_text("SELECT foo.interval $1") == "SELECT foo.interval $1"
    assert prepare_text("SELECT x AT TIME ZONE $1 FROM t") == "SELECT x AT TIME ZONE $1 FROM t"


def test_trailing_semicolons_whitespace_and_comments_stripped():
    assert prepare_text("  SELECT 1 ;; \n") == "SELECT 1"
    assert prepare_text("SELECT 1; -- done\n ; /* really */ ") == "SELECT 1"
    assert prepare_text("SELECT ';' -- x") == "SELECT ';'"


def test_prepare_text_keeps_an_unterminated_string():
    assert prepare_text("SELECT 'cut -- off") == "SELECT 'cut -- off"


def test_prepared_text_is_what_the_analysis_reports(catalog):
    info = analyze("SELECT id FROM orders WHERE created_at > now() - interval $1;", catalog)
    assert info.text == "SELECT id FROM orders WHERE created_at > now() - $1::interval"
    assert usage(info, "orders").range == ["created_at"]
    assert info.param_count == 1


# --------------------------------------------------------------------------
# Skips: every code
# --------------------------------------------------------------------------


@pytest.mark.parametrize("sql", ["", "   \n", None])
def test_empty_text_is_skipped(sql):
    assert skip_code(sql).code == "empty"


def test_comment_only_text_is_empty():
    assert skip_code("-- nothing here\n/* or here */").code == "empty"


@pytest.mark.parametrize(
    "sql",
    [
        "VACUUM orders", "ANALYZE orders", "COPY orders FROM STDIN", "SET work_mem = '64MB'",
        "SHOW work_mem", "RESET ALL", "BEGIN", "COMMIT", "ROLLBACK", "PREPARE p AS SELECT 1",
        "EXECUTE p(1)", "DEALLOCATE p", "EXPLAIN SELECT 1", "LISTEN x", "NOTIFY x", "GRANT SELECT ON orders TO r",
        "REVOKE SELECT ON orders FROM r", "CALL p()", "DO $$ BEGIN END $$", "LOCK TABLE orders",
        "TRUNCATE orders", "CHECKPOINT", "DISCARD ALL", "REFRESH MATERIALIZED VIEW mv", "start transaction",
    ],
)
def test_utility_commands_are_skipped(sql):
    err = skip_code(sql)
    assert err.code == "utility"
    assert sql.split()[0].upper() in err.reason


@pytest.mark.parametrize(
    "sql",
    ["CREATE INDEX ON orders (user_id)", "ALTER TABLE orders ADD x int", "DROP TABLE orders",
     "COMMENT ON TABLE orders IS 'x'", "SELECT * INTO orders_copy FROM orders"],
)
def test_ddl_is_skipped(sql):
    assert skip_code(sql).code == "ddl"


def test_multi_statement_refused():
    assert skip_code("SELECT 1; SELECT 2").code == "multi_statement"
    assert skip_code("SELECT id FROM orders; DELETE FROM orders").code == "multi_statement"


def test_semicolon_inside_string_is_not_a_second_statement():
    info = analyze("SELECT id FROM orders WHERE status = 'a;b';")
    assert usage(info, "orders").eq == ["status"]


def test_parse_error_carries_the_parser_message():
    err = skip_code("SELECT * FROM orders WHERE id = = 1")
    assert err.code == "parse_error"
    # PostgreSQL's own message and the token it failed at, not a fragment of the statement.
    assert err.reason == ("PostgreSQL's parser rejects the statement: syntax error at or near \"=\" "
                          "(character 33: '= 1').")
    assert len(err.reason) < 250


def test_parse_error_names_the_failing_token_not_an_unrelated_fragment():
    # sqlglot's tokenizer used to report "Error tokenizing ':int])'" for a text it could not read.
    err = skip_code("SELECT id FROM orders WHERE id = ANY(ARRAY[$1,$2]::int[]) ORDER BY BY id")
    assert err.code == "parse_error"
    assert 'syntax error at or near "id" (character 71' in err.reason
    assert ":int" not in err.reason


@pytest.mark.parametrize(
    "sql, hint",
    [
        ("SELECT * FROM orders WHERE id IN ($1, $2, $3", "parentheses"),
        ("SELECT * FROM orders WHERE status = 'pend", "string literal"),
        ('SELECT "user_id FROM orders', "quoted identifier"),
        ("SELECT * FROM orders WHERE user_id = $1 AND", "AND"),
        ("SELECT * FROM orders o WHERE o.", "'.'"),
    ],
)
def test_truncated_text_is_reported(sql, hint):
    err = skip_code(sql)
    assert err.code == "truncated"
    assert hint in err.reason
    assert "track_activity_query_size" in err.reason


def test_text_cut_at_track_activity_query_size_is_reported_as_truncated():
    # 1023 bytes: what PostgreSQL keeps with the default track_activity_query_size of 1024.
    body = "SELECT id FROM orders WHERE " + " OR ".join(f"user_id = ${i}" for i in range(1, 200))
    cut = body[:1019] + " ))x"
    assert len(cut.encode()) == 1023
    err = skip_code(cut)
    assert err.code == "truncated"
    assert "1023 bytes" in err.reason


def test_too_long_statement_is_refused_with_the_limit_as_argument():
    sql = "SELECT id FROM orders WHERE " + " AND ".join(["user_id = $1"] * 50)
    assert skip_code(sql, max_length=100).code == "too_long"
    assert analyze(sql, max_length=len(sql)).tables


def test_default_length_limit_is_one_hundred_thousand():
    sql = "SELECT id FROM orders WHERE user_id = $1" + " " * 100_000
    err = skip_code(sql)
    assert err.code == "too_long"
    assert "100000" in err.reason


@pytest.mark.parametrize("sql", ["SELECT 1", "SELECT now()", "SELECT $1::int + 1", "VALUES (1), (2)",
                                 "SELECT * FROM generate_series(1, 10) g"])
def test_statement_without_tables_is_skipped(sql):
    assert skip_code(sql).code == "no_tables"


def test_unknown_table_names_the_table():
    err = skip_code("SELECT * FROM orders_2019 WHERE id = $1")
    assert err.code == "unknown_table"
    assert "orders_2019" in err.reason
    assert "search_path" in err.reason


def test_unknown_table_is_named_with_quotes_when_needed():
    err = skip_code('SELECT * FROM shop."Orders"')
    assert err.code == "unknown_table"
    assert 'shop."Orders"' in err.reason


@pytest.mark.parametrize(
    "sql",
    ["INSERT INTO orders (id) VALUES ($1)", "INSERT INTO orders DEFAULT VALUES"],
)
def test_not_supported_statements(sql):
    assert skip_code(sql).code == "not_supported"


@pytest.mark.parametrize(
    "sql",
    ["SELECT relname FROM pg_class WHERE oid = $1",
     "SELECT * FROM pg_catalog.pg_class c JOIN information_schema.tables t ON t.table_name = c.relname"],
)
def test_catalog_only_statement_is_skipped(sql):
    assert skip_code(sql).code == "catalog"


def test_catalog_tables_are_ignored_next_to_user_tables():
    info = analyze("SELECT o.id FROM orders o JOIN pg_class c ON c.oid = o.id WHERE c.relname = $1")
    assert list(info.tables) == [("public", "orders")]
    assert usage(info, "orders").join == ["id"]


def test_own_schema_only_statement_is_skipped():
    err = skip_code("SELECT * FROM arch.recommendation WHERE status = $1")
    assert err.code == "own"


def test_unexpected_error_is_wrapped_as_internal():
    class Broken(FakeCatalog):
        def columns(self, schema, table):
            raise KeyError("boom")

    err = skip_code("SELECT id FROM orders", Broken())
    assert err.code == "internal"
    assert "KeyError" in err.reason


def test_skip_statement_carries_code_and_reason():
    e = SkipStatement("empty", "The statement text is empty.")
    assert (e.code, e.reason) == ("empty", "The statement text is empty.")
    assert "empty" in str(e)


# --------------------------------------------------------------------------
# Predicates
# --------------------------------------------------------------------------


def test_equality_range_and_order_with_limit(catalog):
    info = analyze(
        "SELECT id, total FROM orders WHERE user_id = $1 AND created_at >= $2 ORDER BY created_at DESC LIMIT 20",
        catalog,
    )
    u = usage(info, "orders")
    assert info.kind == "select"
    assert u.eq == ["user_id"]
    assert u.range == ["created_at"]
    assert u.order_by == [("created_at", "DESC")]
    assert u.used_columns == {"id", "total", "user_id", "created_at"}
    assert info.has_limit is True
    assert info.param_count == 2


def test_comparisons_written_reversed():
    u = usage(analyze("SELECT id FROM orders WHERE $1 = user_id AND $2 < created_at AND 10 >= total"), "orders")
    assert u.eq == ["user_id"]
    assert u.range == ["created_at", "total"]


def test_between_and_prefix_like_are_ranges_but_not_param_like_or_ilike():
    u = usage(
        analyze(
            "SELECT id FROM users WHERE created_at BETWEEN $1 AND $2 AND email LIKE 'adm%' "
            "AND name LIKE $3 AND status LIKE '%x' AND \"UserName\" ILIKE 'a%'"
        ),
        "users",
    )
    assert u.range == ["created_at", "email"]
    assert u.eq == []


def test_two_hundred_item_in_list():
    params = ", ".join(f"${i}" for i in range(1, 201))
    info = analyze(f"SELECT id FROM orders WHERE user_id IN ({params}) AND status = $201")
    u = usage(info, "orders")
    assert u.eq == ["user_id", "status"]
    assert info.param_count == 201


def test_row_equality_is_split_into_columns():
    u = usage(analyze("SELECT id FROM orders WHERE (user_id, status) = ($1, $2)"), "orders")
    assert u.eq == ["user_id", "status"]


def test_equals_any_array_param_is_equality():
    u = usage(analyze("SELECT id FROM orders WHERE user_id = ANY($1) AND id = ANY(ARRAY[1, 2, 3])"), "orders")
    assert u.eq == ["user_id", "id"]


def test_optional_filter_with_or_does_not_crash_and_is_not_equality():
    info = analyze(
        "SELECT id FROM orders WHERE (user_id = $1 OR $1 IS NULL) AND ($2::text IS NULL OR status = $2) "
        "AND created_at > $3"
    )
    u = usage(info, "orders")
    assert u.eq == []
    assert u.range == ["created_at"]
    assert u.used_columns == {"id", "user_id", "status", "created_at"}


def test_predicates_under_or_are_never_constant_predicates():
    u = usage(analyze("SELECT id FROM orders WHERE deleted_at IS NULL OR status = 'x'"), "orders")
    assert u.constant_preds == []
    assert u.eq == []


def test_constant_predicates_for_partial_indexes():
    u = usage(
        analyze(
            "SELECT id FROM orders WHERE status = 'pending' AND deleted_at IS NULL AND user_id IS NOT NULL "
            "AND NOT is_paid AND total = $1"
        ),
        "orders",
    )
    assert u.constant_preds == ["status = 'pending'", "deleted_at IS NULL", "user_id IS NOT NULL", "NOT is_paid"]
    assert u.eq == ["status", "total"]


def test_bare_boolean_column_and_reversed_literal():
    u = usage(analyze("SELECT id FROM orders WHERE is_paid AND 'x''y' = status AND total = -5"), "orders")
    assert u.constant_preds == ["is_paid", "status = 'x''y'", "total = -5"]


def test_bare_non_boolean_column_is_not_a_predicate():
    u = usage(analyze("SELECT id FROM orders o WHERE o.total AND true"), "orders")
    assert u.constant_preds == []


def test_expression_equality_rendered_unqualified():
    u = usage(
        analyze(
            "SELECT id FROM visits v WHERE lower(v.page) = $1 AND date_trunc('day', v.visited_at) = $2 "
            "AND v.visited_at::date = $3 AND CAST(v.id AS text) = $4"
        ),
        "visits",
    )
    assert u.expr_eq == [
        "lower(page)",
        "date_trunc('day', visited_at)",
        "(visited_at::date)",
        "(id::text)",
    ]
    assert u.eq == []


def test_expressions_postgres_would_refuse_to_index_are_dropped():
    # date_trunc/cast of timestamptz depend on TimeZone, to_char on locale, text::date on DateStyle.
    u = usage(
        analyze(
            "SELECT id FROM orders WHERE date_trunc('day', created_at) = $1 AND created_at::date = $2 "
            "AND to_char(total, '999') = $3 AND status::date = $4 AND extract(year FROM deleted_at) = 2024 "
            "AND date_trunc('day', created_at, 'UTC') = $5 AND date_trunc('hour', created_at AT TIME ZONE 'UTC') = $6"
        ),
        "orders",
    )
    assert u.expr_eq == ["date_trunc('day', created_at, 'UTC')", "date_trunc('hour', created_at at time zone 'UTC')"]


def test_expression_keeps_original_spelling_and_quotes_identifiers():
    info = analyze("SELECT 1 FROM users WHERE UPPER( \"UserName\" ) = $1 AND COALESCE(status, 'New') = $2")
    assert usage(info, "users").expr_eq == ['upper("UserName")', "coalesce(status, 'New')"]
    assert info.functions == ["upper", "coalesce"]


def test_json_operator_expression():
    u = usage(analyze("SELECT id FROM behavior_log b WHERE b.payload->>'kind' = $1"), "behavior_log")
    assert u.expr_eq == ["(payload ->> 'kind')"]


def test_multi_column_or_parameterised_functions_are_not_expressions():
    u = usage(
        analyze(
            "SELECT id FROM orders WHERE coalesce(user_id, id) = $1 AND date_trunc($2, created_at) = $3 "
            "AND lower(status) > $4"
        ),
        "orders",
    )
    assert u.expr_eq == []


def test_functions_applied_to_columns_are_listed_once():
    info = analyze(
        "SELECT lower(email), count(*), max(created_at), now() FROM users WHERE lower(email) = $1 GROUP BY 1"
    )
    assert info.functions == ["lower", "max"]


# --------------------------------------------------------------------------
# Joins and scopes
# --------------------------------------------------------------------------


def test_join_columns_from_on_and_where(catalog):
    info = analyze(
        "SELECT u.name, o.total FROM users u JOIN orders o ON o.user_id = u.id "
        "JOIN behavior_log b ON b.user_id = u.id, orders o2 WHERE o2.id = o.id AND u.email = $1",
        catalog,
    )
    assert usage(info, "users").join == ["id"]
    assert usage(info, "orders").join == ["user_id", "id"]
    assert usage(info, "orders").aliases == {"o", "o2"}
    assert usage(info, "behavior_log").join == ["user_id"]
    assert usage(info, "users").eq == ["email"]


def test_join_using_marks_both_sides():
    info = analyze("SELECT * FROM orders JOIN behavior_log USING (user_id) WHERE behavior_log.event_type = $1")
    assert usage(info, "orders").join == ["user_id"]
    assert usage(info, "behavior_log").join == ["user_id"]
    assert usage(info, "behavior_log").eq == ["event_type"]


def test_self_join_merges_usage_into_one_table():
    info = analyze(
        "SELECT a.id FROM orders a JOIN orders b ON a.user_id = b.user_id AND a.id <> b.id "
        "WHERE a.status = $1 AND b.created_at > $2"
    )
    assert list(info.tables) == [("public", "orders")]
    u = usage(info, "orders")
    assert u.aliases == {"a", "b"}
    assert u.join == ["user_id"]
    assert u.eq == ["status"]
    assert u.range == ["created_at"]


def test_same_alias_column_comparison_is_not_a_join():
    u = usage(analyze("SELECT id FROM orders o WHERE o.id = o.user_id"), "orders")
    assert u.join == [] and u.eq == []


def test_left_join_marks_outer_side_and_ignores_preserved_side_filters_in_on():
    info = analyze(
        "SELECT * FROM users u LEFT JOIN orders o ON o.user_id = u.id AND o.status = 'open' AND u.status = 'x'"
    )
    assert usage(info, "orders").outer_side is True
    assert usage(info, "users").outer_side is False
    assert usage(info, "orders").eq == ["status"]
    assert usage(info, "orders").constant_preds == ["status = 'open'"]
    assert usage(info, "users").eq == []
    assert usage(info, "users").constant_preds == []


def test_right_and_full_joins_mark_outer_sides():
    info = analyze("SELECT * FROM users u RIGHT JOIN orders o ON o.user_id = u.id")
    assert usage(info, "users").outer_side and not usage(info, "orders").outer_side
    info = analyze("SELECT * FROM users u FULL JOIN orders o ON o.user_id = u.id AND o.status = 'x'")
    assert usage(info, "users").outer_side and usage(info, "orders").outer_side
    assert usage(info, "orders").eq == []


def test_unqualified_columns_resolved_through_the_catalog():
    info = analyze("SELECT email, total FROM users u JOIN orders o ON user_id = u.id WHERE email = $1 AND total > $2")
    assert usage(info, "users").eq == ["email"]
    assert usage(info, "orders").range == ["total"]
    assert usage(info, "orders").join == ["user_id"]


def test_ambiguous_unqualified_column_is_skipped():
    info = analyze("SELECT 1 FROM users u JOIN orders o ON o.user_id = u.id WHERE status = $1 AND created_at > $2")
    assert usage(info, "users").eq == [] and usage(info, "orders").eq == []
    assert usage(info, "users").range == [] and usage(info, "orders").range == []


def test_table_name_as_qualifier_and_schema_qualified_column():
    info = analyze("SELECT orders.id FROM public.orders WHERE public.orders.user_id = $1 AND orders.status = $2")
    assert usage(info, "orders").eq == ["user_id", "status"]


def test_cte_name_is_not_a_table_and_cte_body_is_walked(catalog):
    info = analyze(
        "WITH recent AS (SELECT user_id, total FROM orders WHERE created_at > $1) "
        "SELECT u.email, r.total FROM users u JOIN recent r ON r.user_id = u.id WHERE u.status = $2",
        catalog,
    )
    assert set(info.tables) == {("public", "orders"), ("public", "users")}
    assert ("resolve_table", None, "recent") not in catalog.calls
    assert usage(info, "orders").range == ["created_at"]
    assert usage(info, "users").join == ["id"]
    assert usage(info, "users").eq == ["status"]


def test_cte_shadows_a_real_table_of_the_same_name():
    info = analyze("WITH users AS (SELECT user_id AS id FROM orders) SELECT id FROM users WHERE id = $1")
    assert list(info.tables) == [("public", "orders")]
    assert usage(info, "orders").used_columns == {"user_id"}


def test_recursive_cte():
    info = analyze(
        "WITH RECURSIVE r AS (SELECT id FROM users WHERE id = $1 "
        "UNION ALL SELECT o.id FROM orders o JOIN r ON o.user_id = r.id) SELECT * FROM r"
    )
    assert usage(info, "users").eq == ["id"]
    assert usage(info, "orders").join == ["user_id"]


def test_derived_table_alias_is_not_a_table():
    info = analyze(
        "SELECT d.s FROM (SELECT status AS s, user_id FROM orders WHERE total > $1) AS d "
        "JOIN users u ON u.id = d.user_id WHERE d.s = $2"
    )
    assert set(info.tables) == {("public", "orders"), ("public", "users")}
    assert usage(info, "orders").range == ["total"]
    assert usage(info, "users").join == ["id"]


def test_correlated_exists_subquery_is_a_join():
    info = analyze(
        "SELECT u.id FROM users u WHERE EXISTS "
        "(SELECT 1 FROM orders o WHERE o.user_id = u.id AND o.status = $1)"
    )
    assert usage(info, "orders").join == ["user_id"]
    assert usage(info, "orders").eq == ["status"]
    assert usage(info, "users").join == ["id"]


def test_in_subquery_joins_both_columns():
    info = analyze("SELECT id FROM users WHERE id IN (SELECT user_id FROM orders WHERE status = $1)")
    assert usage(info, "users").join == ["id"]
    assert usage(info, "orders").join == ["user_id"]
    assert usage(info, "orders").eq == ["status"]


def test_lateral_subquery_with_order_and_limit():
    info = analyze(
        "SELECT u.id, last.total FROM users u JOIN LATERAL "
        "(SELECT o.total FROM orders o WHERE o.user_id = u.id ORDER BY o.created_at DESC LIMIT 1) last ON true"
    )
    u = usage(info, "orders")
    assert u.join == ["user_id"]
    assert u.order_by == [("created_at", "DESC")]
    assert info.has_limit


def test_union_branches_are_both_analysed():
    info = analyze("SELECT id FROM orders WHERE user_id = $1 UNION ALL SELECT id FROM users WHERE email = $2 LIMIT 5")
    assert usage(info, "orders").eq == ["user_id"]
    assert usage(info, "users").eq == ["email"]
    assert info.has_limit


def test_scalar_subquery_counts_as_a_value():
    info = analyze("SELECT id FROM orders WHERE user_id = (SELECT id FROM users WHERE email = $1)")
    assert usage(info, "orders").eq == ["user_id"]
    assert usage(info, "users").eq == ["email"]


# --------------------------------------------------------------------------
# Identifiers
# --------------------------------------------------------------------------


def test_quoted_mixed_case_and_non_ascii():
    info = analyze('SELECT b."Kunde" FROM shop."Bestellungen" b WHERE b.größe > $1 AND "Kunde" = $2')
    u = usage(info, "Bestellungen", "shop")
    assert u.eq == ["Kunde"]
    assert u.range == ["größe"]
    assert u.used_columns == {"Kunde", "größe"}


def test_unquoted_identifiers_fold_to_lower_case():
    info = analyze("SELECT ID FROM Public.Orders O WHERE o.User_Id = $1")
    assert usage(info, "orders").eq == ["user_id"]
    assert usage(info, "orders").aliases == {"o"}


def test_quoted_mixed_case_column_is_distinct_from_folded_name():
    u = usage(analyze('SELECT id FROM users WHERE "UserName" = $1 AND username = $2'), "users")
    assert u.eq == ["UserName"]


def test_unquoted_non_ascii_is_not_case_folded():
    # In a UTF-8 database PostgreSQL folds only ASCII letters: Ärger stays Ärger.
    assert fold_identifier("Ärger") == "Ärger"
    assert fold_identifier("OrDers") == "orders"
    info = analyze("SELECT id FROM shop.Ärger WHERE Grund = $1")
    assert list(info.tables) == [("shop", "Ärger")]
    assert usage(info, "Ärger", "shop").eq == []  # "Grund" folds to grund, which does not exist


def test_quoted_reserved_words_as_column_names():
    info = analyze('SELECT w."order", "select" FROM words w WHERE "interval" > $1 AND w."order" = $2 ORDER BY w."order"')
    u = usage(info, "words")
    assert u.range == ["interval"]
    assert u.eq == ["order"]
    assert u.order_by == [("order", "ASC")]


def test_schema_qualified_table_in_non_public_schema(catalog):
    analyze('SELECT id FROM shop."Bestellungen" WHERE id = $1', catalog)
    assert ("resolve_table", "shop", "Bestellungen") in catalog.calls


# --------------------------------------------------------------------------
# ORDER BY, GROUP BY, used columns
# --------------------------------------------------------------------------


def test_order_by_only_when_every_item_is_a_plain_column_of_one_table():
    assert usage(analyze("SELECT id FROM orders ORDER BY lower(status), id"), "orders").order_by == []
    info = analyze("SELECT o.id FROM orders o JOIN users u ON u.id = o.user_id ORDER BY o.created_at, u.email")
    assert usage(info, "orders").order_by == [] and usage(info, "users").order_by == []


def test_order_by_ordinal_alias_and_nulls():
    u = usage(
        analyze("SELECT created_at AS c, id FROM orders ORDER BY c DESC NULLS LAST, 2 NULLS FIRST LIMIT 3"),
        "orders",
    )
    assert u.order_by == [("created_at", "DESC NULLS LAST"), ("id", "ASC NULLS FIRST")]


def test_order_by_output_alias_of_an_expression_is_not_a_column():
    u = usage(analyze("SELECT lower(email) AS email FROM users ORDER BY email"), "users")
    assert u.order_by == []


def test_group_by_columns():
    info = analyze("SELECT user_id, status, count(*) FROM orders WHERE created_at > $1 GROUP BY user_id, 2")
    assert usage(info, "orders").group_by == ["user_id", "status"]
    assert info.has_limit is False


def test_select_star_means_all_columns():
    info = analyze("SELECT * FROM orders o JOIN users u ON u.id = o.user_id")
    assert usage(info, "orders").used_columns is None
    assert usage(info, "users").used_columns is None


def test_table_star_means_all_columns_of_that_table_only():
    info = analyze("SELECT o.*, u.email FROM orders o JOIN users u ON u.id = o.user_id")
    assert usage(info, "orders").used_columns is None
    assert usage(info, "users").used_columns == {"email", "id"}


def test_count_star_does_not_mean_all_columns():
    assert usage(analyze("SELECT count(*) FROM orders WHERE user_id = $1"), "orders").used_columns == {"user_id"}


def test_system_columns_are_ignored():
    u = usage(analyze("SELECT ctid, id FROM orders WHERE xmin = $1"), "orders")
    assert u.used_columns == {"id"}
    assert u.eq == []


# --------------------------------------------------------------------------
# UPDATE, DELETE, INSERT ... SELECT
# --------------------------------------------------------------------------


def test_update_set_where_with_from_join():
    info = analyze("UPDATE orders o SET total = u.id, status = $1 FROM users u WHERE u.id = o.user_id AND u.email = $2")
    assert info.kind == "update"
    o = usage(info, "orders")
    assert o.eq == []  # SET assignments are not predicates
    assert o.join == ["user_id"]
    assert o.used_columns == {"user_id"}
    assert usage(info, "users").eq == ["email"]
    assert usage(info, "users").join == ["id"]


def test_delete_with_using_join():
    info = analyze("DELETE FROM orders o USING users u WHERE u.id = o.user_id AND u.status = $1 RETURNING o.id")
    assert info.kind == "delete"
    assert usage(info, "orders").join == ["user_id"]
    assert usage(info, "orders").used_columns == {"user_id", "id"}
    assert usage(info, "users").eq == ["status"]


def test_delete_where_only():
    info = analyze("DELETE FROM behavior_log WHERE created_at < now() - interval $1")
    assert usage(info, "behavior_log").range == ["created_at"]


def test_insert_select_analyses_the_select_part_only():
    info = analyze("INSERT INTO orders (id, user_id) SELECT id, $1 FROM users WHERE email = $2")
    assert info.kind == "insert"
    assert list(info.tables) == [("public", "users")]
    assert usage(info, "users").eq == ["email"]


def test_data_modifying_cte():
    info = analyze(
        "WITH gone AS (DELETE FROM orders WHERE deleted_at < $1 RETURNING user_id) "
        "SELECT count(*) FROM gone JOIN users u ON u.id = gone.user_id"
    )
    assert usage(info, "orders").range == ["deleted_at"]
    assert usage(info, "users").join == ["id"]


def test_with_before_insert():
    info = analyze(
        "WITH src AS (SELECT id FROM users WHERE status = $1) INSERT INTO orders (user_id) SELECT id FROM src"
    )
    assert usage(info, "users").eq == ["status"]
