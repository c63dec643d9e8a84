"""Issue 7, item 7: a corpus of statements in real pg_stat_statements form, read by the audit.

Every statement runs for real, with literal values, so that pg_stat_statements records it
exactly as PostgreSQL normalises it (`1200+11` → `$1+$2`, `'{1,2}'::int[]` → `$1::int[]`,
`interval '7 days'` → `interval $1` ...).  Then one audit reads them all, and each statement
must end as expected: analysed, or skipped for a reason that is true of it (utility, ddl,
no_tables, catalog, a table dropped since, INSERT ... VALUES).  Never parse_error, never a
parameter-typing failure (parameter_type, unknown_function, plan_error).
"""

from __future__ import annotations

import collections

A = "analyzed"

SCHEMA = [
    "CREATE SCHEMA corpus",
    """CREATE TABLE corpus.customers (
        id bigint PRIMARY KEY, name text NOT NULL, email text NOT NULL, region text, created_at timestamptz,
        tags text[], profile jsonb, balance numeric(12,2), "order" int, "select" text, "user" text)""",
    """CREATE TABLE corpus.orders (
        id bigint PRIMARY KEY, customer_id bigint NOT NULL, status text NOT NULL, total numeric(12,2),
        placed_at timestamptz, ship_date date, note text, items jsonb, qty int)""",
    """CREATE TABLE corpus."Mixed Case" ("Id" int PRIMARY KEY, "Value" text, "CreatedAt" timestamp)""",
    """CREATE TABLE corpus.größe (id int PRIMARY KEY, länge numeric, "Straße" text, "ÄRGER" int)""",
    """CREATE TABLE corpus.documents (id bigint PRIMARY KEY, title text, body text, tsv tsvector,
        lang regconfig DEFAULT 'english')""",
    """CREATE TABLE corpus.events (id bigint PRIMARY KEY, customer_id bigint, kind text, payload jsonb,
        at timestamp, ip inet, duration interval)""",
    """CREATE TABLE corpus.jobs (id bigint PRIMARY KEY, status text, run_at timestamptz, locked_by text,
        attempts int)""",
    "CREATE TABLE corpus.tree (id int PRIMARY KEY, parent_id int, label text)",
    "CREATE TABLE corpus.stock (sku text PRIMARY KEY, qty int, updated_at timestamptz)",
    "CREATE TABLE corpus.gone (id int, k int)",
    """INSERT INTO corpus.customers SELECT g, 'name ' || g, 'user' || g || '@example.com',
        (ARRAY['eu','us','apac'])[1 + g % 3], now() - (g % 900) * interval '1 day',
        ARRAY['t' || g % 10, 't' || g % 7], jsonb_build_object('city', 'c' || g % 50, 'vip', g % 20 = 0,
        'address', jsonb_build_object('zip', (10000 + g % 500)::text)), g % 1000, g % 100, 's' || g % 10,
        'u' || g % 30 FROM generate_series(1, 5000) g""",
    """INSERT INTO corpus.orders SELECT g, 1 + g % 5000, (ARRAY['new','paid','shipped','cancelled'])[1 + g % 4],
        (g % 997) * 1.5, now() - (g % 700) * interval '1 hour', current_date - g % 400,
        CASE WHEN g % 10 = 0 THEN 'gift' END, jsonb_build_array(jsonb_build_object('sku', 'a' || g % 40)),
        1 + g % 9 FROM generate_series(1, 30000) g""",
    """INSERT INTO corpus."Mixed Case" SELECT g, 'v' || g % 100, now() - g * interval '1 minute'
        FROM generate_series(1, 2000) g""",
    "INSERT INTO corpus.größe SELECT g, g % 50, 'Straße ' || g % 70, g % 5 FROM generate_series(1, 2000) g",
    """INSERT INTO corpus.documents SELECT g, 'title ' || g, 'the quick brown fox ' || g % 77 || ' jumps',
        to_tsvector('english', 'the quick brown fox ' || g % 77 || ' jumps') FROM generate_series(1, 3000) g""",
    """INSERT INTO corpus.events SELECT g, 1 + g % 5000, (ARRAY['view','click','buy'])[1 + g % 3],
        jsonb_build_object('page', '/p/' || g % 100, 'ms', g % 1000), now()::timestamp - g * interval '1 minute',
        ('10.0.' || g % 256 || '.' || g % 200)::inet, (g % 300) * interval '1 second'
        FROM generate_series(1, 30000) g""",
    """INSERT INTO corpus.jobs SELECT g, (ARRAY['queued','running','done'])[1 + g % 3],
        now() + (g % 100) * interval '1 minute', NULL, g % 4 FROM generate_series(1, 5000) g""",
    "INSERT INTO corpus.tree SELECT g, CASE WHEN g > 1 THEN g / 2 END, 'node ' || g FROM generate_series(1, 2000) g",
    "INSERT INTO corpus.stock SELECT 'a' || g, g % 50, now() FROM generate_series(1, 1000) g",
    "INSERT INTO corpus.gone SELECT g, g % 10 FROM generate_series(1, 1000) g",
    "ANALYZE corpus.customers, corpus.orders, corpus.\"Mixed Case\", corpus.größe, corpus.documents,"
    " corpus.events, corpus.jobs, corpus.tree, corpus.stock, corpus.gone",
]

