"""``xintu serve``: the embedded server (a laptop, a demo, a trial) — gunicorn on the embedded defaults.

The process is a small supervisor: it migrates the embedded database, starts the sandbox (``xintu sandbox
run``) and the edit worker (``xintu worker``) as child processes, then runs gunicorn's arbiter in itself.
The children are tied to it: they get SIGTERM when it exits however it exits (``PR_SET_PDEATHSIG``, so
even a SIGKILL of `xintu serve` leaves nothing behind), and it stops them on its way out.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time

import click
from gunicorn.app.base import BaseApplication

PR_SET_PDEATHSIG = 1
SANDBOX_START_TIMEOUT = 60.0


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=5000, show_default=True, type=int, help="Port to listen on.")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 16),
              help="gunicorn worker processes (threaded: 4 threads each).")
@click.option("--sandbox/--no-sandbox", default=None,
              help="Start the offline WeChat / WeChat Pay / DashScope sandbox (default: config SANDBOX).")
@click.option("--worker/--no-worker", default=True, show_default=True,
              help="Also run one `xintu worker` process, so image-edit tasks finish.")
@click.option("--debug", is_flag=True,
              help="Development: werkzeug's reloading server with the debugger instead of gunicorn.")
def serve(host, port, workers, sandbox, worker, debug):
    """Run the service on the embedded default: SQLite in the instance folder, local model, sandbox.

    \b
    Example:
      xintu serve --port 5000      # then open http://127.0.0.1:5000/
    While it runs, other `xintu` commands on the same instance folder use its sandbox
    (`xintu sandbox scan …`, `xintu qrcode issue`). Production runs gunicorn behind nginx with the
    configs from `xintu conf render` instead.
    """
    from xintu import db, migrations
    from xintu.app import create_app
    from xintu.config import load_config

    overrides = {} if sandbox is None else {"SANDBOX": sandbox}
    config = load_config(overrides)
    if config["ENV"] == "production":
        raise click.ClickException("`xintu serve` is the embedded server; production runs gunicorn "
                                   "with the config from `xintu conf render`")
    if config["PUBLIC_BASE_URL"] == load_config({}, environ={})["PUBLIC_BASE_URL"]:
        overrides["PUBLIC_BASE_URL"] = f"http://{host}:{port}"
    config.update(overrides)
    env = {**os.environ, "XINTU_INSTANCE_PATH": config["INSTANCE_PATH"],
           "XINTU_PUBLIC_BASE_URL": config["PUBLIC_BASE_URL"],
           "XINTU_SANDBOX": "true" if config["SANDBOX"] else "false"}
    children: list[subprocess.Popen] = []
    try:
        if config["SANDBOX"] and not (debug and os.environ.get("WERKZEUG_RUN_MAIN")):
            proc, sandbox_overrides = _start_sandbox(config, env)
            children.append(proc)
            overrides.update(sandbox_overrides)
        elif debug and os.environ.get("WERKZEUG_RUN_MAIN"):
            from xintu.sandbox.runtime import running_overrides
            overrides.update(running_overrides(config))    # the reloader's child: the parent's sandbox
        app = create_app(overrides)
        applied = migrations.migrate(db.primary.obj)
        if applied:
            click.echo(f"applied migrations: {', '.join(f'{v:04d}_{n}' for v, n in applied)}")
        click.echo(f"xintu on http://{host}:{port}/  (database: {app.config['DATABASE_URL']}, "
                   f"sandbox: {'on' if app.config['SANDBOX'] else 'off'})", err=True)
        if worker and not os.environ.get("WERKZEUG_RUN_MAIN"):   # not again in the reloader's child
            flag = "--sandbox" if config["SANDBOX"] else "--no-sandbox"
            children.append(_child(["worker", flag], env))
            click.echo(f"edit worker running (pid {children[-1].pid})", err=True)
        if debug:
            from werkzeug.serving import run_simple
            run_simple(host, port, app, threaded=True, use_reloader=True, use_debugger=True)
        else:
            _Gunicorn(overrides, {"bind": f"{host}:{port}", "workers": workers}).run()
    finally:
        _stop(children)


def _die_with_parent() -> None:
    """In the child, before exec: the kernel sends SIGTERM when the parent exits, even by crash or kill -9."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _child(args: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "xintu_cli.main", *args], env=env,
                            preexec_fn=_die_with_parent)


def _start_sandbox(config: dict, env: dict) -> tuple[subprocess.Popen, dict]:
    """The sandbox process; returns once it has recorded where it lives (its overrides for the app)."""
    from xintu.sandbox.runtime import read_state

    proc = _child(["sandbox", "run"], env)
    deadline = time.monotonic() + SANDBOX_START_TIMEOUT
    while time.monotonic() < deadline:
        state = read_state(config)
        if state and state["pid"] == proc.pid:
            return proc, state["overrides"]
        if proc.poll() is not None:
            raise click.ClickException(f"the sandbox exited with status {proc.returncode} before it started")
        time.sleep(0.05)
    proc.terminate()
    raise click.ClickException("the sandbox did not start within a minute")


def _stop(children: list[subprocess.Popen]) -> None:
    for proc in children:
        if proc.poll() is None:
            proc.terminate()
    for proc in children:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class _Gunicorn(BaseApplication):
    """gunicorn's arbiter with the app built in each worker from the same overrides (no preload: every
    worker has its own database connections and model sessions, as under the production config)."""

    def __init__(self, overrides: dict, options: dict):
        self.overrides = overrides
        self.options = {"worker_class": "gthread", "threads": 4, "timeout": 120, "graceful_timeout": 10,
                        "accesslog": "-", "control_socket_disable": True, **options}
        super().__init__()

    def load_config(self):
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        from xintu.app import create_app
        return create_app(self.overrides)
