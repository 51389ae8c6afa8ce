"""``xintu db``: schema migrations and replication."""

from __future__ import annotations

import click

from xintu_cli.context import with_app
from xintu_cli.output import emit, output_options


@click.group()
def db():
    """Schema migrations and primary → replica replication.

    \b
    Examples:
      xintu db migrate
      xintu db status --format json
      xintu db replication setup --primary mysql://root@10.0.0.5/ --replica mysql://root@10.0.0.6/
    """


@db.command()
@with_app(schema=False)
def migrate():
    """Apply pending migrations (safe to run again; concurrent runs are serialised)."""
    from xintu import db as database
    from xintu import migrations

    applied = migrations.migrate(database.primary.obj)
    for version, name in applied:
        click.echo(f"applied {version:04d}_{name}")
    click.echo(f"schema at version {migrations.current_version(database.primary.obj)}"
               + ("" if applied else " (nothing to do)"))


@db.command()
@output_options
@with_app(schema=False)
def status(fmt):
    """Applied and pending migrations."""
    from xintu import db as database
    from xintu import migrations

    rows = migrations.status(database.primary.obj)
    if fmt == "table":
        click.echo(f"schema version: {migrations.current_version(database.primary.obj)}")
    emit([{**row, "state": "applied" if row["applied_at"] else "pending"} for row in rows], fmt,
         ["version", "name", "state", "applied_at"])


@db.group()
def replication():
    """GTID replication between two MariaDB/MySQL servers (admin URLs: root or equivalent)."""


@replication.command()
@click.option("--primary", "primary_url", required=True, help="Admin URL of the primary.")
@click.option("--replica", "replica_url", required=True, help="Admin URL of the replica.")
@click.option("--user", default="repl", show_default=True, help="Replication account name.")
@click.option("--replica-host", help="Address the replica connects from (account host limit). "
                                     "Default: the replica URL's host.")
@click.option("--primary-host", help="Address the replica reaches the primary at. "
                                     "Default: the primary URL's host.")
@output_options
def setup(primary_url, replica_url, user, replica_host, primary_host, fmt):
    """Create the replication account, point the replica at the primary, verify a canary write.

    Idempotent: a replica already following this primary with this account is left as it is.
    """
    from xintu.ops import replication as repl

    result = repl.setup(primary_url, replica_url, user=user, replica_host=replica_host,
                        primary_host_for_replica=primary_host)
    if fmt == "table":
        for line in result["changed"] or ["already replicating: nothing changed"]:
            click.echo(line)
    emit(result, fmt)


@replication.command(name="status")
@click.option("--replica", "replica_url", required=True, help="Admin URL of the replica.")
@output_options
def replication_status(replica_url, fmt):
    """IO/SQL threads, lag, GTID positions and errors of a replica; exit 1 when not replicating."""
    from xintu.ops import replication as repl

    result = repl.status(replica_url)
    emit(result, fmt)
    if not result["replicating"]:
        raise SystemExit(1)


@replication.command()
@click.option("--replica", "replica_url", required=True, help="Admin URL of the replica to promote.")
@click.confirmation_option(prompt="Stop replication and make this server writable?")
@output_options
def promote(replica_url, fmt):
    """Stop replicating, make the replica writable, print what to repoint."""
    from xintu.ops import replication as repl

    emit(repl.promote(replica_url), fmt)