# (statement as the application runs it, expected outcome)
CORPUS: list[tuple[str, str]] = [
    # -- arithmetic between constants: pg_stat_statements writes `$1+$2` without spaces
    ("SELECT id FROM corpus.orders WHERE customer_id = 1200+11", A),
    ("SELECT id FROM corpus.orders WHERE customer_id = 1300-11", A),
    ("SELECT id FROM corpus.orders WHERE customer_id = 30*41", A),
    ("SELECT id FROM corpus.orders WHERE customer_id = 2400/2", A),
    ("SELECT id FROM corpus.orders WHERE customer_id = 2401%1000", A),
    ("SELECT id, total FROM corpus.orders WHERE total > 10*10+5 AND qty < 3", A),
    ("SELECT id FROM corpus.orders WHERE total BETWEEN 100-1 AND 200+1", A),
    ("SELECT id, total * 2 + 1 FROM corpus.orders WHERE customer_id = 77", A),
    ("SELECT sum(total) / 100.0 * 3 FROM corpus.orders WHERE status = 'paid'", A),
    ("SELECT id FROM corpus.orders WHERE qty = 2^3", A),
    # -- arrays, ANY, casts
    ("SELECT id FROM corpus.orders WHERE customer_id = ANY(ARRAY[5,6,7]::int[])", A),
    ("SELECT id FROM corpus.orders WHERE customer_id = ANY('{1,2,3}'::bigint[])", A),
    ("SELECT id FROM corpus.orders WHERE customer_id = ANY(ARRAY[8,9])", A),
    ("SELECT id FROM corpus.orders WHERE customer_id IN (10, 11, 12, 13)", A),
    ("SELECT id FROM corpus.orders WHERE customer_id NOT IN (1, 2)", A),
    ("SELECT id FROM corpus.orders WHERE status <> ALL(ARRAY['new','cancelled'])", A),
    ("SELECT id FROM corpus.customers WHERE tags && ARRAY['t1','t2']", A),
    ("SELECT id FROM corpus.customers WHERE tags @> '{t3}'", A),
    ("SELECT id FROM corpus.customers WHERE 't4' = ANY(tags)", A),
    ("SELECT id, cardinality(tags) FROM corpus.customers WHERE region = 'eu'", A),
    ("SELECT c.id, t FROM corpus.customers c, unnest(c.tags) t WHERE c.id < 50", A),
    ("SELECT id FROM corpus.orders WHERE customer_id::text = '42'", A),
    ("SELECT CAST(total AS int) FROM corpus.orders WHERE id = 5", A),
    ("SELECT id FROM corpus.orders WHERE ship_date = '2024-01-01'::date + 30", A),
    ("SELECT id FROM corpus.orders WHERE ship_date > current_date - 7", A),
    ("SELECT id FROM corpus.orders WHERE ship_date BETWEEN '2024-01-01'::date AND '2024-01-01'::date + 10", A),
    # -- jsonb
    ("SELECT id FROM corpus.customers WHERE profile->>'city' = 'c7'", A),
    ("SELECT id, profile->'address'->>'zip' FROM corpus.customers WHERE id = 9", A),
    ("SELECT id FROM corpus.customers WHERE profile @> '{\"vip\": true}'", A),
    ("SELECT id FROM corpus.customers WHERE profile ? 'vip'", A),
    ("SELECT id FROM corpus.customers WHERE profile ?| array['vip','x']", A),
    ("SELECT id FROM corpus.customers WHERE profile ?& array['vip','city']", A),
    ("SELECT id FROM corpus.customers WHERE profile #>> '{address,zip}' = '10010'", A),
    ("SELECT id FROM corpus.orders WHERE items @> '[{\"sku\": \"a5\"}]'", A),
    ("SELECT id FROM corpus.events WHERE (payload->>'ms')::int > 900", A),
    ("SELECT kind, count(*) FROM corpus.events WHERE payload->>'page' = '/p/3' GROUP BY kind", A),
    ("SELECT id FROM corpus.customers WHERE jsonb_path_exists(profile, '$.address.zip')", A),
    ("SELECT jsonb_agg(id) FROM corpus.orders WHERE customer_id = 3", A),
    # -- full-text search
    ("SELECT id FROM corpus.documents WHERE tsv @@ to_tsquery('english', 'fox & jumps')", A),
    ("SELECT id FROM corpus.documents WHERE to_tsvector('english', body) @@ plainto_tsquery('english', 'brown fox')",
     A),
    ("SELECT id FROM corpus.documents WHERE tsv @@ websearch_to_tsquery('english', 'quick -slow')", A),
    ("SELECT id, ts_rank(tsv, q) AS r FROM corpus.documents, to_tsquery('fox') q WHERE tsv @@ q"
     " ORDER BY r DESC LIMIT 10", A),
    ("SELECT id FROM corpus.documents WHERE title ILIKE '%title 1%'", A),
    # -- pattern matching, collation
    ("SELECT id FROM corpus.customers WHERE email LIKE 'user1%'", A),
    ("SELECT id FROM corpus.customers WHERE email ILIKE 'USER2%'", A),
    ("SELECT id FROM corpus.customers WHERE email ~ '^user3[0-9]+@'", A),
    ("SELECT id FROM corpus.customers WHERE email ~* '^USER4'", A),
    ("SELECT id FROM corpus.customers WHERE email !~ 'example'", A),
    ("SELECT id FROM corpus.customers WHERE email SIMILAR TO 'user5%'", A),
    ("SELECT id FROM corpus.customers WHERE name COLLATE \"C\" = 'name 5'", A),
    ("SELECT id FROM corpus.customers ORDER BY name COLLATE \"C\" LIMIT 5", A),
    ("SELECT id FROM corpus.customers WHERE lower(email) = 'user6@example.com'", A),
    ("SELECT id FROM corpus.customers WHERE upper(name) LIKE 'NAME 7%'", A),
    ("SELECT id FROM corpus.customers WHERE email NOT LIKE '%@example.com'", A),
    ("SELECT substring(email from 1 for 5), position('@' in email) FROM corpus.customers WHERE id = 8", A),
    ("SELECT trim(both ' ' from name) || '!' FROM corpus.customers WHERE id = 10", A),
    # -- comparisons
    ("SELECT id FROM corpus.orders WHERE note IS DISTINCT FROM 'gift'", A),
    ("SELECT id FROM corpus.orders WHERE note IS NOT DISTINCT FROM 'gift'", A),
    ("SELECT id FROM corpus.orders WHERE total BETWEEN SYMMETRIC 500 AND 100", A),
    ("SELECT id FROM corpus.orders WHERE total NOT BETWEEN 1 AND 1000", A),
    ("SELECT id FROM corpus.orders WHERE note IS NULL AND status = 'new'", A),
    ("SELECT id FROM corpus.orders WHERE note IS NOT NULL", A),
    ("SELECT id FROM corpus.orders WHERE (customer_id, id) > (100, 5) ORDER BY customer_id, id LIMIT 20", A),
    ("SELECT id FROM corpus.orders WHERE coalesce(note, 'none') = 'none' AND qty = 4", A),
    ("SELECT id FROM corpus.orders WHERE nullif(qty, 0) > 3", A),
    ("SELECT greatest(total, 10), least(qty, 2) FROM corpus.orders WHERE id = 11", A),
    ("SELECT id FROM corpus.orders WHERE status = 'paid' AND total > 900 OR status = 'new'", A),
    ("SELECT id FROM corpus.orders WHERE NOT (status = 'paid')", A),
    ("SELECT id, CASE WHEN total > 100 THEN 'big' WHEN total > 10 THEN 'mid' ELSE 'small' END"
     " FROM corpus.orders WHERE customer_id = 12", A),
    ("SELECT sum(CASE WHEN status = 'paid' THEN 1 ELSE 0 END) FROM corpus.orders WHERE customer_id = 13", A),
    # -- time
    ("SELECT id FROM corpus.orders WHERE placed_at > now() - interval '7 days'", A),
    ("SELECT id FROM corpus.orders WHERE placed_at >= '2024-01-01' AND placed_at < '2024-02-01'", A),
    ("SELECT id FROM corpus.orders WHERE placed_at > now() - '3 hours'::interval AND qty = 2", A),
    ("SELECT id FROM corpus.orders WHERE EXTRACT(year FROM placed_at) = 2024", A),
    ("SELECT EXTRACT(dow FROM placed_at), count(*) FROM corpus.orders GROUP BY 1", A),
    ("SELECT date_trunc('day', placed_at) d, count(*) FROM corpus.orders WHERE placed_at > now() - interval '2 days'"
     " GROUP BY d ORDER BY d", A),
    ("SELECT id FROM corpus.orders WHERE date_part('month', placed_at) = 3", A),
    ("SELECT to_char(placed_at, 'YYYY-MM') FROM corpus.orders WHERE id = 14", A),
    ("SELECT id FROM corpus.events WHERE at AT TIME ZONE 'UTC' > '2024-01-01'", A),
    ("SELECT id FROM corpus.events WHERE duration > interval '2 minutes'", A),
    ("SELECT id FROM corpus.events WHERE at > localtimestamp - interval '1 hour' AND kind = 'buy'", A),
    ("SELECT age(now(), created_at) FROM corpus.customers WHERE id = 15", A),
    ("SELECT id FROM corpus.orders WHERE placed_at::date = current_date", A),
    ("SELECT id FROM corpus.events WHERE ip << '10.0.0.0/16'::inet", A),
    # -- joins
    ("SELECT o.id, c.name FROM corpus.orders o JOIN corpus.customers c ON c.id = o.customer_id WHERE c.region = 'us'",
     A),
    ("SELECT o.id FROM corpus.orders o LEFT JOIN corpus.customers c ON c.id = o.customer_id WHERE c.id IS NULL", A),
    ("SELECT c.id FROM corpus.customers c RIGHT JOIN corpus.orders o ON o.customer_id = c.id WHERE o.qty = 9", A),
    ("SELECT c.id, o.id FROM corpus.customers c FULL JOIN corpus.orders o ON o.customer_id = c.id WHERE o.id = 3",
     A),
    ("SELECT c.id FROM corpus.customers c JOIN corpus.orders o USING (id) WHERE o.status = 'new'", A),
    ("SELECT c.id FROM corpus.customers c NATURAL JOIN corpus.jobs j WHERE j.attempts = 2", A),
    ("SELECT c.id FROM corpus.customers c CROSS JOIN corpus.stock s WHERE s.sku = 'a1' AND c.id = 3", A),
    ("SELECT c.id, o.id FROM corpus.customers c, corpus.orders o WHERE o.customer_id = c.id AND c.email = 'x'", A),
    ("SELECT o.status FROM corpus.orders o JOIN corpus.customers c USING (id) AS j WHERE j.id = 5", A),
    ("SELECT c.id, last.id FROM corpus.customers c, LATERAL (SELECT id FROM corpus.orders o"
     " WHERE o.customer_id = c.id ORDER BY placed_at DESC LIMIT 3) last WHERE c.region = 'apac'", A),
    ("SELECT c.id, x.n FROM corpus.customers c LEFT JOIN LATERAL (SELECT count(*) n FROM corpus.events e"
     " WHERE e.customer_id = c.id) x ON true WHERE c.id < 100", A),
    ("SELECT g, o.id FROM generate_series(1, 5) g JOIN corpus.orders o ON o.customer_id = g", A),
    ("SELECT d, count(o.id) FROM generate_series('2024-01-01'::date, '2024-01-31'::date, '1 day') d"
     " LEFT JOIN corpus.orders o ON o.ship_date = d GROUP BY d", A),
    ("SELECT v.x, o.id FROM (VALUES (1), (2), (3)) v(x) JOIN corpus.orders o ON o.customer_id = v.x", A),
    ("SELECT o.id FROM corpus.orders o JOIN (VALUES ('paid', 1), ('new', 2)) s(st, w) ON s.st = o.status"
     " WHERE o.customer_id = 4", A),
    ("SELECT o.id FROM ONLY corpus.orders o WHERE o.id = 16", A),
    ("SELECT o.id FROM corpus.orders o TABLESAMPLE SYSTEM (10) WHERE o.qty = 1", A),
    ("SELECT o.id FROM corpus.orders o WHERE o.qty = 3 OPERATOR(pg_catalog.+) 4 AND o.status = 'x'", A),
    ("SELECT collation for (o.status) FROM corpus.orders o WHERE o.customer_id = 44", A),
    # -- subqueries
    ("SELECT id FROM corpus.customers c WHERE EXISTS (SELECT 1 FROM corpus.orders o WHERE o.customer_id = c.id"
     " AND o.status = 'cancelled')", A),
    ("SELECT id FROM corpus.customers c WHERE NOT EXISTS (SELECT 1 FROM corpus.orders o"
     " WHERE o.customer_id = c.id)", A),
    ("SELECT id FROM corpus.customers WHERE id IN (SELECT customer_id FROM corpus.orders WHERE total > 1400)", A),
    ("SELECT id, (SELECT max(total) FROM corpus.orders o WHERE o.customer_id = c.id) FROM corpus.customers c"
     " WHERE c.region = 'eu' LIMIT 10", A),
    ("SELECT * FROM (SELECT customer_id, sum(total) s FROM corpus.orders GROUP BY customer_id) t WHERE s > 1000", A),
    ("SELECT id FROM corpus.orders WHERE total > (SELECT avg(total) FROM corpus.orders) AND qty = 5", A),
    ("SELECT id FROM corpus.orders WHERE total > ALL (SELECT total FROM corpus.orders WHERE customer_id = 2)", A),
    # -- aggregation
    ("SELECT status, count(*) FROM corpus.orders GROUP BY status HAVING count(*) > 10", A),
    ("SELECT region, status, sum(total) FROM corpus.orders o JOIN corpus.customers c ON c.id = o.customer_id"
     " GROUP BY GROUPING SETS ((region), (status), ())", A),
    ("SELECT status, qty, count(*) FROM corpus.orders GROUP BY ROLLUP (status, qty)", A),
    ("SELECT status, qty, count(*) FROM corpus.orders GROUP BY CUBE (status, qty, ship_date)", A),
    ("SELECT count(*) FILTER (WHERE status = 'paid'), count(*) FILTER (WHERE qty > 5) FROM corpus.orders"
     " WHERE customer_id = 17", A),
    ("SELECT DISTINCT ON (customer_id) customer_id, id FROM corpus.orders ORDER BY customer_id, placed_at DESC", A),
    ("SELECT DISTINCT status FROM corpus.orders WHERE customer_id = 18", A),
    ("SELECT count(DISTINCT customer_id) FROM corpus.orders WHERE status = 'shipped'", A),
    ("SELECT string_agg(status, ',' ORDER BY id) FROM corpus.orders WHERE customer_id = 19", A),
    ("SELECT array_agg(id ORDER BY total DESC) FILTER (WHERE total > 50) FROM corpus.orders WHERE customer_id = 20",
     A),
    ("SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY total) FROM corpus.orders WHERE status = 'new'", A),
    ("SELECT mode() WITHIN GROUP (ORDER BY qty) FROM corpus.orders WHERE customer_id = 21", A),
    ("SELECT bool_or(note IS NOT NULL), every(qty > 0) FROM corpus.orders WHERE customer_id = 22", A),
    # -- window functions
    ("SELECT id, row_number() OVER (PARTITION BY customer_id ORDER BY placed_at) FROM corpus.orders"
     " WHERE customer_id = 23", A),
    ("SELECT id, sum(total) OVER (ORDER BY placed_at ROWS BETWEEN 2 PRECEDING AND CURRENT ROW)"
     " FROM corpus.orders WHERE customer_id = 24", A),
    ("SELECT id, lag(total, 1) OVER w, lead(total) OVER w FROM corpus.orders WHERE customer_id = 25"
     " WINDOW w AS (ORDER BY id)", A),
    ("SELECT * FROM (SELECT id, rank() OVER (PARTITION BY status ORDER BY total DESC) r FROM corpus.orders) t"
     " WHERE r <= 3", A),
    ("SELECT id, ntile(4) OVER (ORDER BY total), percent_rank() OVER (ORDER BY total) FROM corpus.orders"
     " WHERE status = 'paid' AND qty = 7", A),
    ("SELECT id, first_value(id) OVER (PARTITION BY customer_id ORDER BY total RANGE BETWEEN UNBOUNDED PRECEDING"
     " AND UNBOUNDED FOLLOWING) FROM corpus.orders WHERE customer_id = 26", A),
    # -- CTEs
    ("WITH recent AS (SELECT * FROM corpus.orders WHERE placed_at > now() - interval '1 day')"
     " SELECT customer_id, count(*) FROM recent GROUP BY customer_id", A),
    ("WITH x AS MATERIALIZED (SELECT id FROM corpus.orders WHERE status = 'new') SELECT count(*) FROM x", A),
    ("WITH x AS NOT MATERIALIZED (SELECT id, customer_id FROM corpus.orders) SELECT id FROM x"
     " WHERE customer_id = 27", A),
    ("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5)"
     " SELECT o.* FROM corpus.orders o JOIN r ON o.customer_id = r.n", A),
    ("WITH RECURSIVE sub AS (SELECT id, parent_id, label FROM corpus.tree WHERE id = 7 UNION ALL"
     " SELECT t.id, t.parent_id, t.label FROM corpus.tree t JOIN sub ON t.parent_id = sub.id) SELECT * FROM sub",
     A),
    ("WITH RECURSIVE up(id, parent_id, depth) AS (SELECT id, parent_id, 0 FROM corpus.tree WHERE id = 1500"
     " UNION ALL SELECT t.id, t.parent_id, depth + 1 FROM corpus.tree t JOIN up ON t.id = up.parent_id)"
     " SELECT max(depth) FROM up", A),
    ("WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t WHERE n < 3) SEARCH DEPTH FIRST BY n SET ord"
     " SELECT c.id FROM t JOIN corpus.customers c ON c.id = t.n", A),
    ("WITH moved AS (DELETE FROM corpus.jobs WHERE status = 'done' AND attempts = 9 RETURNING *)"
     " SELECT count(*) FROM moved", A),
    # -- set operations, ordering, limits
    ("SELECT id FROM corpus.orders WHERE status = 'new' UNION SELECT id FROM corpus.orders WHERE qty = 8", A),
    ("SELECT customer_id FROM corpus.orders WHERE qty = 1 INTERSECT SELECT id FROM corpus.customers"
     " WHERE region = 'us'", A),
    ("SELECT id FROM corpus.customers EXCEPT SELECT customer_id FROM corpus.orders", A),
    ("SELECT id FROM corpus.orders WHERE status = 'paid' ORDER BY placed_at DESC NULLS LAST LIMIT 10 OFFSET 20", A),
    ("SELECT id FROM corpus.orders ORDER BY total DESC FETCH FIRST 5 ROWS WITH TIES", A),
    ("SELECT id FROM corpus.orders WHERE customer_id = 28 ORDER BY 1 LIMIT ALL", A),
    ("TABLE corpus.stock", A),
    # -- locking reads
    ("SELECT id FROM corpus.jobs WHERE status = 'queued' ORDER BY run_at LIMIT 1 FOR UPDATE SKIP LOCKED", A),
    ("SELECT id FROM corpus.jobs WHERE id = 29 FOR NO KEY UPDATE NOWAIT", A),
    ("SELECT id FROM corpus.jobs WHERE status = 'running' FOR SHARE", A),
    ("SELECT j.id FROM corpus.jobs j JOIN corpus.customers c ON c.id = j.id WHERE j.attempts = 3"
     " FOR KEY SHARE OF j SKIP LOCKED", A),
    # -- writes
    ("UPDATE corpus.jobs SET locked_by = 'w1', attempts = attempts + 1 WHERE id = (SELECT id FROM corpus.jobs"
     " WHERE status = 'queued' ORDER BY run_at LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING id", A),
    ("UPDATE corpus.orders SET status = 'shipped' WHERE id = 30", A),
    ("UPDATE corpus.orders o SET note = c.name FROM corpus.customers c WHERE c.id = o.customer_id AND o.id = 31", A),
    ("UPDATE corpus.orders SET total = total * 1.1 + 2 WHERE customer_id = 32 AND status = 'new'", A),
    ("UPDATE corpus.stock SET qty = qty - 1, updated_at = now() WHERE sku = 'a2' AND qty > 0", A),
    ("DELETE FROM corpus.events WHERE at < '2000-01-01'", A),
    ("DELETE FROM corpus.orders o USING corpus.customers c WHERE c.id = o.customer_id AND c.email = 'nobody'", A),
    ("DELETE FROM corpus.jobs WHERE id IN (SELECT id FROM corpus.jobs WHERE status = 'done' LIMIT 1)"
     " RETURNING id", A),
    ("INSERT INTO corpus.stock (sku, qty, updated_at) VALUES ('zz1', 5, now())"
     " ON CONFLICT (sku) DO UPDATE SET qty = corpus.stock.qty + excluded.qty", "not_supported"),
    ("INSERT INTO corpus.stock (sku, qty) VALUES ('zz2', 1) ON CONFLICT DO NOTHING", "not_supported"),
    ("INSERT INTO corpus.stock (sku, qty) VALUES ('zz3', 1), ('zz4', 2)", "not_supported"),
    ("INSERT INTO corpus.stock (sku, qty, updated_at) SELECT 'n' || id, qty, now() FROM corpus.orders"
     " WHERE customer_id = 33 ON CONFLICT (sku) DO UPDATE SET qty = excluded.qty", A),
    ("INSERT INTO corpus.tree (id, parent_id, label) SELECT id + 100000, 1, 'copy' FROM corpus.tree"
     " WHERE label = 'node 5' RETURNING id", A),
    ("MERGE INTO corpus.stock s USING (SELECT 'a' || customer_id AS sku, qty FROM corpus.orders WHERE id = 34) o"
     " ON s.sku = o.sku WHEN MATCHED THEN UPDATE SET qty = s.qty + o.qty"
     " WHEN NOT MATCHED THEN INSERT (sku, qty) VALUES (o.sku, o.qty)", A),
    ("MERGE INTO corpus.customers c USING corpus.orders o ON o.customer_id = c.id AND o.id = 35"
     " WHEN MATCHED AND o.total > 100 THEN UPDATE SET balance = c.balance + o.total"
     " WHEN MATCHED THEN DO NOTHING", A),
    ("MERGE INTO corpus.jobs j USING (VALUES (36, 'queued')) v(id, st) ON j.id = v.id"
     " WHEN MATCHED THEN DELETE WHEN NOT MATCHED THEN INSERT (id, status) VALUES (v.id, v.st)", A),
    # -- quoted, mixed-case, non-ASCII and reserved-word names
    ("SELECT \"Id\", \"Value\" FROM corpus.\"Mixed Case\" WHERE \"Value\" = 'v7'", A),
    ("SELECT m.\"Id\" FROM corpus.\"Mixed Case\" m WHERE m.\"CreatedAt\" > now() - interval '1 hour'"
     " ORDER BY m.\"CreatedAt\" DESC", A),
    ("SELECT id FROM corpus.größe WHERE länge > 40", A),
    ("SELECT \"Straße\", count(*) FROM corpus.größe WHERE \"ÄRGER\" = 3 GROUP BY \"Straße\"", A),
    ("SELECT g.id FROM corpus.größe g JOIN corpus.\"Mixed Case\" m ON m.\"Id\" = g.id WHERE g.länge = 7", A),
    ("SELECT id FROM corpus.customers WHERE \"order\" = 42", A),
    ("SELECT id FROM corpus.customers WHERE \"select\" = 's3' ORDER BY \"order\"", A),
    ("SELECT \"user\", count(*) FROM corpus.customers WHERE \"user\" LIKE 'u1%' GROUP BY \"user\"", A),
    ("SELECT c.\"order\" + 1 FROM corpus.customers c WHERE c.\"user\" = 'u2'", A),
    # -- misc expressions
    ("SELECT id FROM corpus.orders WHERE md5(note) = 'x'", A),
    ("SELECT id FROM corpus.customers WHERE length(name) > 12 AND region = 'apac'", A),
    ("SELECT id, total::text || ' EUR' FROM corpus.orders WHERE id = 37", A),
    ("SELECT row_to_json(o) FROM corpus.orders o WHERE o.id = 38", A),
    ("SELECT id FROM corpus.orders WHERE (qty, status) = (2, 'paid')", A),
    ("SELECT id FROM corpus.orders WHERE ARRAY[qty] <@ ARRAY[1, 2, 3]", A),
    ("SELECT id FROM corpus.customers WHERE email = $$user9@example.com$$", A),
    ("SELECT id FROM corpus.customers WHERE name = E'name\\t10'", A),
    ("/* app: report */ SELECT count(*) FROM corpus.orders WHERE status = 'cancelled'", A),
    ("SELECT id -- trailing comment\nFROM corpus.orders WHERE customer_id = 39", A),
    ("select ID, NOTE from CORPUS.ORDERS where CUSTOMER_ID = 40", A),
    ("SELECT id FROM corpus.orders WHERE customer_id = 41 AND true", A),
    ("SELECT id FROM corpus.orders WHERE customer_id = -42 AND note IS NULL", A),
    ("SELECT id FROM corpus.orders WHERE total = 1.5e2", A),
    # -- nothing to index, utility, DDL, catalogs, a table dropped since
    ("SELECT 1200+11", "no_tables"),
    ("SELECT ARRAY[1,2,3]::int[]", "no_tables"),
    ("SELECT now() - interval '1 day'", "no_tables"),
    ("VALUES (1, 'a'), (2, 'b')", "no_tables"),
    ("SELECT generate_series(1, 3)", "no_tables"),
    ("SELECT relname FROM pg_class WHERE relname = 'orders'", "catalog"),
    ("SELECT count(*) FROM pg_catalog.pg_stat_user_tables WHERE n_live_tup > 100", "catalog"),
    ("SELECT * FROM corpus.gone WHERE k = 5", "unknown_table"),
    ("SELECT g.id FROM corpus.gone g JOIN corpus.orders o ON o.id = g.id WHERE g.k = 6", "unknown_table"),
    ("SET work_mem = '8MB'", "utility"),
    ("SHOW work_mem", "utility"),
    ("RESET work_mem", "utility"),
    ("VACUUM corpus.stock", "utility"),
    ("ANALYZE corpus.stock", "utility"),
    ("EXPLAIN SELECT id FROM corpus.orders WHERE customer_id = 43", "utility"),
    ("CHECKPOINT", "utility"),
    ("DISCARD TEMP", "utility"),
    ("CREATE TABLE corpus.tmp_ddl (id int)", "ddl"),
    ("ALTER TABLE corpus.tmp_ddl ADD COLUMN note text", "ddl"),
    ("COMMENT ON TABLE corpus.tmp_ddl IS 'scratch'", "ddl"),
    ("CREATE INDEX tmp_ddl_id ON corpus.tmp_ddl (id)", "ddl"),
    ("CREATE VIEW corpus.v_paid AS SELECT id FROM corpus.orders WHERE status = 'paid'", "ddl"),
    ("DROP VIEW corpus.v_paid", "ddl"),
    ("DROP TABLE corpus.tmp_ddl", "ddl"),
    ("SELECT id INTO TEMP tmp_into FROM corpus.orders WHERE qty = 9", "ddl"),
    ("CREATE TEMP TABLE tmp_as AS SELECT id FROM corpus.orders WHERE qty = 8", "ddl"),
]

