"""Per-category recall of the local model on the dev set (tests/classify_devset.py), as docs/classify.md
reports it: a rule change that loses photos fails here, and so does a table left out of step."""
import re
from pathlib import Path

import pytest

from tests.classify_devset import GRAPHICS, REAL_PHOTOS, SYNTHETIC, evaluate, recall

DOC = Path(__file__).resolve().parents[1] / "docs" / "classify.md"


@pytest.fixture(scope="module")
def answers(local_classifier):
    return evaluate(local_classifier)   # ~70 images, 20–30 s on 2 cores


def test_dev_set_is_mostly_real_photos_and_covers_every_category():
    from xintu.classify.rules import CATEGORIES
    assert len(REAL_PHOTOS) >= 25 and len(REAL_PHOTOS) > 2 * len(SYNTHETIC) + len(GRAPHICS)
    covered = set(REAL_PHOTOS.values()) | {cat for cat, _ in SYNTHETIC.values()}
    assert covered == set(CATEGORIES)


def test_recall_is_at_least_90_percent_and_no_category_below_75(answers):
    figures = recall(answers)
    misses = {name: got for name, got in answers.items() if got[0] != got[1]}
    ok, total = figures.pop("overall")
    assert ok / total >= 0.9, misses
    # A floor per category needs photos to stand on: categories with fewer than 4 are reported in the docs
    # table (and held there by the test below) but not floored.
    assert {cat: f"{r}/{n}" for cat, (r, n) in figures.items() if n >= 4 and r / n < 0.75} == {}, misses


def test_docs_quote_the_measured_recall(answers):
    rows = dict(re.findall(r"^\| (\w+) \| (\d+ / \d+) \|", DOC.read_text("utf-8"), re.M))
    measured = {cat: f"{r} / {n}" for cat, (r, n) in recall(answers).items()}
    assert rows == measured
