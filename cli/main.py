"""``xintu`` — the operator's command line.

Subcommands are imported only when used (``xintu --help`` must not load onnxruntime, dashscope or
wechatpy).  Every command is a thin caller of a service in the ``xintu`` package.
"""

from __future__ import annotations

import importlib
import os
import sys

import click

# name → ("module:attribute", one-line help shown by `xintu --help` without importing the module)
COMMANDS: dict[str, tuple[str, str]] = {
    "admin": ("xintu_cli.admin:admin", "Admin dashboard accounts (管理后台)."),
    "api": ("xintu_cli.api:api", "The OpenAPI document (the clients' contract)."),
    "classify": ("xintu_cli.classify:classify", "Classify photos into the 8 categories."),
    "conf": ("xintu_cli.conf:conf", "Render and check nginx / lighttpd / gunicorn / MariaDB configs."),
    "config": ("xintu_cli.config:config", "Show the effective configuration; runtime switches."),
    "credits": ("xintu_cli.credits:credits", "Show, adjust and audit user credits."),
    "db": ("xintu_cli.db:db", "Migrations and primary → replica replication."),
    "deploy": ("xintu_cli.deploy:deploy", "Deploy a release to app hosts over SSH."),
    "doctor": ("xintu_cli.doctor:doctor", "Check every upstream and production setting (exit 1 on a fail)."),
    "edit": ("xintu_cli.edit:edit", "Image edit tasks (DashScope)."),
    "location": ("xintu_cli.location:location", "GPS → place names (Chinese)."),
    "orders": ("xintu_cli.orders:orders", "WeChat Pay orders."),
    "qrcode": ("xintu_cli.qrcode:qrcode", "Issue WeChat follow QR codes."),
    "release": ("xintu_cli.release:release", "APP installers for the download page."),
    "report": ("xintu_cli.report:report", "The daily stats report (cron)."),
    "sandbox": ("xintu_cli.sandbox:sandbox", "Play WeChat's side against a running `xintu serve` sandbox."),
    "serve": ("xintu_cli.serve:serve", "Run the service (embedded SQLite + sandbox by default)."),
    "sites": ("xintu_cli.sites:sites", "Render the static sites into CDN-ready folders."),
    "stats": ("xintu_cli.stats:stats", "Usage numbers."),
    "users": ("xintu_cli.users:users", "WeChat users."),
    "wechat": ("xintu_cli.wechat:wechat", "WeChat official account: custom menu."),
    "worker": ("xintu_cli.edit:worker", "Run background task workers."),
}


class LazyGroup(click.Group):
    """Every ``COMMANDS`` entry is listed; one that cannot be loaded (a typo in its target, a module or
    dependency missing from the build) is an error when used, never a command that silently vanishes."""

    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        target = COMMANDS[name][0]
        module_name, _, attr = target.partition(":")
        try:
            command = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            if os.environ.get("XINTU_TRACEBACK"):
                raise
            raise click.ClickException(f"command {name!r} cannot be loaded from {target}: {exc}") from None
        if not isinstance(command, click.Command):
            raise click.ClickException(f"command {name!r}: {target} is not a click command")
        return command

    def format_commands(self, ctx, formatter):
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def invoke(self, ctx):
        from xintu.errors import XintuError

        try:
            return super().invoke(ctx)
        except XintuError as exc:
            raise click.ClickException(exc.message) from None
        except (click.ClickException, click.exceptions.Exit, click.Abort, KeyboardInterrupt):
            raise
        except BrokenPipeError:   # the reader left (`xintu … | head`): stop quietly, as other tools do
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())   # so the interpreter's last flush does not fail again
            ctx.exit(1)
        except Exception as exc:  # one readable line, never a traceback
            if os.environ.get("XINTU_TRACEBACK"):
                raise
            raise click.ClickException(_describe(exc)) from None


def _describe(exc: Exception) -> str:
    name = type(exc).__name__
    if name in ("OperationalError", "InterfaceError"):
        detail = exc.args[-1] if exc.args else exc
        return f"database error: {detail}"
    return f"{name}: {exc}"


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"],
                                               "max_content_width": 110})
@click.option("--instance", type=click.Path(file_okay=False), envvar="XINTU_INSTANCE_PATH",
              help="Instance folder (config file xintu.toml, SQLite file). Default: ./instance")
@click.version_option(package_name="xintu", prog_name="xintu")
def cli(instance):
    """芯图相册 xintu: service and operations toolkit.

    \b
    Examples:
      xintu serve                      # embedded mode at http://127.0.0.1:5000
      xintu db migrate                 # create / evolve the schema
      xintu stats summary --format json
    """
    if instance:
        os.environ["XINTU_INSTANCE_PATH"] = os.path.abspath(instance)


def main(argv=None):
    return cli.main(args=argv, prog_name="xintu")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