# Outcomes that would mean the audit failed to read or type a statement PostgreSQL accepted.
READ_FAILURES = {"parse_error", "truncated", "parameter_type", "unknown_function", "plan_error", "internal", "error"}


def _sqlglot_reads(text: str) -> bool:
    from sqlglot import exp, parse_one

    from pg_architect import pgparse
    from pg_architect.analyze import prepare_text

    try:
        return not isinstance(parse_one(pgparse.sqlglot_text(prepare_text(text)), read="postgres"), exp.Command)
    except Exception:
        return False


def _queryids(db) -> set[int]:
    return {r[0] for r in db.sql("SELECT queryid FROM pg_stat_statements WHERE dbid ="
                                 " (SELECT oid FROM pg_database WHERE datname = current_database())")}


def test_corpus_in_pg_stat_statements_form_is_read(low_thresholds):
    db = low_thresholds
    assert len(CORPUS) >= 150
    texts = [sql for sql, _ in CORPUS]
    assert len(set(texts)) == len(texts)
    for stmt in SCHEMA:
        db.sql(stmt)
    try:
        db.sql("UPDATE arch.settings SET max_statements = 1000, statement_budget_ms = 2000, max_candidates = 10")
        db.sql("SELECT pg_stat_statements_reset()")
        _queryids(db)
        own = _queryids(db)  # the probe itself (and the reset)
        queryid: dict[int, int] = {}
        same = []  # statements PostgreSQL normalised to an earlier one's text
        for i, (sql, _) in enumerate(CORPUS):
            before = _queryids(db)
            db.sql(sql)
            new = _queryids(db) - before - own
            if len(new) != 1:
                same.append(sql)
                continue
            queryid[i] = new.pop()
        assert not same, "each corpus statement must be a distinct pg_stat_statements entry:\n" + "\n".join(same)
        db.sql("DROP TABLE corpus.gone")  # dropped since its statements ran
        db.audit()
        rows = {r["queryid"]: r for r in db.dicts(
            "SELECT a.queryid, a.outcome, a.skip_code, a.skip_reason, s.query FROM arch.audit_statement a"
            " JOIN arch.statement s USING (dbid, userid, queryid)")}
        results, wrong = collections.Counter(), []
        for i, (_sql, expected) in enumerate(CORPUS):
            row = rows.get(queryid[i])
            got = None if row is None else (row["outcome"] if row["outcome"] == A else row["skip_code"])
            results[got] += 1
            if got != expected or got in READ_FAILURES:
                wrong.append(f"{expected} != {got}: {row and row['query']!r}  {row and row['skip_reason']}")
        print(f"\ncorpus: {len(CORPUS)} statements in pg_stat_statements form: "
              + ", ".join(f"{k} {v}" for k, v in results.most_common()))
        texts = [rows[queryid[i]]["query"] for i in range(len(CORPUS)) if queryid[i] in rows]
        print(f"corpus: {sum('$' in t for t in texts)} texts hold $n parameters (as pg_stat_statements"
              " normalised them)")
        analysed = [rows[queryid[i]]["query"] for i, (_, e) in enumerate(CORPUS) if e == A]
        by_sqlglot = sum(_sqlglot_reads(t) for t in analysed)
        print(f"corpus: of {len(analysed)} analysed, {by_sqlglot} read in full by sqlglot (after re-spacing),"
              f" {len(analysed) - by_sqlglot} by libpg_query's tree (tables only)")
        assert not wrong, "\n".join(wrong)
    finally:
        db.sql("DROP SCHEMA corpus CASCADE")
        db.sql("DROP TABLE IF EXISTS pg_temp.tmp_into, pg_temp.tmp_as")
