"""pg-architect: install, audit, demo, the sidecar and Vanna training from the command line."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import pg_architect

DEMO_SETTINGS = {"min_mean_time_ms": 1, "min_calls": 3, "min_gain_pct": 10, "max_statements": 50}
DEMO_QUERY = """SELECT id, table_name, index_kind AS kind, ddl, est_gain_pct AS "gain %",
       confidence, calls
FROM arch.recommendations WHERE status = 'proposed'
ORDER BY benefit_ms DESC"""
# The recommendation the demo validates on staging: the most beneficial one the validator supports.
DEMO_TOP = ("SELECT id, kind, ddl FROM arch.recommendations WHERE status = 'proposed'"
            " AND kind IN ('index', 'statistics') ORDER BY benefit_ms DESC, id LIMIT 1")
DEMO_VALIDATIONS = ("SELECT queryid, query, status, runs, median_before_ms, median_after_ms, buffers_before,"
                    " buffers_after, measured_gain_pct, est_gain_pct, confidence_before, confidence_measured, error"
                    " FROM arch.validations WHERE id = ANY(%s) ORDER BY id")


def _connect(dsn: str, autocommit: bool = False):
    import psycopg

    conn = psycopg.connect(dsn, autocommit=autocommit)
    conn.add_notice_handler(lambda d: print(d.message_primary, file=sys.stderr))
    return conn


def cmd_install(args) -> int:
    from .install import InstallError, install

    with _connect(args.dsn) as conn:
        try:
            rep = install(conn, upto=args.upto, python_path=args.python_path,
                          say=lambda m: print(f"install: {m}", file=sys.stderr) if args.verbose else None)
        except InstallError as exc:
            print(f"pg-architect install: ERROR: {exc}", file=sys.stderr)
            return 2
    applied = ", ".join(rep.applied) or "none (already up to date)"
    print(f"pg_architect {rep.version} installed: migrations applied: {applied}; "
          f"extensions created: {', '.join(rep.extensions_created) or 'none'}; "
          f"pg_cron: {'yes' if rep.pg_cron else 'not in this database'}; python path {rep.python_path}")
    return 0


def cmd_audit(args) -> int:
    """Run the pipeline from here over psycopg (for databases without plpython3u)."""
    import psycopg
    from tqdm import tqdm

    from . import audit
    from .db import DbError, PsycopgDb, UserError

    bar = None

    def progress(done, total, label):
        nonlocal bar
        if bar is None and total:
            bar = tqdm(total=total, unit="stmt", desc="audit", file=sys.stderr, disable=args.quiet)
        if bar is not None:
            bar.n = done
            bar.set_postfix_str(label[:40])
            bar.refresh()

    try:
        conn = _connect(args.dsn)
    except psycopg.Error as exc:
        return _print_error("audit", f"cannot connect: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc}")
    with conn:
        db = PsycopgDb(conn, notice=(lambda m: None) if args.quiet else (lambda m: tqdm.write(m, file=sys.stderr)),
                       progress=progress)
        try:
            with conn.transaction():
                conn.execute("SET LOCAL search_path = pg_catalog, pg_temp")
                try:  # keep the audit's own statements out of pg_stat_statements (superuser only)
                    with conn.transaction():
                        conn.execute("SET LOCAL pg_stat_statements.track = 'none'")
                except Exception:
                    pass
                summary = audit.run_audit(db)
        except UserError as err:
            return _print_error("audit", err.message, err.detail, err.hint)
        except DbError as err:
            run_id = _record_failure(conn, db, str(err).strip().splitlines()[0])
            return _print_error("audit", str(err).strip().splitlines()[0], err.detail,
                                f"The audit was rolled back; recorded as failed run {run_id} (arch.audit_runs).")
        except psycopg.Error as err:
            diag = err.diag
            message = diag.message_primary if diag and diag.message_primary else str(err).strip()
            run_id = _record_failure(conn, db, message)
            return _print_error("audit", message, diag.message_detail if diag else None,
                                (diag.message_hint if diag else None)
                                or f"The audit was rolled back; recorded as failed run {run_id} (arch.audit_runs).")
        finally:
            if bar is not None:
                bar.close()
    print(json.dumps(summary, indent=2, default=str))
    return 0


def _record_failure(conn, db, message: str) -> int | None:
    """The failed audit's row went with its transaction: write a 'failed' run with the error."""
    import psycopg

    from . import runs
    from .errors import DbError

    try:
        with conn.transaction():
            return runs.record_failure(db, message)
    except (psycopg.Error, DbError):
        return None


