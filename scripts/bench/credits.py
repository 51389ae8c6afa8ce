"""Credit spends per second on MariaDB, against a bare single-row UPDATE measured in the same run.

    python scripts/bench/credits.py [--ops 1500] [--threads 8] [--rounds 3]
                                    [--url mysql://user:pw@host:port/db]

Without --url a throwaway MariaDB is started in a temp folder.  Each case runs --ops spends; the
baseline of a case is `UPDATE users SET credits_balance = credits_balance - 1 WHERE id = ?` in
autocommit at the same concurrency — the least any debit can cost.  CreditService.spend adds the
balance guard (which also returns balance_after), the ledger insert (unique (reason, ref)) and the
transaction.  The two are run alternately --rounds times and the medians compared, so a burst of load
from a neighbour on a shared host hits both sides.
"""
from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing


def start_mariadb(tmp):
    from xintu.ops import replication
    from xintu.ops.procs import MariaDBServer

    server = MariaDBServer(tmp, server_id=1).start()
    with closing(replication.admin_connect(server.admin_url)) as conn, conn.cursor() as cur:
        cur.execute("CREATE DATABASE xintu_bench CHARACTER SET utf8mb4")
    return server, server.url("root", "", "xintu_bench")


def run_case(app, users, threads, ops, work):
    from xintu import db

    counter = itertools.count()
    barrier = threading.Barrier(threads)

    def worker(k):
        with app.app_context():
            barrier.wait()
            while (i := next(counter)) < ops:
                work(users[i % len(users)], f"bench:{time.monotonic_ns()}:{k}:{i}")
            db.close_all()

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(worker, range(threads)))
    return ops / (time.perf_counter() - started)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=1500)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs of each side per case")
    parser.add_argument("--url", help="MariaDB/MySQL URL of an empty database (default: start one)")
    args = parser.parse_args()

    tmp = tempfile.TemporaryDirectory(prefix="xintu-bench-")
    server, url = (None, args.url) if args.url else start_mariadb(tmp.name)
    try:
        from xintu import db, migrations
        from xintu.app import create_app
        from xintu.member.credits import CreditService
        from xintu.models import User

        app = create_app({"ENV": "testing", "SANDBOX": False, "INSTANCE_PATH": tmp.name, "DATABASE_URL": url,
                          "SECRET_KEY": "bench-" + "x" * 40, "DB_MAX_CONNECTIONS": args.threads + 4})
        with app.app_context():
            migrations.migrate(db.primary.obj)
            ids = [User.create(openid=f"bench{i}", credits_balance=0).id for i in range(args.threads)]
            for uid in ids:
                CreditService().grant(uid, 10 * args.ops * 8, "admin_adjust", f"bench-seed:{uid}")
            db.close_all()

        def bare(uid, _ref):
            User.update(credits_balance=User.credits_balance - 1).where(User.id == uid).execute()

        def spend(uid, ref):
            CreditService().spend(uid, 1, "edit_spend", ref)

        cases = [("1 thread, 1 user", 1, ids[:1]),
                 (f"{args.threads} threads, 1 hot user", args.threads, ids[:1]),
                 (f"{args.threads} threads, {args.threads} users", args.threads, ids)]
        run_case(app, ids, 2, 200, spend)  # warm the pool and the buffer pool
        print(f"{'case':28} {'bare UPDATE/s':>14} {'spend/s':>9} {'spend ÷ bare':>13}")
        for name, threads, users in cases:
            bases, rates = [], []
            for _ in range(args.rounds):
                bases.append(run_case(app, users, threads, args.ops, bare))
                rates.append(run_case(app, users, threads, args.ops, spend))
            base, rate = statistics.median(bases), statistics.median(rates)
            print(f"{name:28} {base:14.0f} {rate:9.0f} {rate / base:13.2f}")
        with app.app_context():
            drift = CreditService().audit()
            db.close_all()
        # The bare UPDATEs bypass the ledger on purpose, so drift equals exactly their count.
        print(f"\naudit: {len(drift)} users differ from their ledger (expected: all {len(ids)}, "
              f"by the bare baseline UPDATEs only)")
    finally:
        if server is not None:
            server.destroy()
        tmp.cleanup()


if __name__ == "__main__":
    main()
