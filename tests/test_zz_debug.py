from test_sampled_candidates import PENDING, app, run, skewed_tables  # noqa


def test_debug(db, app, low_thresholds, skewed_tables):
    run(db, app, [PENDING.format(status="pending")] * 6)
    print(db.dicts("SELECT userid, queryid, query FROM arch.query_sample"))
    print(db.dicts("SELECT * FROM arch.sampled_parameters((SELECT queryid FROM pg_stat_statements WHERE query LIKE '%pga_tickets%' LIMIT 1))"))
    s = db.audit()
    print(s)
    print("\n".join(db.notices))
    print(db.dicts("SELECT kind, ddl, confidence_factors FROM arch.recommendation"))
    assert False
