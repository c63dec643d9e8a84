#!/usr/bin/env python3
"""Driver for postgres-mcp's DTA (Database Tuning Advisor), run by bench_advisors.py in the peer's
own virtualenv (PyPI ``postgres-mcp``, Python >= 3.12; made by ``bench/peers.sh``).

    peer_dta.py < request.json > result.json

The request (JSON on stdin)::

    {"dsn": "...", "search_path": "tpch, public", "max_runtime_s": 30, "budget_mb": -1,
     "literal_fallback": true,
     "workload": [{"queryid": "...", "query": "<pg_stat_statements text>", "calls": 2,
                   "avg_exec_time": 12.5, "literal": "<one executed text of it, or null>"}, ...]}

The result (JSON on stdout)::

    {"version": "0.3.0", "indexes": ["CREATE INDEX ... ON lineitem USING btree (...)", ...],
     "skipped": [{"queryid": ..., "reason": ...}], "bound_from_literal": [{"queryid": ..., "reason": ...}],
     "wall_s": 3.2, "error": null,
     "analysed": 20}

It calls DTA's workload mode (``DatabaseTuningAdvisor.analyze_workload(workload=...)``) exactly as
its MCP tool does, with one patch made here, in a subclass, never in their installed code: their
workload mode aborts the whole analysis when one statement cannot be bound (``replace_parameters``
raises, or its guessed values do not fit, e.g. ``'sample_value'`` for ``CAST($1 AS DATE)``) or
planned (``_evaluate_configuration_cost`` raises).  The subclass validates the statements one at a
time and probes each one's plan without indexes.  One that fails is retried with the literal text
of one of its captured executions when the request has one (``literal_fallback``, reported in
``bound_from_literal``: DTA then sees values the other advisors do not), else left out and reported
in ``skipped``.  Their candidate generation can also pair a column with the wrong table of a
join; such a candidate aborts the analysis in hypopg, so candidates naming a column their table does
not have are left out (reported in ``candidates_dropped``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from importlib.metadata import version


def _conninfo(dsn: str, search_path: str | None) -> str:
    """The DSN with ``options=-c search_path=...``: DTA writes table names unqualified."""
    if not search_path:
        return dsn
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    d = conninfo_to_dict(dsn)
    sp = "-c search_path=" + search_path.replace(" ", "").replace(",", r"\,")
    d["options"] = (d.get("options", "") + " " + sp).strip()
    return make_conninfo(**d)


async def run(req: dict) -> dict:
    from postgres_mcp.index.dta_calc import DatabaseTuningAdvisor
    from postgres_mcp.sql import SqlDriver

    skipped: list[dict] = []
    from_literal: list[dict] = []
    dropped: list[str] = []
    use_literals = bool(req.get("literal_fallback", True))

    class BenchDTA(DatabaseTuningAdvisor):
        """DTA that leaves out the statements it cannot bind or plan instead of aborting."""

        async def _one(self, q: dict) -> dict:
            """The parsed entry for q, or raises _Skip with the reason."""
            try:
                got = await super()._validate_and_parse_workload([dict(q)])
            except Exception as e:
                raise _Skip(f"cannot bind: {_cause(e)}") from None
            if not got:
                raise _Skip("not analysable (not a SELECT)")
            try:
                plan = await self.get_explain_plan_with_indexes(got[0]["query"], frozenset())
                if self.extract_cost_from_json_plan(plan) == float("inf"):
                    raise ValueError("no plan")
            except Exception as e:
                raise _Skip(f"cannot plan: {_cause(e)}") from None
            return got[0]

        async def _filter_long_text_columns(self, candidates, max_text_length: int = 100):
            """Their last candidate filter (before the candidates are created in hypopg), plus: no
            candidate naming a column its table does not have (their column collector can give a
            join's column to the wrong table; one such hypothetical index makes hypopg fail and
            aborts the whole analysis)."""
            cands = await super()._filter_long_text_columns(candidates, max_text_length)
            ok = []
            for c in cands:
                rows = await self.sql_driver.execute_query(
                    "SELECT count(DISTINCT attname) AS n FROM pg_catalog.pg_attribute "
                    "WHERE attrelid = pg_catalog.to_regclass(%s) AND attname = ANY(%s) AND NOT attisdropped",
                    [c.table, list(c.columns)])
                if rows and rows[0].cells["n"] == len(set(c.columns)):
                    ok.append(c)
                else:
                    dropped.append(f"{c.table}({', '.join(c.columns)})")
            return ok

        async def _validate_and_parse_workload(self, workload):
            out = []
            for q in workload:
                qid = q.get("queryid")
                literal = q.pop("literal", None)
                try:
                    out.append(await self._one(q))
                    continue
                except _Skip as e:
                    reason = str(e)
                if literal and use_literals:
                    try:
                        out.append(await self._one({**q, "query": literal}))
                        from_literal.append({"queryid": qid, "reason": reason})
                        continue
                    except _Skip as e:
                        reason += f"; its literal text too: {e}"
                skipped.append({"queryid": qid, "reason": reason})
            return out

    driver = SqlDriver(engine_url=_conninfo(req["dsn"], req.get("search_path")))
    dta = BenchDTA(driver, budget_mb=req.get("budget_mb", -1),
                   max_runtime_seconds=req.get("max_runtime_s", 30))
    t0 = time.perf_counter()
    session = await dta.analyze_workload(workload=req["workload"], max_index_size_mb=req.get("budget_mb", -1))
    wall = time.perf_counter() - t0
    try:
        if driver.conn is not None and driver.is_pool:
            await driver.conn.close()
    except Exception:
        pass
    return {
        "version": version("postgres-mcp"),
        "indexes": [r.definition for r in session.recommendations],
        "estimated_size_bytes": [r.estimated_size_bytes for r in session.recommendations],
        "skipped": skipped,
        "bound_from_literal": from_literal,
        "candidates_dropped": dropped,
        "analysed": len(session.workload or []),
        "wall_s": wall,
        "error": session.error,
    }


class _Skip(Exception):
    pass


def _cause(e: BaseException) -> str:
    while e.__cause__ is not None:
        e = e.__cause__
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]


def main() -> int:
    logging.basicConfig(level=logging.CRITICAL)  # their errors are reported in the result
    req = json.load(sys.stdin)
    res = asyncio.run(run(req))
    json.dump(res, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
