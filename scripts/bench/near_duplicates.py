"""Near-duplicate cache hits: false matches among distinct photos, hits on their re-encoded/resized copies.

    python scripts/bench/near_duplicates.py [--tiles 3] [--rows 100000] [--screenshots 30]

Every image goes through the service's own path: bytes → xintu.classify.intake.decode (the ≤ 960 px working
image) → xintu.classify.phash.phash.

Distinct photos: every photo the installed packages ship (scikit-image, matplotlib, scikit-learn, mahotas,
PyWavelets), plus the tiles of a --tiles × --tiles grid over each (tiles share no pixel, so each is another
picture). Prints, per Hamming distance threshold:
  (a) false matches: distinct pairs within the threshold, and distinct photos that would be answered with
      another one's answer (the rate that matters: one upload's chance of a wrong near-duplicate hit);
      (a2) the same among screenshots of one chat app that differ only in their messages;
  (b) edits that must NOT match (crops, rotations, mirror, colour changes) and how many still do;
  (c) hits: the field client's copy (long side 1024 px, 80 % JPEG), an 80 % JPEG re-encode, half size, and
      a 60 % JPEG, each against its photo.
Then the cost, against baselines measured in the same run: the pHash against the decode it follows, and the
banded near-duplicate query against the exact-hash lookup, on SQLite with --rows stored answers.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import os
import statistics
import sys
import tempfile
import time
from importlib import util

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))

THRESHOLDS = (0, 1, 2, 3, 4, 6, 8, 10)
SUFFIXES = (".png", ".jpg", ".jpeg")


def package_images() -> list[tuple[str, object]]:
    """(name, RGB PIL image) for every photo the installed packages ship (≥ 128 px on the short side)."""
    import numpy as np
    from PIL import Image

    folders = [("skimage", "data"), ("matplotlib", os.path.join("mpl-data", "sample_data")),
               ("sklearn", os.path.join("datasets", "images")), ("mahotas", os.path.join("demos", "data")),
               ("pywt", "data")]
    out, seen = [], set()
    for pkg, sub in folders:
        spec = util.find_spec(pkg)
        if spec is None:
            continue
        root = os.path.join(spec.submodule_search_locations[0], sub)
        for name in sorted(os.listdir(root)):
            path = os.path.join(root, name)
            try:
                if name.endswith(".npz"):
                    with np.load(path) as arrays:
                        data = np.asarray(arrays[arrays.files[0]])
                    if data.ndim != 2 or min(data.shape) < 128 or not np.isfinite(data).all():
                        continue
                    data = data.astype(np.float64)
                    data = (255 * (data - data.min()) / max(1e-9, float(np.ptp(data)))).astype(np.uint8)
                    img = Image.fromarray(data).convert("RGB")
                elif name.lower().endswith(SUFFIXES):
                    img = Image.open(path).convert("RGB")
                else:
                    continue
            except Exception:  # not an image after all
                continue
            digest = hashlib.sha256(img.tobytes()).digest()
            if min(img.size) >= 128 and digest not in seen:    # the same pixels twice (a grey and an RGB copy)
                seen.add(digest)
                out.append((f"{pkg}:{name}", img))
    return out


def encode(img, fmt="PNG", quality=95) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, quality=quality)
    return buf.getvalue()


def resized(img, long_side: int):
    from PIL import Image
    scale = long_side / max(img.size)
    return img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.LANCZOS)


def edits(img) -> dict[str, object]:
    """Changes of a photo that make another picture: none of these may be a near-duplicate hit."""
    from PIL import ImageEnhance, ImageOps
    w, h = img.size
    r, g, b = img.split()
    from PIL import Image
    return {
        "crop 10 % off each side": img.crop((w // 10, h // 10, w - w // 10, h - h // 10)),
        "crop to the left 70 %": img.crop((0, 0, w * 7 // 10, h)),
        "rotate 90°": img.rotate(90, expand=True),
        "rotate 8°": img.rotate(8, resample=Image.BILINEAR),
        "mirror": ImageOps.mirror(img),
        "colour: red↔blue": Image.merge("RGB", (b, g, r)),
        "colour: grey": ImageOps.grayscale(img).convert("RGB"),
        "colour: inverted": ImageOps.invert(img),
        "brightness +40 %": ImageEnhance.Brightness(img).enhance(1.4),
    }


def copies(img) -> dict[str, bytes]:
    """What arrives when a photo we answered comes back: these should be hits."""
    return {
        "client copy (1024 px, 80 % JPEG)": encode(resized(img, 1024), "JPEG", 80),
        "80 % JPEG re-encode": encode(img, "JPEG", 80),
        "half size, 80 % JPEG": encode(resized(img, max(64, max(img.size) // 2)), "JPEG", 80),
        "60 % JPEG re-encode": encode(img, "JPEG", 60),
    }


def tiles(img, n: int):
    w, h = img.size
    for i in range(n):
        for j in range(n):
            tile = img.crop((w * i // n, h * j // n, w * (i + 1) // n, h * (j + 1) // n))
            if min(tile.size) >= 64:
                yield f"tile {i},{j}", tile


def hash_of(data: bytes) -> tuple[int, int]:
    """(pHash, mean colour) of an upload, as the service computes it."""
    from xintu.classify.intake import decode
    from xintu.classify.phash import fingerprint
    return fingerprint(decode(data).image)


def near(a: tuple[int, int], b: tuple[int, int], t: int, colour: bool = True) -> bool:
    from xintu.classify import phash as perceptual
    return perceptual.distance(a[0], b[0]) <= t and (
        not colour or perceptual.colour_diff(a[1], b[1]) <= perceptual.MAX_COLOUR_DIFF)


def pct(k: int, n: int) -> str:
    return f"{k}/{n} ({100 * k / n:.2f} %)" if n else "0/0"


def bench_cost(hashes: list[tuple[int, int]], rows: int, runs: int = 200) -> None:
    """The banded query vs the exact-hash lookup, same table, same run (SQLite)."""
    import random

    from xintu import db, migrations
    from xintu.app import create_app
    from xintu.classify import phash as perceptual
    from xintu.classify.cache import CacheService, Version
    from xintu.models import ClassifyCache

    rnd = random.Random(17)
    version = Version("qwen3-vl-plus", "p", "llm")
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app({"ENV": "testing", "SANDBOX": False, "INSTANCE_PATH": os.path.join(tmp, "instance"),
                          "SECRET_KEY": "bench-" + "k" * 40, "LOG_LEVEL": "WARNING"})
        migrations.migrate(db.primary.obj)
        with app.app_context():
            stored = hashes + [(rnd.getrandbits(64), rnd.getrandbits(24)) for _ in range(max(0, rows - len(hashes)))]
            batch = []
            for i, (value, colour) in enumerate(stored):
                bands = perceptual.bands(value)
                batch.append({"image_sha256": f"{i:064x}", "model_version": version.model,
                              "prompt_version": version.prompt, "category": "other", "confidence": 0.5,
                              "source": "llm", "mean_rgb": colour, **{f"phash{k}": bands[k] for k in range(4)}})
                if len(batch) == 1000:
                    ClassifyCache.insert_many(batch).execute()
                    batch = []
            if batch:
                ClassifyCache.insert_many(batch).execute()
            cache = CacheService([version])
            probes = [(f"{rnd.randrange(len(stored)):064x}", (v ^ (1 << rnd.randrange(64)), c)) for v, c in hashes]

            def timed(fn):
                samples = []
                for k in range(runs):
                    sha, value = probes[k % len(probes)]
                    t = time.perf_counter()
                    fn(sha, value)
                    samples.append(time.perf_counter() - t)
                return statistics.median(samples) * 1e6

            exact = timed(lambda sha, value: cache.get(sha))
            near = timed(lambda sha, value: cache.near_duplicate(value, [version], 3))
            found = sum(cache.near_duplicate(v, [version], 3) is not None for _, v in probes)
            from xintu.classify.request_log import buffer
            buffer.flush()
        db.close_all()
    print(f"\nlookup on SQLite with {len(stored)} stored LLM answers ({len(hashes)} real, the rest random hashes), "
          f"median of {runs}:")
    print(f"  exact-hash lookup (baseline)       {exact:8.0f} µs")
    print(f"  near-duplicate query (4 bands)     {near:8.0f} µs  = {near / exact:.2f}× the exact lookup")
    print(f"  probes (a real hash with one bit flipped) found: {pct(found, len(probes))}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=3, help="grid of tiles per photo (distinct pictures)")
    parser.add_argument("--rows", type=int, default=100_000, help="stored answers for the lookup cost")
    parser.add_argument("--screenshots", type=int, default=30, help="chat screenshots with other messages")
    args = parser.parse_args()
    from xintu.classify import phash as perceptual
    from xintu.classify.intake import decode

    photos = package_images()
    distinct = []                                         # (name, hash)
    for name, img in photos:
        distinct.append((name, hash_of(encode(img))))
        for tile_name, tile in tiles(img, args.tiles):
            distinct.append((f"{name} {tile_name}", hash_of(encode(tile))))
    informative = [(n, h) for n, h in distinct if perceptual.informative(h[0])]
    print(f"{len(photos)} package photos, {len(distinct)} distinct pictures with their tiles "
          f"({len(distinct) - len(informative)} with a flat, uninformative hash: never matched)\n")

    pairs = [(a, b, ha, hb) for i, (a, ha) in enumerate(informative) for b, hb in informative[i + 1:]]
    print("(a) false matches among distinct pictures (pHash within the distance, and mean colour within "
          f"{perceptual.MAX_COLOUR_DIFF}; in brackets: pHash alone)")
    print("| distance ≤ | pairs within | pictures with a wrong near-duplicate |\n|---|---|---|")
    for t in THRESHOLDS:
        row = []
        for colour in (True, False):
            within = [(a, b) for a, b, ha, hb in pairs if near(ha, hb, t, colour)]
            touched = {x for pair in within for x in pair}
            row.append((pct(len(within), len(pairs)), pct(len(touched), len(informative))))
        print(f"| {t} | {row[0][0]} [{row[1][0]}] | {row[0][1]} [{row[1][1]}] |")
    close = sorted((perceptual.distance(ha[0], hb[0]), a, b) for a, b, ha, hb in pairs
                   if perceptual.distance(ha[0], hb[0]) <= 10)[:6]
    for d, a, b in close:
        print(f"    closest pHashes: {d:2d}  {a}  ~  {b}")

    # The hard case for a perceptual hash: pictures that share a layout, e.g. one chat app's screenshots.
    from tests.classify_images import phone_screenshot
    shots = [hash_of(phone_screenshot(seed)) for seed in range(args.screenshots)]
    shot_pairs = [(a, b) for i, a in enumerate(shots) for b in shots[i + 1:]]
    print(f"\n(a2) {len(shots)} screenshots of one chat app with other messages "
          "(tests.classify_images.phone_screenshot): pairs within the distance")
    print("| distance ≤ | " + " | ".join(str(t) for t in THRESHOLDS) + " |\n|---|" + "---|" * len(THRESHOLDS))
    print("| pairs | " + " | ".join(pct(sum(near(a, b, t) for a, b in shot_pairs), len(shot_pairs))
                                    for t in THRESHOLDS) + " |")

    edit_d: dict[str, list[tuple]] = {}
    copy_d: dict[str, list[tuple]] = {}
    names: list[str] = []
    for name, img in photos:
        base = hash_of(encode(img))
        if not perceptual.informative(base[0]):
            continue
        for kind, edited in edits(img).items():
            if edited.size == img.size and edited.tobytes() == img.tobytes():
                continue   # a grey photo made grey, or its channels swapped: the same picture, not an edit
            edit_d.setdefault(kind, []).append((base, hash_of(encode(edited))))
        names.append(name)
        for kind, data in copies(img).items():
            copy_d.setdefault(kind, []).append((base, hash_of(data)))
    print("\n(b) edits of the package photos that must not match, at distance ≤ 3 (photos the edit leaves "
          "unchanged, e.g. grey ones made grey, are not counted)")
    print("| edit | matched | by pHash alone | median pHash distance |\n|---|---|---|---|")
    for kind, ps in edit_d.items():
        print(f"| {kind} | {pct(sum(near(a, b, 3) for a, b in ps), len(ps))} | "
              f"{pct(sum(near(a, b, 3, False) for a, b in ps), len(ps))} | "
              f"{statistics.median(perceptual.distance(a[0], b[0]) for a, b in ps):.0f} |")

    print("\n(c) hits on copies of the package photos (pHash within the distance and the same mean colour)")
    print("| copy | " + " | ".join(f"≤ {t}" for t in THRESHOLDS[:6]) + " | max pHash distance |")
    print("|---|" + "---|" * 7)
    for kind, ps in copy_d.items():
        print(f"| {kind} | " + " | ".join(f"{100 * sum(near(a, b, t) for a, b in ps) / len(ps):.0f} %"
                                         for t in THRESHOLDS[:6])
              + f" | {max(perceptual.distance(a[0], b[0]) for a, b in ps)} |")
    for kind, ps in copy_d.items():
        missed = [n for n, (a, b) in zip(names, ps, strict=True) if not near(a, b, 3)]
        print(f"    missed at ≤ 3, {kind}: {', '.join(missed) or '—'}")

    # Cost of the hash against the decode it follows (the decode is needed anyway on a miss).
    sample = [encode(resized(img, 1024), "JPEG", 80) for _, img in photos[:10]]
    t = time.perf_counter()
    work = [decode(d).image for d in sample for _ in range(5)]
    decode_ms = (time.perf_counter() - t) * 1000 / len(work)
    t = time.perf_counter()
    for img in work:
        perceptual.fingerprint(img)
    phash_ms = (time.perf_counter() - t) * 1000 / len(work)
    print(f"\npHash {phash_ms:.2f} ms per working image vs its decode {decode_ms:.2f} ms (1024 px JPEG) "
          f"= {phash_ms / decode_ms:.2f}× the decode")
    bench_cost([h for _, h in informative], args.rows)


if __name__ == "__main__":
    main()
