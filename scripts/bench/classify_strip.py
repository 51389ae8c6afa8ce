"""Memory of a degenerate working image, against a normal photo measured in the same run.

    python scripts/bench/classify_strip.py

Each case runs in a fresh interpreter and reports the growth of its peak RSS (``ru_maxrss``) over the
imports: (a) the ImageNet preprocessing (``to_tensor``) of a 960×720 working image, the baseline;
(b) the same of a 960×1 strip (a valid 3000×2 PNG after intake), which the classifier used to scale to
256 px on its short side; (c) ``LocalClassifier.cues`` on that strip now, which refuses it
(``LocalFailure``) before any resize, so the service can ask the LLM or answer 422 ``image_unreadable``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
CHILD = r'''
import io, json, resource, sys, tempfile
from PIL import Image
from xintu.classify.imagenet import to_tensor
from xintu.classify.intake import decode
from xintu.classify import local
size = tuple(json.loads(sys.argv[2]))
buf = io.BytesIO()
Image.new("RGB", size, (120, 30, 200)).save(buf, "PNG")
intake = decode(buf.getvalue())
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if sys.argv[1] == "tensor":
    to_tensor(intake.image)
    outcome = "tensor"
else:
    clf = local.LocalClassifier.__new__(local.LocalClassifier)  # no model needed: the check comes first
    try:
        clf.cues(intake)
        outcome = "answered"
    except local.LocalFailure as exc:
        outcome = exc.reason
print(json.dumps({"mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024,
                  "outcome": outcome}))
'''


def run(kind: str, size) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, kind, json.dumps(size)], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    base = run("tensor", (960, 720))
    strip = run("tensor", (3000, 2))
    now = run("cues", (3000, 2))
    print(f"(a) to_tensor 960×720 working image      +{base['mb']:7.1f} MB  (baseline)")
    print(f"(b) to_tensor 960×1 strip (rules r1 path) +{strip['mb']:7.1f} MB  "
          f"(+{strip['mb'] - base['mb']:.1f} MB over the baseline)")
    print(f"(c) cues() on the strip now              +{now['mb']:7.1f} MB  → {now['outcome']}")


if __name__ == "__main__":
    main()
