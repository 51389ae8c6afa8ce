"""Server memory under decompression bombs, against the server's own baseline measured in the same run.

    python scripts/bench/memory.py [--port 0] [--no-accepted]

Starts `xintu serve --no-worker --no-sandbox` (SQLite in a temp instance folder, a free port) as a
subprocess, registers a device (POST /api/v1/clients), warms it with a photo, a screenshot and a small
black PNG through /classify and /classify/local (so every local model — ImageNet, faces, OCR — is in
the baseline), then sends:

  bomb      a 7071×7071 RGBA PNG of zeros (~190 KB file, 200 MB decoded), once to /classify,
            once to /classify/local, and 20 of them in one /classify/batch request;
  accepted  the largest PNG we still decode (5000×5000 RGBA, 100 MB of pixels), and a 12 MP HEIC,
            the same three ways;
and both, once and ×9, as an image-edit submission (queued only: the server runs with --no-worker; the
bound device it needs is created in the server's SQLite file before it starts).

For each, it prints the peak RSS growth over the baseline while the request runs (RSS summed over the
server's whole process tree, read from /proc every 10 ms: `xintu serve` may run worker processes), the
peak over the RSS just before that request ("request": what the request itself added), the growth once
the answer is in (memory malloc keeps for reuse), the status code and the error codes. Goal, for the
bomb: ≤ 150 MB for one image, ≤ 300 MB for a batch, 4xx JSON or results, /healthz still 200 afterwards
(exit 1 if missed).
The "accepted" rows show what the limits let through at worst; an edit keeps a 3072² result
(38 MB) beside the full-size source while shrinking, so it peaks above a classification.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

import requests

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))

from tests.classify_images import package_photo, phone_screenshot, zeros_png  # noqa: E402
from xintu.ops.procs import free_port, wait_port  # noqa: E402

MB = 1024 * 1024


def tree(pid: int) -> list[int]:
    """pid and all its descendants, from /proc/<pid>/stat's parent field."""
    parents: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(parents.get(p, []))
    return out


def rss(pid: int) -> int:
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


class Peak:
    """Samples the tree's RSS every 10 ms while a request runs."""

    def __init__(self, pid: int):
        self.pid, self.peak, self._stop = pid, 0, threading.Event()

    def __enter__(self):
        self.peak = rss(self.pid)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss(self.pid))
            self._stop.wait(0.01)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss(self.pid))


def codes(rsp) -> str:
    try:
        body = rsp.json()
    except ValueError:
        return f"not JSON: {rsp.headers.get('Content-Type')}"
    if "error" in body:
        return body["error"]["code"]
    if "task_id" in body:
        return f"task {body['status']}, {body['credits']['reserved']} credits reserved"
    if "results" in body:
        found: dict[str, int] = {}
        for item in body["results"]:
            key = item["error"]["code"] if "error" in item else item.get("category", "?")
            found[key] = found.get(key, 0) + 1
        return ", ".join(f"{k}×{n}" for k, n in sorted(found.items()))
    return body.get("category", "?")


def heic(width: int, height: int) -> bytes:
    """A phone-sized HEIC (one flat colour: small file, full decode)."""
    import pillow_heif
    from PIL import Image

    pillow_heif.register_heif_opener()
    out = io.BytesIO()
    Image.new("RGB", (width, height), (40, 90, 160)).save(out, "HEIF", quality=50)
    return out.getvalue()


