"""``xintu qrcode``: follow QR codes issued by an operator (kiosks, posters, support)."""
from __future__ import annotations

import click

from xintu_cli.context import with_app
from xintu_cli.output import emit, output_options


@click.group()
def qrcode():
    """Issue WeChat follow QR codes that bind a client.

    \b
    Example:
      xintu qrcode issue --client-id kiosk-01 -o qr.png
    """


@qrcode.command()
@click.option("--client-id", required=True, help="Install id of the client to bind (registered if new).")
@click.option("-o", "--output", "path", required=True, type=click.Path(dir_okay=False, writable=True),
              help="Image file: .png or .svg.")
@click.option("--scale", default=8, show_default=True, type=click.IntRange(1, 40))
@output_options
@with_app
def issue(client_id, path, scale, fmt):
    """Create a 10-minute QR binding for CLIENT_ID and write its image.

    Prints the scene and the device token the client polls
    GET /api/v1/auth/wechat/binding?scene=… with.
    """
    import segno

    from xintu.auth import issue_token
    from xintu.member.service import get_service

    if not path.lower().endswith((".png", ".svg")):
        raise click.ClickException("--output must end in .png or .svg")
    if not 8 <= len(client_id) <= 64:
        raise click.ClickException("--client-id must be 8–64 characters")
    token, session = issue_token(client_id=client_id, kind="device", platform="other")
    info = get_service().binding.create(session)
    segno.make(info["url"], error="m").save(path, scale=scale, border=2)
    emit({"file": path, "scene": info["scene"], "url": info["url"], "expires_at": info["expires_at"],
          "device_token": token}, fmt)
