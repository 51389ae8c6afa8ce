"""``xintu deploy``: ship a wheel + configs to app hosts over SSH, reload gracefully, roll back on failure."""

from __future__ import annotations

from pathlib import Path

import click

from xintu_cli.output import emit, output_options


@click.command()
@click.option("--host", "hosts", multiple=True, required=True, help="[user@]host[:port], repeatable.")
@click.option("--settings", "settings_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Deployment settings (TOML).")
@click.option("--wheel", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Built wheel (python -m pip wheel --no-deps -w dist .).")
@click.option("--conf", "conf_dir", type=click.Path(exists=True, file_okay=False),
              help="Rendered configs. Default: rendered now from --settings.")
@click.option("--key", type=click.Path(exists=True, dir_okay=False), help="SSH private key.")
@click.option("--python", default="python3", show_default=True, help="Python on the host for the venv.")
@click.option("--pip-arg", "pip_args", multiple=True,
              help="Extra argument for installing the dependencies (repeatable), e.g. --index-url URL.")
@click.option("--wheelhouse", type=click.Path(exists=True, file_okay=False),
              help="Folder of wheels for every dependency (pip wheel -w DIR WHEEL): uploaded once, "
                   "installed with --no-index, for hosts that cannot reach an index.")
@click.option("--reload", "reload_mode", type=click.Choice(["systemd", "pidfile"]), default="systemd",
              show_default=True, help="systemctl reload, or HUP by gunicorn's pid file.")
@click.option("--health-timeout", default=30.0, show_default=True,
              help="Seconds the new version has to answer /healthz before the rollback.")
@click.option("--dry-run", is_flag=True, help="Read each host's state and print the steps; change nothing.")
@output_options
def deploy(hosts, settings_path, wheel, conf_dir, key, python, pip_args, wheelhouse, reload_mode,
           health_timeout, dry_run, fmt):
    """Deploy WHEEL to each host in turn; stops at the first host whose health check fails
    (that host is rolled back to its previous release).

    \b
    Example:
      xintu deploy --host deploy@10.0.0.5 --host deploy@10.0.0.6 --settings deploy.toml \\
                   --wheel dist/xintu-0.2.0-py3-none-any.whl
      xintu deploy --host deploy@10.0.0.5 --settings deploy.toml --wheel dist/… --dry-run
      pip wheel -w wheels dist/xintu-0.2.0-py3-none-any.whl     # for hosts without an index:
      xintu deploy --host deploy@10.0.0.5 --settings deploy.toml --wheel dist/xintu-0.2.0-py3-none-any.whl \\
                   --wheelhouse wheels
    """
    import tempfile

    from fabric import Connection

    from xintu.ops import render
    from xintu.ops.deploy import Deployer, DeployPlan
    from xintu.ops.settings import internal_secret, load_settings

    settings = load_settings(settings_path)
    with tempfile.TemporaryDirectory() as tmp:
        if not conf_dir:
            conf_dir = tmp
            render.write_tree(render.render_all(settings, internal_secret()), conf_dir)
        plan = DeployPlan(wheel=Path(wheel), conf_dir=Path(conf_dir), settings=settings, python=python,
                          pip_args=list(pip_args), wheelhouse=Path(wheelhouse) if wheelhouse else None,
                          reload=reload_mode,
                          health_timeout=health_timeout)
        rows = []
        for host in hosts:
            connect_kwargs = {"key_filename": key} if key else {}
            with Connection(host, connect_kwargs=connect_kwargs) as conn:
                deployer = Deployer(conn, plan, log=_progress(host))
                if dry_run:
                    state = deployer.dry_run()
                    rows += [{"host": host, "step": n, "action": step} for n, step in
                             enumerate(state["steps"], 1)] if fmt != "json" else [{"host": host, **state}]
                    continue
                result = deployer.deploy()
            rows.append({"host": host, **result})
    if dry_run:
        emit(rows, fmt, None if fmt == "json" else ["host", "step", "action"])
        return
    emit(rows, fmt, ["host", "version", "release", "reload", "seconds"])


def _progress(host: str):
    def log(line: str) -> None:
        click.echo(f"[{host}] {line}", err=True)   # stderr: stdout stays the result (json/csv)

    return log
