"""``xintu classify PATH...``: classify photos on disk through the service, no server needed."""
from __future__ import annotations

import os
import sys
from collections import Counter

import click

from xintu_cli.context import with_app
from xintu_cli.output import output_options, render

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".heic", ".heif", ".mpo"}
CHUNK = 10


def _files(paths):
    """Files named explicitly are always tried; folders contribute their image files, recursively."""
    for path in paths:
        if os.path.isdir(path):
            for root, dirs, names in os.walk(path):
                dirs.sort()
                for name in sorted(names):
                    if os.path.splitext(name)[1].lower() in IMAGE_EXTS:
                        yield os.path.join(root, name)
        else:
            yield path


def _read(path: str, limit: int) -> bytes:
    with open(path, "rb") as f:
        return f.read(limit + 1)  # an oversize file is refused by the service without reading it all


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--method", type=click.Choice(["auto", "llm", "local"]), default=None,
              help="Path to use. Default: the operator switch inference.mode.")
@click.option("--details", is_flag=True, help="Local model: include the cues behind each answer (json).")
@click.option("--silent", is_flag=True, help="No progress bar.")
@output_options
@with_app
def classify(paths, method, details, silent, fmt):
    """Classify photos (files, or folders searched recursively) into the 8 categories.

    Runs the same ClassifierService as the API (cache → Qwen-VL → local model) in this process, so it
    works without the server; results are cached like API answers. A summary by category follows the
    rows (on stderr for json/csv, so stdout stays machine-readable).

    \b
    Examples:
      xintu classify ~/Pictures/2024 --method local
      xintu classify a.jpg b.heic --format json
    """
    from xintu.classify.intake import MAX_BYTES
    from xintu.classify.service import get_service

    service = get_service()
    files = list(_files(paths))
    if not files:
        raise click.ClickException("no image files found (jpg/png/webp/gif/heic/mpo)")
    rows = []
    with click.progressbar(length=len(files), label="classifying", file=sys.stderr,
                           hidden=silent or not sys.stderr.isatty()) as bar:
        for i in range(0, len(files), CHUNK):
            chunk = files[i:i + CHUNK]
            items = [(path, _read(path, MAX_BYTES)) for path in chunk]
            if details or method == "local":
                results = [_one(service, path, data, method, details) for path, data in items]
            else:
                results = service.classify_many(items, method=method)
            for r in results:
                rows.append(_row(r))
            bar.update(len(chunk))
    columns = ["file", "category", "confidence", "method", "description", "error"]
    if details and fmt == "json":
        columns.append("details")
    click.echo(render(rows, fmt, columns))
    summary = Counter(r["category"] or "error" for r in rows)
    text = render([{"category": k, "count": n} for k, n in summary.most_common()], "table" if fmt == "table" else fmt)
    click.echo(("\n" if fmt == "table" else "") + text, err=fmt != "table")
    if summary.get("error") == len(rows):
        sys.exit(1)


def _one(service, path, data, method, details):
    from xintu.errors import XintuError
    try:
        return {"filename": path, **service.classify(data, method=method, details=details)}
    except XintuError as exc:
        return {"filename": path, **exc.to_dict()}


def _row(r: dict) -> dict:
    row = {"file": r["filename"], "category": r.get("category"), "confidence": r.get("confidence"),
           "method": r.get("method"), "description": r.get("description"), "error": None}
    if "error" in r:
        row["error"] = f"{r['error']['code']}: {r['error']['message']}"
    if "details" in r:
        row["details"] = r["details"]
    return row
