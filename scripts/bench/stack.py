"""Throughput of /healthz direct to gunicorn (the baseline), via nginx and via lighttpd, in one run; and
the time from two empty MariaDB datadirs to a verified replicated write.

    python scripts/bench/stack.py [--duration 8] [--rounds 3] [--connections 32] [--threads 2]

Everything runs on loopback from the configs `xintu conf render` produces (gunicorn: 2 sync workers;
nginx and lighttpd with TLS, as in production; lighttpd with /healthz added to its proxied paths for this
purpose only). wrk runs for a bounded duration per target. The machine is shared and noisy: compare the
ratios within one run, not absolute numbers across runs.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from xintu.ops import replication
from xintu.ops.procs import MariaDBServer
from xintu.ops.stack import LoopbackStack


def replication_from_nothing(base: Path) -> dict:
    started = time.perf_counter()
    primary = MariaDBServer(base / "primary", server_id=1)
    replica = MariaDBServer(base / "replica", server_id=2, replica=True)
    threads = [threading.Thread(target=s.start) for s in (primary, replica)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    servers_up = time.perf_counter() - started
    try:
        result = replication.setup(primary.admin_url, replica.admin_url)
        total = time.perf_counter() - started
        assert result["replicating"], result
        return {"servers_up_s": servers_up, "setup_s": result["seconds"], "canary_ms": result["canary_ms"],
                "total_s": total}
    finally:
        replica.destroy()
        primary.destroy()


def wrk(url: str, args, host: str | None = None, script: Path | None = None) -> dict:
    """One wrk run (``args``: threads, connections, duration; ``script``: a Lua file, e.g. for POST bodies)."""
    argv = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}s", "--timeout", "5s"]
    if script:
        argv += ["-s", str(script)]
    if host:
        argv += ["-H", f"Host: {host}"]
    out = subprocess.run(argv + [url], capture_output=True, text=True, timeout=args.duration + 60,
                         check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    latency = re.search(r"Latency\s+(\S+)", out).group(1)
    return {"rps": rps, "non2xx": int(bad.group(1)) if bad else 0, "latency_avg": latency,
            "socket_errors": errors.group(0) if errors else ""}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3,
                        help="Targets are measured in turn this many times; the median run is reported.")
    parser.add_argument("--max-requests", type=int, default=0,
                        help="gunicorn worker recycling (production: 1000). Off by default here: under a "
                             "flood of ~1k req/s a worker would re-import the app every second, and the "
                             "bench would measure that instead of the proxies.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="xintu-bench-") as tmp:
        tmp = Path(tmp)
        repl = replication_from_nothing(tmp / "db")
        print(f"replication from empty datadirs: {repl['total_s']:.2f} s total "
              f"(2 servers installed+started {repl['servers_up_s']:.2f} s, setup {repl['setup_s']:.2f} s, "
              f"canary write replicated in {repl['canary_ms']:.1f} ms; goal < 5 s)")
        stack = LoopbackStack(tmp / "stack", {}, secret="bench-shared-secret-0123456789",
                              extra_proxy_paths=["/healthz"],
                              gunicorn={"max_requests": args.max_requests})
        started = time.perf_counter()
        with stack:
            print(f"stack (render configs + sites, migrate, gunicorn, nginx, lighttpd) up in "
                  f"{time.perf_counter() - started:.2f} s {stack.startup_seconds}")
            targets = [
                ("gunicorn direct (baseline)", f"{stack.gunicorn_url}/healthz", None),
                ("via nginx (TLS, keepalive upstream)", f"{stack.nginx_url}/healthz", "api.xintu.test"),
                ("via lighttpd (TLS, proxied path)", f"{stack.lighttpd_url}/healthz", stack.host("official")),
            ]
            warmup = argparse.Namespace(**{**vars(args), "duration": 2})
            for _, url, host in targets:   # first connections, TLS session cache, worker page faults
                wrk(url, warmup, host)
            runs = {name: [] for name, _, _ in targets}
            for _ in range(args.rounds):   # interleaved, so a noisy minute hits every target alike
                for name, url, host in targets:
                    runs[name].append(wrk(url, args, host))
            results = [(name, sorted(runs[name], key=lambda r: r["rps"])[len(runs[name]) // 2])
                       for name, _, _ in targets]
        base = results[0][1]["rps"]
        print(f"\nwrk -t{args.threads} -c{args.connections} -d{args.duration}s, GET /healthz, "
              f"2 sync gunicorn workers, max_requests={args.max_requests}, median of {args.rounds} rounds")
        print(f"{'target':38} {'req/s':>9} {'× baseline':>11} {'avg latency':>12} {'non-2xx':>8}")
        for name, r in results:
            print(f"{name:38} {r['rps']:9.0f} {r['rps'] / base:11.2f} {r['latency_avg']:>12} {r['non2xx']:8d}"
                  + (f"  {r['socket_errors']}" if r["socket_errors"] else ""))


if __name__ == "__main__":
    main()
