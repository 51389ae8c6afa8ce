"""``xintu serve``: the embedded single-process server (development, demos, a laptop)."""

from __future__ import annotations

import atexit
import os
import subprocess
import sys

import click


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=5000, show_default=True, type=int, help="Port to listen on.")
@click.option("--sandbox/--no-sandbox", default=None,
              help="Start the offline WeChat / WeChat Pay / DashScope sandbox (default: config SANDBOX).")
@click.option("--worker/--no-worker", default=True, show_default=True,
              help="Also run one `xintu worker` process, so image-edit tasks finish.")
@click.option("--debug", is_flag=True, help="Reload on code changes and show the debugger.")
def serve(host, port, sandbox, worker, debug):
    """Run the service on the embedded default: SQLite in the instance folder, local model, sandbox.

    \b
    Example:
      xintu serve --port 5000      # then open http://127.0.0.1:5000/
    Production runs under gunicorn behind nginx instead (see `xintu conf render`).
    """
    from werkzeug.serving import run_simple

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
    if config["SANDBOX"]:
        overrides.update(_start_sandbox(config))
    app = create_app(overrides)
    applied = migrations.migrate(db.primary.obj)
    if applied:
        click.echo(f"applied migrations: {', '.join(f'{v:04d}_{n}' for v, n in applied)}")
    click.echo(f"xintu on http://{host}:{port}/  (database: {app.config['DATABASE_URL']}, "
               f"sandbox: {'on' if app.config['SANDBOX'] else 'off'})")
    if worker and not os.environ.get("WERKZEUG_RUN_MAIN"):  # not again in the reloader's child
        _start_worker(app.config)
    run_simple(host, port, app, threaded=True, use_reloader=debug, use_debugger=debug)


def _start_worker(config: dict) -> None:
    """Background work never runs inside the web server: a separate worker process, stopped with us."""
    env = {**os.environ, "XINTU_INSTANCE_PATH": config["INSTANCE_PATH"]}
    flag = "--sandbox" if config["SANDBOX"] else "--no-sandbox"
    proc = subprocess.Popen([sys.executable, "-m", "xintu_cli.main", "worker", flag], env=env)
    atexit.register(lambda: proc.poll() is None and (proc.terminate(), proc.wait(10)))
    click.echo(f"edit worker running (pid {proc.pid})")


def _start_sandbox(config: dict) -> dict:
    try:
        from xintu.sandbox import start_embedded
    except ModuleNotFoundError as exc:
        if exc.name != "xintu.sandbox":
            raise
        return {}
    return start_embedded(config)
