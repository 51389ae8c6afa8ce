"""Cache paths against the framework's own speed: xintu vs a 10-line Flask app taking the same bodies, in one run.

    python scripts/bench/cache_paths.py [--duration 8] [--rounds 3] [--connections 32] [--threads 2] [--no-nginx]

Two deployments on loopback from the configs `xintu conf render` produces (gunicorn: 2 sync workers, nginx
with TLS in front), one running xintu on a real MariaDB primary, the other a trivial Flask app (below) under
the very same rendered gunicorn and nginx configs. wrk (a Lua script per case) posts:
  (a) ``POST /api/v1/classify/batch-check-cache`` with 100 hashes, 50 of them cached and 50 never seen:
      wrk cycles through BODIES bodies whose 50 unknown hashes are all different (as an album scan sends);
  (b) ``POST /api/v1/classify``, a 300 KB JPEG as multipart, a cache hit.
The trivial app reads the same body (JSON / multipart file) and answers a JSON of about the same size.
Targets are measured in turn, ``--rounds`` times, and the median round is reported; compare the ratios
within one run (the machine is shared and noisy), not absolute numbers across runs. nginx's per-address
request limit is raised for the bench (wrk is one address); everything else is the production template.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import secrets
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.append(str(Path(__file__).resolve().parent))   # scripts/bench/stack.py, last: never shadows a package

import requests  # noqa: E402
from stack import wrk  # noqa: E402  (scripts/bench/stack.py)

from xintu.ops import replication  # noqa: E402
from xintu.ops.procs import MariaDBServer  # noqa: E402
from xintu.ops.stack import LoopbackStack  # noqa: E402

TRIVIAL_APP = '''\
import flask

app = flask.Flask("trivial")
ANSWER = {"category": "foods", "confidence": 0.93, "description": "一杯咖啡", "method": "cache", "source": "llm"}


@app.post("/api/v1/classify/batch-check-cache")
def batch_check_cache():
    hashes = flask.request.get_json()["hashes"]
    return {"hits": {h: ANSWER for h in hashes[::2]}, "missing": hashes[1::2]}


@app.post("/api/v1/classify")
def classify():
    data = flask.request.files["image"].read()
    return {"sha256": "0" * 64, **ANSWER, "bytes": len(data)}
'''

BODIES = 4000

WRK_BODIES_SCRIPT = '''\
local bodies = {{}}
for line in io.lines("{bodies}") do bodies[#bodies + 1] = line end
local i = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {token}"
request = function()
  i = i % #bodies + 1
  return wrk.format(nil, nil, nil, bodies[i])
end
'''

WRK_SCRIPT = '''\
local f = assert(io.open("{body}", "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "{content_type}"
wrk.headers["Authorization"] = "Bearer {token}"
'''


def photo_300kb() -> bytes:
    """A real photo as a JPEG of about 300 KB."""
    from PIL import Image
    from skimage import data

    img = Image.fromarray(data.astronaut())
    for side in range(1024, 1600, 32):
        buf = io.BytesIO()
        img.resize((side, side)).save(buf, "JPEG", quality=95)
        if buf.tell() >= 295_000:
            break
    return buf.getvalue()


def multipart(field: str, filename: str, data: bytes) -> tuple[bytes, str]:
    boundary = "xintubench" + secrets.token_hex(8)
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n"
            f"Content-Type: image/jpeg\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def seed_cache(admin_url: str, database: str, hashes: list[str]) -> None:
    """Cached LLM answers for ``hashes`` under the version the app accepts now."""
    from xintu.classify.model_client import prompt_version
    from xintu.config import DEFAULTS

    model = DEFAULTS["CLASSIFY_LLM_MODEL"]
    with closing(replication.admin_connect(admin_url)) as conn, conn.cursor() as cur:
        cur.executemany(
            f"INSERT INTO `{database}`.classify_cache (image_sha256, model_version, prompt_version, category, "
            "confidence, description, source, created_at, hits) VALUES (%s, %s, %s, 'foods', 0.93, '一杯咖啡', "
            "'llm', NOW(), 0)", [(h, model, prompt_version(model)) for h in hashes])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-nginx", action="store_true", help="gunicorn direct only")
    parser.add_argument("--memory-entries", type=int, default=None,
                        help="CLASSIFY_CACHE_MEMORY_ENTRIES for xintu (0 = every lookup asks MariaDB; the "
                             "bench repeats the same hashes, so the memory serves every found one)")
    parser.add_argument("--filter-seconds", type=float, default=None,
                        help="CLASSIFY_CHECK_FILTER_SECONDS for xintu (0 = no filter of stored hashes: every "
                             "unknown hash is asked of MariaDB)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="xintu-bench-cache-") as tmp:
        tmp = Path(tmp)
        primary = MariaDBServer(tmp / "db", server_id=1).start()
        try:
            run(tmp, primary, args)
        finally:
            primary.destroy()


def run(tmp: Path, primary: MariaDBServer, args) -> None:
    database = "xintu_bench"
    with closing(replication.admin_connect(primary.admin_url)) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {database} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    (tmp / "trivial").mkdir()
    (tmp / "trivial" / "trivial_app.py").write_text(TRIVIAL_APP, encoding="utf-8")
    # The per-token limit stays on (its code path is part of the cost), set above what wrk can reach.
    xintu_env = {"XINTU_DATABASE_URL": primary.url("root", "", database), "XINTU_SECRET_KEY": "b" * 40,
                 "XINTU_CLIENT_REQUESTS_PER_MINUTE": "100000000", "XINTU_LOG_LEVEL": "WARNING"}
    if args.memory_entries is not None:
        xintu_env["XINTU_CLASSIFY_CACHE_MEMORY_ENTRIES"] = str(args.memory_entries)
    if args.filter_seconds is not None:
        xintu_env["XINTU_CLASSIFY_CHECK_FILTER_SECONDS"] = str(args.filter_seconds)
    stacks = {
        "xintu": LoopbackStack(tmp / "xintu", xintu_env, secret="bench-shared-secret-0123456789",
                               gunicorn={"max_requests": 0}),
        "trivial": LoopbackStack(tmp / "trivial-stack", {"PYTHONPATH": str(tmp / "trivial")},
                                 secret="bench-shared-secret-0123456789", app="trivial_app:app",
                                 gunicorn={"max_requests": 0}),
    }
    for stack in stacks.values():   # wrk is one client address: lift nginx's per-address API limit
        stack.settings["app"].update(api_rate_per_second=10000, api_burst=100000)
    started = time.perf_counter()
    with stacks["xintu"] as app_stack, stacks["trivial"] as trivial_stack:
        print(f"two stacks (render, migrate, gunicorn, nginx, lighttpd) up in {time.perf_counter() - started:.1f} s")
        token = requests.post(f"{app_stack.gunicorn_url}/api/v1/clients", timeout=10,
                              json={"client_id": "bench-" + secrets.token_hex(4), "platform": "windows"}
                              ).json()["token"]
        photo = photo_300kb()
        cached = [hashlib.sha256(f"bench-{i}".encode()).hexdigest() for i in range(50)]
        seed_cache(primary.admin_url, database, cached + [hashlib.sha256(photo).hexdigest()])
        batch_bodies = []   # cached and unknown hashes alternate: the trivial app answers every other one
        for _ in range(BODIES):
            hashes = [h for pair in zip(cached, (secrets.token_hex(32) for _ in cached), strict=True) for h in pair]
            batch_bodies.append(json.dumps({"hashes": hashes}))
        cases = {}
        for name, path, (body, ctype) in [
            ("batch-check-cache, 100 hashes (50 cached)", "/api/v1/classify/batch-check-cache",
             (batch_bodies[0].encode(), "application/json")),
            (f"classify cache hit, {len(photo) // 1000} KB multipart", "/api/v1/classify",
             multipart("image", "photo.jpg", photo)),
        ]:
            body_file = tmp / f"body{len(cases)}"
            script = tmp / f"post{len(cases)}.lua"
            if path.endswith("batch-check-cache"):
                body_file.write_text("\n".join(batch_bodies) + "\n")
                script.write_text(WRK_BODIES_SCRIPT.format(bodies=body_file, token=token))
            else:
                body_file.write_bytes(body)
                script.write_text(WRK_SCRIPT.format(body=body_file, content_type=ctype, token=token))
            check = requests.post(app_stack.gunicorn_url + path, data=body, timeout=10,
                                  headers={"Content-Type": ctype, "Authorization": f"Bearer {token}"})
            assert check.status_code == 200, check.text
            answer = check.json()
            assert answer.get("method") == "cache" or len(answer.get("hits", ())) == 50, answer
            cases[name] = (path, script)
        targets = []   # (case, label, url, host)
        for case, (path, script) in cases.items():
            targets += [(case, "trivial, gunicorn", trivial_stack.gunicorn_url + path, None, script),
                        (case, "xintu, gunicorn", app_stack.gunicorn_url + path, None, script)]
            if not args.no_nginx:
                targets += [(case, "trivial, nginx TLS", trivial_stack.nginx_url + path, "api.xintu.test", script),
                            (case, "xintu, nginx TLS", app_stack.nginx_url + path, "api.xintu.test", script)]
        warmup = argparse.Namespace(**{**vars(args), "duration": 2})
        for _, _, url, host, script in targets:
            wrk(url, warmup, host, script)
        runs: dict[tuple, list] = {t[:2]: [] for t in targets}
        for _ in range(args.rounds):   # interleaved, so a noisy minute hits every target alike
            for case, label, url, host, script in targets:
                runs[(case, label)].append(wrk(url, args, host, script))
    median = {key: sorted(rs, key=lambda r: r["rps"])[len(rs) // 2] for key, rs in runs.items()}
    memory = "default" if args.memory_entries is None else args.memory_entries
    filtered = "default" if args.filter_seconds is None else args.filter_seconds
    print(f"\nwrk -t{args.threads} -c{args.connections} -d{args.duration}s, 2 sync gunicorn workers, MariaDB "
          f"primary, median of {args.rounds} rounds, CLASSIFY_CACHE_MEMORY_ENTRIES={memory}, "
          f"CLASSIFY_CHECK_FILTER_SECONDS={filtered}")
    print(f"{'case':44} {'target':20} {'req/s':>8} {'× trivial':>10} {'avg lat':>9} {'non-2xx':>8}")
    for case, label in median:
        r = median[(case, label)]
        base = median[(case, label.replace("xintu", "trivial"))]["rps"]
        print(f"{case:44} {label:20} {r['rps']:8.0f} {r['rps'] / base:10.2f} {r['latency_avg']:>9} "
              f"{r['non2xx']:8d}" + (f"  {r['socket_errors']}" if r["socket_errors"] else ""))


if __name__ == "__main__":
    main()
