"""One output switch for every listing command: ``--format table|json|csv``."""

from __future__ import annotations

import csv
import functools
import io
import json
import unicodedata
from datetime import date, datetime

import click

FORMATS = ("table", "json", "csv")


def output_options(func):
    @click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True,
                  help="Output format.")
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        return func(*args, **kwargs)

    return wrapper


def _plain(value):
    if isinstance(value, (datetime, date)):
        return value.isoformat(sep=" ") if isinstance(value, datetime) else value.isoformat()
    return value


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def render(rows, fmt: str = "table", columns: list[str] | None = None) -> str:
    """rows: a list of dicts (or one dict, rendered as key/value pairs in table form)."""
    if isinstance(rows, dict):
        if fmt == "json":
            return json.dumps(rows, ensure_ascii=False, indent=2, default=_plain)
        rows, columns = [{"key": k, "value": v} for k, v in rows.items()], ["key", "value"]
    rows = [{k: _plain(v) for k, v in row.items()} for row in rows]
    columns = columns or (list(rows[0]) if rows else [])
    if fmt == "json":
        return json.dumps(rows, ensure_ascii=False, indent=2, default=str)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return buf.getvalue().rstrip("\n")
    cells = [[str(col) for col in columns]]
    cells += [["" if row.get(col) is None else str(row.get(col)) for col in columns] for row in rows]
    widths = [max(_width(line[i]) for line in cells) for i in range(len(columns))]
    lines = ["  ".join(c + " " * (w - _width(c)) for c, w in zip(line, widths, strict=True)).rstrip()
             for line in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def emit(rows, fmt: str = "table", columns: list[str] | None = None) -> None:
    click.echo(render(rows, fmt, columns))
