"""StatsService over 30 days of request_log: live GROUP BY queries vs the daily_stats roll-up.

    python scripts/bench/stats_rollup.py [--rows-per-day 10000] [--days 30] [--runs 5]

Starts its own MariaDB (temp datadir, free port), fills request_log with realistic rows, then times
``StatsService().days()`` for the range before any roll-up (the baseline: every day measured live)
and after ``rollup`` (past days read from daily_stats).  Same process, same data, same run: only
the ratio means anything on this noisy machine.
"""
from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from contextlib import closing
from datetime import timedelta
from pathlib import Path

import pymysql

METHODS = ["cache"] * 50 + ["llm"] * 30 + ["local"] * 15 + ["llm_fallback"] * 5
CATEGORIES = ["social_activities", "pets", "single_person", "foods", "travel_scenery", "screenshot",
              "idcard", "other"]


def fill(days: int, per_day: int) -> int:
    from xintu.models import RequestLog
    from xintu.timeutil import day_bounds_utc, local_today

    rng = random.Random(7)
    total = 0
    for back in range(1, days + 1):
        start, _ = day_bounds_utc(local_today() - timedelta(days=back))
        rows = []
        for _ in range(per_day):
            method = rng.choice(METHODS)
            rows.append({"ts": start + timedelta(seconds=rng.randrange(86400)), "endpoint": "/api/v1/classify",
                         "client": f"c{rng.randrange(500)}", "method": method,
                         "category": rng.choice(CATEGORIES),
                         "latency_ms": int(rng.lognormvariate(3 if method == "cache" else 7, 0.6)),
                         "ok": rng.random() > 0.01, "status": 200, "batch_size": rng.choice([1, 1, 1, 5, 20])})
        for i in range(0, len(rows), 5000):
            RequestLog.insert_many(rows[i:i + 5000]).execute()
        total += len(rows)
    return total


def timed(fn, runs: int) -> float:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows-per-day", type=int, default=10000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    from xintu import migrations
    from xintu.app import create_app
    from xintu.ops.procs import MariaDBServer
    from xintu.stats.rollup import rollup
    from xintu.stats.service import StatsService
    from xintu.timeutil import local_today

    with tempfile.TemporaryDirectory(prefix="xintu-bench-") as tmp:
        server = MariaDBServer(Path(tmp) / "db", server_id=1).start()
        try:
            with closing(pymysql.connect(host="127.0.0.1", port=server.port, user="root")) as conn:
                conn.cursor().execute("CREATE DATABASE xintu_bench CHARACTER SET utf8mb4")
            app = create_app({"ENV": "testing", "SANDBOX": False, "INSTANCE_PATH": str(Path(tmp) / "inst"),
                              "SECRET_KEY": "b" * 40, "DATABASE_URL": server.url(database="xintu_bench")})
            with app.app_context():
                from xintu import db

                migrations.migrate(db.primary.obj)
                started = time.perf_counter()
                rows = fill(args.days, args.rows_per_day)
                print(f"filled {rows} request_log rows over {args.days} days "
                      f"in {time.perf_counter() - started:.1f} s")
                until = local_today() - timedelta(days=1)
                since = until - timedelta(days=args.days - 1)
                service = StatsService()
                before = [d.as_dict() for d in service.days(since, until)]
                live = timed(lambda: service.days(since, until), args.runs)
                started = time.perf_counter()
                rollup(since, until)
                rollup_ms = (time.perf_counter() - started) * 1000
                after = [d.as_dict() for d in service.days(since, until)]
                assert after == before, "rolled-up figures differ from live ones"
                rolled = timed(lambda: service.days(since, until), args.runs)
        finally:
            server.destroy()
    print(f"\n{'case':44} {'median ms':>10} {'× baseline':>11}")
    print(f"{'days() live from request_log (baseline)':44} {live:10.1f} {1:11.2f}")
    print(f"{'days() from daily_stats roll-up':44} {rolled:10.1f} {rolled / live:11.3f}")
    print(f"{'rollup of the whole range (once)':44} {rollup_ms:10.1f} {rollup_ms / live:11.2f}")
    print(f"\nroll-up speed-up for a {args.days}-day range: {live / rolled:.0f}× (figures identical)")


if __name__ == "__main__":
    main()
