"""``xintu sites``: build the static sites (official, Aifuture, admin SPA, H5 member page) for the CDN."""

from __future__ import annotations

import click

from xintu_cli.context import with_app
from xintu_cli.output import emit, output_options


@click.group()
def sites():
    """Static sites: sources in sites/, one dist folder per vhost, content-hashed assets.

    \b
    Examples:
      xintu sites render --out build/sites --api-base https://api.xintu.example.com
      xintu sites render --out build/sites --only official --format json
    """


@sites.command()
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder (one per site).")
@click.option("--api-base", help="Public URL of the API tier. Default: PUBLIC_BASE_URL of the config.")
@click.option("--settings", "settings_path", type=click.Path(dir_okay=False),
              help="Deployment settings: vhost host names used for cross-site links.")
@click.option("--only", multiple=True, help="Build only this site (repeatable).")
@click.option("--src", type=click.Path(exists=True, file_okay=False), help="Sources. Default: sites/.")
@output_options
@with_app
def render(out, api_base, settings_path, only, src, fmt):
    """Build sites into OUT/<site>; the download page links the newest release of each platform."""
    from datetime import date

    from flask import current_app

    from xintu import db
    from xintu.models import Release
    from xintu.ops import sites as builder

    with db.stale_reads():
        releases = [{"platform": r.platform, "version": r.version, "filename": r.filename,
                     "sha256": r.sha256, "size": r.size, "created_at": r.created_at}
                    for r in Release.select()]
    hosts = {}
    if settings_path:
        from xintu.ops.settings import load_settings

        hosts = {key: vhost["host"] for key, vhost in load_settings(settings_path)["web"]["vhosts"].items()}
    context = builder.site_context(api_base_url=api_base or current_app.config["PUBLIC_BASE_URL"],
                                   releases=releases, year=date.today().year, hosts=hosts)
    manifests = builder.render_sites(out, context, src=src or builder.SITES_DIR, only=list(only) or None)
    emit([{"site": site, "assets": len(names), "folder": f"{out}/{site}"}
          for site, names in manifests.items()],
         fmt, ["site", "assets", "folder"])
