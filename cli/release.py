"""``xintu release``: APP installers behind /api/v1/releases and the download page."""
from __future__ import annotations

import click

from xintu_cli.context import with_app
from xintu_cli.output import emit, output_options

PLATFORMS = ["windows", "mac", "android"]
COLUMNS = ["platform", "version", "size", "sha256", "downloads", "created_at", "download_url"]


@click.group()
def release():
    """APP installers for the download page.

    \b
    Examples:
      xintu release upload dist/xintu-1.2.0.exe --platform windows --version 1.2.0 --notes "修复若干问题"
      xintu release latest --platform windows --format json
    """


@release.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--platform", type=click.Choice(PLATFORMS), required=True)
@click.option("--version", "version", required=True, help="e.g. 1.2.0 or 1.2.0-beta.1")
@click.option("--notes", default="", help="Release notes shown on the download page.")
@output_options
@with_app
def upload(file, platform, version, notes, fmt):
    """Store an installer (SHA-256 computed here) and publish it as a release."""
    from xintu.releases.service import get_service

    releases = get_service()
    emit(releases.describe(releases.upload_file(file, platform=platform, version=version, notes=notes)), fmt)


@release.command("list")
@click.option("--platform", type=click.Choice(PLATFORMS))
@output_options
@with_app
def list_(platform, fmt):
    """Published releases, newest version first, with download counts."""
    from xintu.releases.service import get_service

    releases = get_service()
    emit([releases.describe(r) for r in releases.list(platform)], fmt, COLUMNS)


@release.command()
@click.option("--platform", type=click.Choice(PLATFORMS), required=True)
@output_options
@with_app
def latest(platform, fmt):
    """The release /api/v1/releases/latest returns for a platform."""
    from xintu.releases.service import get_service

    releases = get_service()
    emit(releases.describe(releases.latest(platform)), fmt)
