"""``xintu conf``: every server config from one settings file, checked with the real binaries."""

from __future__ import annotations

import click

from xintu_cli.output import emit, output_options


@click.group()
def conf():
    """Server configs (nginx, gunicorn, lighttpd, MariaDB, systemd, cron) from a deploy.toml.

    \b
    Examples:
      xintu conf example > deploy.toml          # the annotated example settings, to edit
      XINTU_INTERNAL_SHARED_SECRET=… xintu conf render --settings deploy.toml --out build/conf
      xintu conf check build/conf
    """


@conf.command()
def example():
    """Print the example deployment settings (every key, with comments) that ship with the package."""
    from xintu import package_data

    click.echo((package_data.CONF_DIR / "deploy.example.toml").read_text("utf-8"), nl=False)


@conf.command()
@click.option("--settings", "settings_path", required=True, type=click.Path(dir_okay=False),
              help="Deployment settings (TOML); start from `xintu conf example`.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@output_options
def render(settings_path, out, fmt):
    """Render every config into OUT (the web tier's shared secret comes from
    XINTU_INTERNAL_SHARED_SECRET, never from the settings file)."""
    from xintu.ops import render as renderer
    from xintu.ops.settings import internal_secret, load_settings

    settings = load_settings(settings_path)
    written = renderer.write_tree(renderer.render_all(settings, internal_secret()), out)
    emit([{"file": str(path), "bytes": path.stat().st_size} for path in written], fmt, ["file", "bytes"])


@conf.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@click.option("--app", default="xintu:create_app()", show_default=True,
              help="WSGI app for gunicorn --check-config (it imports the app: set its environment).")
@output_options
def check(folder, app, fmt):
    """Validate a rendered folder: nginx -t, lighttpd -tt, gunicorn --check-config, mariadbd, systemd.

    Exits 1 if any check fails. The paths the configs name (logs, TLS keys) must exist here: run it on
    the target host, or on output rendered from local settings.
    """
    from xintu.ops.check import check_tree

    results = check_tree(folder, app=app)
    emit([r.row() for r in results], fmt, ["tool", "ok", "file", "output"])
    if not results:
        raise click.ClickException(f"no rendered configs found in {folder}")
    if not all(r.ok for r in results):
        raise SystemExit(1)