def _print_error(cmd: str, message: str, detail: str | None = None, hint: str | None = None) -> int:
    """An error as psql shows one (ERROR / DETAIL / HINT lines on stderr), never a traceback."""
    print(f"pg-architect {cmd}: ERROR: {message}", file=sys.stderr)
    for label, text in (("DETAIL", detail), ("HINT", hint)):
        if text:
            print(f"{label}: {text}", file=sys.stderr)
    return 2


def _psql() -> str | None:
    for cand in (shutil.which("psql"), "/usr/lib/postgresql/15/bin/psql"):
        if cand and os.path.exists(cand):
            return cand
    return None


def cmd_demo(args) -> int:
    from tqdm import tqdm

    from . import sample
    from .install import InstallError, install

    t0 = time.monotonic()
    with _connect(args.dsn) as conn:
        try:
            rep = install(conn)
        except InstallError as exc:
            print(f"pg-architect demo: ERROR: {exc}", file=sys.stderr)
            return 2
        conn.commit()
        print(f"demo: pg_architect {rep.version} installed "
              f"({'migrations ' + ', '.join(rep.applied) if rep.applied else 'already up to date'})")
        conn.execute("SET client_min_messages = warning")
        conn.commit()
        if sample.sample_app_loaded(conn, events=args.events):
            print("demo: sample application already loaded")
            first = False
        else:
            print(f"demo: loading the sample application ({args.events:,} events) ...")
            with tqdm(total=100, unit="%", desc="load", file=sys.stderr) as bar:
                def prog(done, total):
                    bar.n = int(done * 100 / max(total, 1))
                    bar.refresh()
                counts = sample.load_sample_app(conn, events=args.events, progress=prog)
            print("demo: loaded " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
            first = True
        conn.commit()
        conn.execute("UPDATE arch.settings SET " + ", ".join(f"{k} = {v}" for k, v in DEMO_SETTINGS.items()))
        conn.commit()
        rounds = args.rounds if args.rounds is not None else (20 if first else 4)
        print(f"demo: running the workload ({rounds} rounds) ...")
        with tqdm(total=100, unit="%", desc="workload", file=sys.stderr) as bar:
            def prog2(done, total):
                bar.n = int(done * 100 / max(total, 1))
                bar.refresh()
            calls = sample.run_workload(conn, rounds=rounds, progress=prog2)
        conn.commit()
        print(f"demo: {sum(calls.values()):,} statements executed ({len(calls)} shapes)")
        print("demo: SELECT arch.run_audit();")
        conn.autocommit = True
        conn.execute("RESET client_min_messages")
        summary = conn.execute("SELECT arch.run_audit()").fetchone()[0]
        print("demo: " + json.dumps(summary))
    if args.staging_dsn:
        _demo_staging_load(args)
    psql = _psql()
    done = "audited" if args.staging_dsn else "done"
    print(f"demo: {done} in {time.monotonic() - t0:.0f} s. The recommendations:\n", flush=True)
    if psql:
        subprocess.run([psql, "-X", "-P", "pager=off", "-d", args.dsn, "-c", DEMO_QUERY], check=False)
    else:
        with _connect(args.dsn, autocommit=True) as conn:
            for row in conn.execute(DEMO_QUERY):
                print(" | ".join(str(v) for v in row))
    if args.staging_dsn:
        _demo_validate(args)
        print(f"demo: done in {time.monotonic() - t0:.0f} s.")
    return 0


def _demo_staging_load(args) -> None:
    """The staging database gets the same sample application (as a restore of production would)."""
    from . import sample

    with _connect(args.staging_dsn) as st:
        st.execute("SET client_min_messages = warning")
        st.commit()
        name = st.info.dbname
        if sample.sample_app_loaded(st, events=args.events):
            print(f"demo: staging database {name}: sample application already loaded")
            return
        t = time.monotonic()
        counts = sample.load_sample_app(st, events=args.events)
        st.commit()
        print(f"demo: staging database {name}: loaded the same sample application ("
              + ", ".join(f"{k} {v:,}" for k, v in counts.items()) + f") in {time.monotonic() - t:.0f} s")


def _demo_validate(args) -> None:
    """Validate the top recommendation on staging and print its measured before/after."""
    from .validate import ValidationRefused, validate_many

    with _connect(args.dsn, autocommit=True) as conn:
        top = conn.execute(DEMO_TOP).fetchone()
        if top is None:
            print("demo: no index or statistics recommendation to validate on staging")
            return
        rec_id, kind, ddl = top
        print(f"\ndemo: validating recommendation {rec_id} ({kind}) on staging: EXPLAIN (ANALYZE, BUFFERS) "
              "before and after the change, then undone")
        print(f"demo: SELECT arch.validate({rec_id}); -- the sidecar does the same with PGA_STAGING_DSN")
        print(f"demo:   {ddl}")
        try:
            [out] = validate_many(conn, args.staging_dsn, [rec_id])
        except ValidationRefused as exc:
            print(f"demo: validation REFUSED: {exc}")
            return
        conf_before = None
        for (qid, query, status, runs, before, after, buf_b, buf_a, gain, est, conf_b, _conf_m,
             error) in conn.execute(DEMO_VALIDATIONS, (out.get("validations") or [],)):
            conf_before = conf_b
            text = " ".join((query or "").split())
            print(f"demo:   queryid {qid}: {text[:100]}")
            if status == "measured":
                print(f"demo:     {status}, median of {runs} runs: {before} ms before -> {after} ms after "
                      f"({gain} % measured, {est} % estimated); buffers {buf_b:,} -> {buf_a:,}")
            else:
                print(f"demo:     {status}: {error}")
        if out.get("confidence") is not None:
            print(f"demo:   confidence {conf_before} -> {out['confidence']} with the measured gain "
                  f"({'adopted' if out.get('confidence_adopted') else 'kept'}); "
                  f"SELECT * FROM arch.validations WHERE recommendation_id = {rec_id};")


def _log_to_stderr(verbose: bool) -> None:
    import logging

    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    for noisy in ("urllib3", "github", "httpx", "vanna"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def cmd_sidecar(args) -> int:
    """The sidecar: open pull requests, explain / ask / train with Vanna (see sidecar.py)."""
    import logging

    import psycopg

    from .sidecar import Sidecar, SidecarError

    _log_to_stderr(args.verbose)
    log = logging.getLogger("pg_architect.sidecar")
    delay, started = 1.0, False
    while True:
        sc = Sidecar(args.dsn, name=args.name)
        try:
            code = sc.run(once=args.once)
            return code
        except SidecarError as exc:
            # Refused at start (wrong version, not installed, cannot connect): a configuration
            # problem the first time; after a lost connection, the database may still be coming back.
            if not started or args.once or "cannot connect" not in str(exc):
                print(f"pg-architect sidecar: ERROR: {exc}", file=sys.stderr)
                return 2
            reason = str(exc)
        except psycopg.OperationalError as exc:
            if args.once or sc.stopping.is_set():
                print(f"pg-architect sidecar: ERROR: lost the database connection: {exc}", file=sys.stderr)
                return 1
            reason = f"lost the database connection: {str(exc).strip().splitlines()[0]}"
        started = started or sc.id is not None
        # Nothing to save: all state is in the database. Reconnect with backoff (SIGTERM still stops).
        log.warning("%s; reconnecting in %.0f s", reason, delay)
        if sc.stopping.wait(delay):
            return 0
        delay = min(delay * 2, 60.0)


def cmd_validate(args) -> int:
    """Validation on staging: EXPLAIN ANALYZE before / after the change, then undone (validate.py)."""
    import logging

    import psycopg

    from .validate import ValidationRefused, validate_many

    _log_to_stderr(args.verbose)
    log = logging.getLogger("pg_architect.validate")
    staging = args.staging_dsn or os.environ.get("PGA_STAGING_DSN", "")
    ids = [args.recommendation] if args.recommendation else None
    while True:
        try:
            with psycopg.connect(args.dsn, autocommit=True, application_name="pg_architect validate") as conn:
                results = validate_many(conn, staging, ids, say=log.info)
        except ValidationRefused as exc:
            print(f"pg-architect validate: REFUSED: {exc}", file=sys.stderr)
            return 3
        except psycopg.Error as exc:
            print(f"pg-architect validate: ERROR: {str(exc).strip().splitlines()[0]}", file=sys.stderr)
            return 2
        for r in results:
            print(json.dumps(r, default=str))
        if args.once or ids:
            return 0
        time.sleep(args.interval)


def cmd_train(args) -> int:
    """Train Vanna now (what a train request does), from here."""
    from .db import PsycopgDb
    from .sidecar import llm
    from .sidecar import vanna as vanna_store

    _log_to_stderr(args.verbose)
    with _connect(args.dsn, autocommit=True) as conn:
        db = PsycopgDb(conn)
        settings = db.row("SELECT * FROM arch.settings WHERE id")
        try:
            model = llm.from_settings(settings)
        except llm.LLMError as exc:  # training needs the LLM only to phrase missing questions
            print(f"pg-architect train: {exc}; continuing without an LLM", file=sys.stderr)
            model = None
        vn = vanna_store.make_vanna(db, model)
        stats = vanna_store.train(db, vn)
    print(json.dumps(stats))
    return 0


def cmd_build_model(args) -> int:
    """Build the ONNX graph of all-MiniLM-L6-v2 next to its weights (install time, once)."""
    from . import minilm

    try:
        out = minilm.build_graph(force=args.force)
    except (minilm.ModelMissing, ImportError, ValueError, OSError) as exc:
        print(f"pg-architect build-model: {exc}", file=sys.stderr)
        return 1
    what = f"built in {out['seconds']} s" if out["built"] else "current"
    print(f"pg-architect build-model: {out['path']} ({out['bytes']:,} bytes) {what}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="pg-architect", description=__doc__)
    p.add_argument("--version", action="version", version=f"pg-architect {pg_architect.__version__}")
    sub = p.add_subparsers(dest="cmd", required=True)
    dsn_help = "libpq connection string (default: $PGA_DSN, else libpq's PG* environment)"

    s = sub.add_parser("install", help="install or upgrade pg_architect in a database (superuser)")
    s.add_argument("--dsn", default=os.environ.get("PGA_DSN", ""), help=dsn_help)
    s.add_argument("--python-path", help="directory PL/Python imports pg_architect from "
                   "(default: the site-packages this command runs from)")
    s.add_argument("--upto", help="apply migrations only up to this one (e.g. 0001), no sql/ (for upgrade tests)")
    s.add_argument("-v", "--verbose", action="store_true")
    s.set_defaults(func=cmd_install)

    s = sub.add_parser("audit", help="run the audit from here over psycopg (no plpython3u needed)")
    s.add_argument("--dsn", default=os.environ.get("PGA_DSN", ""), help=dsn_help)
    s.add_argument("-q", "--quiet", action="store_true")
    s.set_defaults(func=cmd_audit)

    s = sub.add_parser("demo", help="install, load the sample application, run its workload and an audit")
    s.add_argument("--dsn", default=os.environ.get("PGA_DSN", ""), help=dsn_help)
    s.add_argument("--events", type=int, default=1_000_000)
    s.add_argument("--rounds", type=int, default=None)
    s.add_argument("--staging-dsn", default="", help="a staging database (never the demo database itself): "
                   "loaded with the same sample application; the top recommendation is validated there")
    s.set_defaults(func=cmd_demo)

    s = sub.add_parser("sidecar", help="run the sidecar: pull requests for approved recommendations, "
                       "Vanna explain/ask/train (secrets from the environment)")
    s.add_argument("--dsn", default=os.environ.get("PGA_DSN", ""), help=dsn_help)
    s.add_argument("--once", action="store_true", help="do what is queued now, sync pull requests, exit")
    s.add_argument("--name", help="name in arch.sidecars (default host:pid)")
    s.add_argument("-v", "--verbose", action="store_true")
    s.set_defaults(func=cmd_sidecar)

    s = sub.add_parser("validate", help="validate recommendations on a staging database: EXPLAIN ANALYZE "
                       "before and after the change, then undone (never on production)")
    s.add_argument("--dsn", default=os.environ.get("PGA_DSN", ""), help=dsn_help)
    s.add_argument("--staging-dsn", default="", help="the staging database (default: $PGA_STAGING_DSN); "
                   "refused when it reaches the production database itself")
    s.add_argument("--recommendation", type=int, help="validate this recommendation (default: those "
                   "arch.settings.validate_policy picks)")
    s.add_argument("--once", action="store_true", help="validate once and exit")
    s.add_argument("--interval", type=float, default=300.0, help="seconds between passes without --once")
    s.add_argument("-v", "--verbose", action="store_true")
    s.set_defaults(func=cmd_validate)

    s = sub.add_parser("train", help="train Vanna now on the user schemas' DDL, arch.documentation "
                       "and approved recommendations (no duplicates)")
    s.add_argument("--dsn", default=os.environ.get("PGA_DSN", ""), help=dsn_help)
    s.add_argument("-v", "--verbose", action="store_true")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("build-model", help="build the ONNX graph of the default embedding model "
                       "(all-MiniLM-L6-v2) next to its weights; a no-op when it is current")
    s.add_argument("--force", action="store_true", help="rebuild even when current")
    s.set_defaults(func=cmd_build_model)

    args = p.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
