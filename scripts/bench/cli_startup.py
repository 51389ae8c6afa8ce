"""Cold start of `xintu --help` against a bare `python -c pass` measured in the same run.

    python scripts/bench/cli_startup.py [--runs 15]

Prints the median of each and the ratio (the machine is noisy: compare within one run only).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time


def timed(argv: list[str], runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    cases = {
        "python -c pass (baseline)": [sys.executable, "-c", "pass"],
        "python -c 'import click'": [sys.executable, "-c", "import click"],
        "xintu --help": [sys.executable, "-m", "xintu_cli.main", "--help"],
        "xintu db --help": [sys.executable, "-m", "xintu_cli.main", "db", "--help"],
    }
    timed(cases["xintu --help"], 2)  # warm the page cache / bytecode
    results = {name: statistics.median(timed(argv, args.runs)) for name, argv in cases.items()}
    base = results["python -c pass (baseline)"]
    print(f"{'case':30} {'median ms':>10} {'× baseline':>11}")
    for name, ms in results.items():
        print(f"{name:30} {ms:10.1f} {ms / base:11.2f}")
    goal = results["xintu --help"]
    print(f"\nxintu --help cold start: {goal:.0f} ms (goal < 300 ms): {'OK' if goal < 300 else 'OVER'}")


if __name__ == "__main__":
    main()