def bound_token(instance: str) -> str:
    """A WeChat-bound device with credits in the server's SQLite file, made before the server starts
    (image edits need one, and the bench has no WeChat)."""
    from xintu import db, migrations
    from xintu.app import create_app
    from xintu.auth import issue_token
    from xintu.member.credits import CreditService
    from xintu.models import User

    app = create_app({"INSTANCE_PATH": instance, "SANDBOX": False})
    migrations.migrate(db.primary.obj)
    with app.app_context(), db.atomic():
        user = User.create(openid="o-bench-memory")
        CreditService().adjust(user.id, 1000, operator="bench", note="memory bench")
        token, _ = issue_token(client_id="bench-memory-edit", kind="bound", user=user)
    db.close_all()
    return token


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="0 → a free port")
    parser.add_argument("--no-accepted", action="store_true", help="only the 7071² bomb")
    parser.add_argument("--arena-max", type=int, default=0,
                        help="run the server with MALLOC_ARENA_MAX=N (as the systemd units do); 0 = unset")
    args = parser.parse_args()
    port = args.port or free_port()
    base = f"http://127.0.0.1:{port}"
    cases = [("bomb 7071² RGBA", zeros_png(7071, 7071))]
    if not args.no_accepted:
        cases.append(("accepted 5000² RGBA", zeros_png(5000, 5000)))
        cases.append(("accepted 12 MP HEIC", heic(4000, 3000)))
    xintu = os.path.join(os.path.dirname(sys.executable), "xintu")
    with tempfile.TemporaryDirectory(prefix="xintu-bench-mem-") as tmp:
        instance = os.path.join(tmp, "instance")
        # Edits are only queued (--no-worker): the key and endpoint are never called.
        env = {**os.environ, "XINTU_INSTANCE_PATH": instance, "XINTU_ENV": "development",
               "XINTU_LOG_LEVEL": "WARNING", "XINTU_EDIT_DASHSCOPE_API_KEY": "sk-bench-unused",
               "XINTU_EDIT_DASHSCOPE_BASE_URL": "http://127.0.0.1:9/api/v1"}
        if args.arena_max:
            env["MALLOC_ARENA_MAX"] = str(args.arena_max)
        os.environ["XINTU_INSTANCE_PATH"] = instance
        edit_auth = {"Authorization": f"Bearer {bound_token(instance)}"}
        log = open(os.path.join(tmp, "serve.log"), "wb")
        proc = subprocess.Popen([xintu, "serve", "--no-worker", "--no-sandbox", "--port", str(port)], env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_port(port, timeout=60, proc=proc)
            http = requests.Session()
            r = http.post(f"{base}/api/v1/clients", json={"client_id": "bench-mem", "platform": "windows"})
            r.raise_for_status()
            http.headers["Authorization"] = f"Bearer {r.json()['token']}"
            # Load every model the bomb images can reach (ImageNet, faces, OCR for flat images) and let
            # the allocator settle: that memory belongs to the baseline, not to the bombs.
            warm = [package_photo("skimage:chelsea.png"), phone_screenshot(), zeros_png(800, 800)]
            for _ in range(2):
                for image in warm:
                    for endpoint in ("/api/v1/classify", "/api/v1/classify/local"):
                        http.post(base + endpoint, files={"image": ("warm.png", image)}).raise_for_status()
                http.post(f"{base}/api/v1/image-edit", headers=edit_auth, data={"prompt": "warm"},
                          files=[("images", ("warm.png", image))]).raise_for_status()
            time.sleep(0.5)
            baseline = rss(proc.pid)
            print(f"xintu serve pid {proc.pid}: baseline RSS {baseline / MB:.0f} MB "
                  "(process tree, after warm-up)")
            print(f"{'case':<22} {'endpoint':<22} {'peak +MB':>9} {'request':>9} {'after +MB':>9}  "
                  "status  answer")
            worst = {(label, kind): 0.0 for label, _ in cases for kind in ("one", "batch")}
            for label, data in cases:
                batch = [("images", (f"x{i}.img", data)) for i in range(20)]
                for endpoint, files, kind in (("/api/v1/classify", {"image": ("x.img", data)}, "one"),
                                              ("/api/v1/classify/local", {"image": ("x.img", data)}, "one"),
                                              ("/api/v1/classify/batch", batch, "batch"),
                                              ("/api/v1/image-edit", batch[:1], "one"),
                                              ("/api/v1/image-edit", batch[:9], "batch")):
                    edit = endpoint.endswith("image-edit")
                    before = rss(proc.pid)
                    with Peak(proc.pid) as peak:
                        rsp = http.post(base + endpoint, files=files, timeout=600,
                                        headers=edit_auth if edit else None,
                                        data={"prompt": "把背景换成海边"} if edit else None)
                    time.sleep(0.3)
                    grown, after = (peak.peak - baseline) / MB, (rss(proc.pid) - baseline) / MB
                    own = (peak.peak - before) / MB
                    worst[label, kind] = max(worst[label, kind], grown)
                    name = endpoint.replace("/api/v1", "") + (f" ×{len(files)}" if kind == "batch" else "")
                    print(f"{label:<22} {name:<22} {grown:9.0f} {own:9.0f} {after:9.0f}  "
                          f"{rsp.status_code:>6}  {codes(rsp)}")
            health = http.get(f"{base}/healthz").status_code
            print(f"/healthz afterwards: {health}")
            bomb = cases[0][0]
            ok = worst[bomb, "one"] <= 150 and worst[bomb, "batch"] <= 300 and health == 200
            print(json.dumps({"baseline_mb": round(baseline / MB), "healthz": health,
                              **{f"{label.split()[0]}_{kind}_peak_mb": round(v)
                                 for (label, kind), v in worst.items()},
                              "goal_met": ok}))
            return 0 if ok else 1
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
            log.close()


if __name__ == "__main__":
    sys.exit(main())
