"""``xintu sandbox``: play WeChat's side against the sandbox of a running `xintu serve` on this instance."""

from __future__ import annotations

import click

from xintu_cli.output import emit, output_options

PACKAGE_HELP = "`member`, or `credits:N` for a credit package of the price table (e.g. credits:10)."


def _client():
    from xintu.config import load_config
    from xintu.sandbox.runtime import SandboxClient

    return SandboxClient(load_config())


@click.group()
def sandbox():
    """The offline WeChat / WeChat Pay of a running `xintu serve` (same instance folder).

    \b
    Examples:
      xintu qrcode issue --format json          # or the client's own QR: any scene
      xintu sandbox scan SCENE --openid o_demo   # the user scans and follows
      xintu sandbox buy o_demo credits:10        # H5 order, paid in the sandbox cashier
      xintu sandbox bill --drop XT…              # today's trade bill loses that order's line
      xintu sandbox signing certificate          # WeChat Pay signs with its platform certificate
    """


@sandbox.command()
@click.argument("scene")
@click.option("--openid", help="The WeChat user (default: a new one).")
@output_options
def scan(scene, openid, fmt):
    """A WeChat user scans the QR code of SCENE and follows: a signed, encrypted event to the server."""
    result = _client().scan(scene, openid)
    if result["callback_status"] != 200:
        raise click.ClickException(f"the server answered the {result['event']} event with HTTP "
                                   f"{result['callback_status']}")
    emit(result, fmt)


@sandbox.command()
@click.argument("openid")
@click.argument("package", metavar="PACKAGE")
@output_options
def buy(openid, package, fmt):
    """OPENID buys PACKAGE on the H5 member page; paid in the sandbox cashier, notification delivered.

    PACKAGE is `member` or `credits:N`. Prints the order."""
    kind, _, count = package.partition(":")
    if kind not in ("member", "credits") or (kind == "credits") != bool(count):
        raise click.BadParameter(PACKAGE_HELP, param_hint="PACKAGE")
    order = _client().buy(openid, kind, count or None)
    emit({k: order.get(k) for k in ("out_trade_no", "status", "kind", "package", "quantity", "amount_fen",
                                    "paid_at")}, fmt)


def _pair(value, param):
    if value is None:
        return None
    number, _, fen = value.partition("=")
    if not number or not fen.isdigit():
        raise click.BadParameter("expected OUT_TRADE_NO=FEN", param_hint=param)
    return [number, int(fen)]


@sandbox.command()
@click.option("--drop", metavar="OUT_TRADE_NO", help="Leave this order's line out of the bill.")
@click.option("--amount", metavar="OUT_TRADE_NO=FEN", help="Bill this order at another amount.")
@click.option("--stranger", type=click.IntRange(1), metavar="FEN",
              help="Add a payment of FEN that no one here ordered.")
@click.option("--refund", metavar="OUT_TRADE_NO=FEN", help="Add a refund line for this order.")
@click.option("--reset", is_flag=True, help="Forget earlier changes first.")
@output_options
def bill(drop, amount, stranger, refund, reset, fmt):
    """Make the sandbox WeChat Pay's trade bills disagree with what happened (for `orders reconcile`).

    Changes apply to every bill served from now on; new lines are dated now. Prints the changes."""
    changes = {"drop": drop, "amount": _pair(amount, "--amount"), "stranger": stranger,
               "refund": _pair(refund, "--refund"), "reset": reset}
    result = _client().change_bill(**{k: v for k, v in changes.items() if v})
    emit({k: ", ".join(map(str, v)) if isinstance(v, list) else ", ".join(f"{a}={b}" for a, b in v.items())
          for k, v in result.items()} if fmt != "json" else result, fmt)


@sandbox.command()
@click.argument("signer", type=click.Choice(["public_key", "certificate", "rotate"]))
@output_options
def signing(signer, fmt):
    """Switch who signs the sandbox WeChat Pay's answers and notifications (a merchant's transition).

    SIGNER is `public_key` (PUB_KEY_ID_…), `certificate` (the platform certificate of /v3/certificates) or
    `rotate` (a new platform certificate, published and signing from now on). The sandbox of `xintu serve`
    runs the app in WECHATPAY_VERIFY_MODE=both, so payments go on through a switch. Prints the signer."""
    result = _client().set_signing(signer)
    emit({**result, "certificates": ", ".join(result["certificates"])} if fmt != "json" else result, fmt)


@sandbox.command(hidden=True)
def run():
    """Run the fakes for `xintu serve` (its child process) until SIGTERM."""
    from xintu.config import load_config
    from xintu.sandbox.runtime import run as run_sandbox

    run_sandbox(load_config())
