"""The repo explains itself: every document a file cites is in the repo (no design notes kept elsewhere)."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SKIP = {".git", ".venv", "build", "dist", "__pycache__", ".pytest_cache", "node_modules"}
TEXT = {".py", ".md", ".j2", ".toml", ".cfg", ".js", ".html", ".css", ".txt", ".sh", ""}
OUTSIDE = ("DESIGN " + "\u00a7", "../" + "shared/")   # spelled apart so this file does not match
DOC = re.compile(r"(?<![\w/.-])((?:docs/)?[A-Za-z][\w-]*\.md)\b")


def _files():
    for path in ROOT.rglob("*"):
        if path.is_file() and not SKIP & set(path.relative_to(ROOT).parts) and path.suffix in TEXT:
            yield path


def test_every_cited_document_is_in_the_repo():
    files = list(_files())
    names = {p.name for p in files if p.suffix == ".md"}
    missing, outside = [], []
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        where = path.relative_to(ROOT).as_posix()
        if any(marker in text for marker in OUTSIDE):
            outside.append(where)
        for ref in DOC.findall(text):
            found = (ROOT / ref).is_file() if "/" in ref else ref in names
            if not found:
                missing.append(f"{where}: {ref}")
    assert outside == [] and missing == []
    assert "ARCHITECTURE.md" in names and (ROOT / "docs/ARCHITECTURE.md").is_file()
