"""``xintu api``: the OpenAPI document the PC and mobile clients are generated from."""

from __future__ import annotations

from pathlib import Path

import click


@click.group()
def api():
    """The API contract (OpenAPI 3.1).

    \b
    Examples:
      xintu api spec --out docs/openapi.json   # regenerate the committed copy after a change
      xintu api spec --check docs/openapi.json # exit 1 if the code no longer matches it
    """


@api.command("spec")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the document here instead of standard output.")
@click.option("--check", "check", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Compare with this file instead of writing; exit 1 if they differ.")
def spec(out, check):
    """Print the OpenAPI document exactly as the server serves it at /api/v1/openapi.json."""
    import json

    from xintu import apidoc

    doc = apidoc.document()
    if check:
        if json.loads(check.read_text(encoding="utf-8")) != doc:
            raise click.ClickException(f"{check} is out of date: run `{apidoc.REGENERATE}` and record the "
                                       "change in docs/API-CHANGES.md")
        click.echo(f"{check} matches the code")
        return
    text = apidoc.dumps(doc)
    if out:
        out.write_text(text, encoding="utf-8")
        click.echo(f"wrote {out} ({len(doc['paths'])} paths)")
    else:
        click.echo(text, nl=False)
