"""Memory and time of the H5 "导出我的数据" zip, each against a baseline measured in the same run.

    python scripts/bench/export_zip.py [--images 12] [--mb 3]

A user with --images stored edit results of --mb MB each (random bytes: nothing compresses), on SQLite in a
temp instance folder.  (a) Peak Python memory (tracemalloc) of ``export_images_zip`` writing into the same
SpooledTemporaryFile the endpoint uses (8 MB in memory, then disk) vs the same zip built in an
``io.BytesIO`` (the whole export in memory, what a naive endpoint holds); the goal is a peak near one image,
not the export's size.  (b) Wall time of the export vs reading the same images with ``load_image`` alone.
"""
from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
import tracemalloc

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))


def peak_mb(fn) -> float:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--mb", type=float, default=3)
    args = parser.parse_args()

    tmp = tempfile.TemporaryDirectory(prefix="xintu-bench-")
    from xintu import db, migrations
    from xintu.app import create_app
    from xintu.edit.service import load_image, store_image
    from xintu.member.privacy import export_images_zip
    from xintu.models import EditTask, User

    app = create_app({"INSTANCE_PATH": tmp.name, "SANDBOX": False})
    with app.app_context():
        migrations.migrate(db.primary.obj)
        user = User.create(openid="o-bench-export")
        size = int(args.mb * 2**20)
        for i in range(args.images):
            task = EditTask.create(task_id=f"bench{i:04d}", user=user.id, prompt="p", images=[], n_images=1,
                                   status="succeeded")
            store_image(task.id, 0, "image/png", os.urandom(size), kind="result")
        tasks = [t.id for t in EditTask.select(EditTask.id)]

        def spooled():
            with tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024) as out:
                export_images_zip(user, out)

        def in_memory():
            buf = io.BytesIO()
            export_images_zip(user, buf)
            return buf.getvalue()

        def read_only():
            for pk in tasks:
                load_image(pk, 0, kind="result")

        total = args.images * args.mb
        a, b = peak_mb(spooled), peak_mb(in_memory)
        print(f"(a) export of {args.images} × {args.mb:g} MB = {total:g} MB: peak {a:.1f} MB spooled vs "
              f"{b:.1f} MB in a BytesIO (ratio {a / b:.2f}; one image = {args.mb:g} MB)")

        def wall(fn, runs=3):
            fn()
            best = float("inf")
            for _ in range(runs):
                t = time.perf_counter()
                fn()
                best = min(best, time.perf_counter() - t)
            return best

        t_export, t_memory, t_read = wall(spooled), wall(in_memory), wall(read_only)
        print(f"(b) export {t_export * 1000:.0f} ms (in a BytesIO {t_memory * 1000:.0f} ms) vs reading the "
              f"images alone {t_read * 1000:.0f} ms (ratio {t_export / t_read:.2f})")
        db.close_all()


if __name__ == "__main__":
    main()
