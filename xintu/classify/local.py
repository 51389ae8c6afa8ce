"""The local model: ImageNet classifier + faces + text cues → one of 8 categories, offline and key-free."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from xintu.classify import rules
from xintu.classify.faces import FaceDetector
from xintu.classify.imagenet import MODEL_VERSION, ImageNetModel, to_tensor
from xintu.classify.ocr import TextReader

MIN_FACE_WIDTH = 0.035      # of the image width: smaller faces are passers-by, not the subject
MAIN_FACE_RATIO = 0.3       # faces much smaller than the largest one are background people
# The classifier scales the short side to 256 px: a 960×1 strip would become a 245 760 px-wide bitmap
# (+250 MB peak, scripts/bench/classify_strip.py) of which it sees a sliver. Such images are not read.
MIN_SIDE, MAX_ASPECT = 8, 20


class LocalFailure(Exception):
    """The local model gave no answer for this image (not a low-confidence answer: none)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class LocalResult:
    category: str
    confidence: float
    description: str
    reason: str
    cues: dict = field(default_factory=dict)


def colour_count(img) -> int:
    """Distinct RGB colours (a drawing has few, a photo thousands): about two flatness() passes, so it
    runs only for images the graphics rule looks at."""
    a = np.asarray(img.convert("RGB"))
    packed = (a[:, :, 0].astype(np.int32) << 16) | (a[:, :, 1].astype(np.int32) << 8) | a[:, :, 2]
    return int(np.unique(packed).size)


def flatness(img) -> float:
    """Share of horizontally/vertically adjacent pixel pairs that are exactly the same colour.

    Rendered UI is mostly runs of identical pixels (JPEG keeps flat 8×8 blocks exact too); a camera's
    sensor noise makes almost every pair differ, even in a blue sky or a blurred background, where a
    ±1 tolerance would not. Photos measured 0.01–0.35, graphics ≥ 0.48, screenshots ≥ 0.73.
    """
    a = np.asarray(img.convert("RGB")).view(np.uint8)
    if a.shape[0] < 2 or a.shape[1] < 2:
        return 1.0
    packed = (a[:, :, 0].astype(np.int32) << 16) | (a[:, :, 1].astype(np.int32) << 8) | a[:, :, 2]
    same = (packed[:, 1:] == packed[:, :-1]).mean() + (packed[1:] == packed[:-1]).mean()
    return float(same / 2)


class LocalClassifier:
    version = MODEL_VERSION

    def __init__(self, model_dir: str, threads: int = 2, use_ocr: bool = True):
        self.model = ImageNetModel(model_dir, threads)
        self.threads = threads
        self.use_ocr = use_ocr
        self._faces = self._reader = None
        self._lock = threading.Lock()

    @property
    def faces(self):
        with self._lock:
            if self._faces is None:
                self._faces = FaceDetector(self.threads)
            return self._faces

    @property
    def reader(self):
        with self._lock:
            if self._reader is None:
                self._reader = TextReader(self.threads)
            return self._reader

    def warm(self) -> None:
        """Load every model now (before forking workers or serving), not inside the first request."""
        self.faces, self.reader  # noqa: B018 — the properties load them

    def cues(self, intake) -> rules.Cues:
        img = intake.image
        w, h = img.size
        if min(w, h) < MIN_SIDE or max(w, h) > MAX_ASPECT * min(w, h):
            raise LocalFailure("unreadable_image")
        probs = self.model.run(to_tensor(img))
        c = rules.Cues(width=intake.width, height=intake.height, camera=intake.camera, flat=flatness(img))
        c.probs = {name: float(probs[idx].sum()) for name, idx in rules.GROUPS.items()}
        c.top = [(label, round(p, 4)) for label, p in ImageNetModel.top(probs, 3)]
        c.pet_peak = float(probs[rules.PET_INDEXES].max())
        if c.flat >= 0.6 and not c.camera:  # only the graphics rule asks
            c.colours = colour_count(img)
        if self.use_ocr and rules.needs_ocr(c):
            c.text = self.reader.cues(img, read=lambda t: rules.needs_reading(c, t))
        if not (c.text and c.text.boxes >= 8 and c.flat >= 0.45):  # avatars in a chat are not a group photo
            found = [f for f in self.faces.faces(img) if f["box"][2] >= MIN_FACE_WIDTH]
            if found:
                largest = found[0]["box"][2]
                main = [f for f in found if f["box"][2] >= MAIN_FACE_RATIO * largest]
                c.faces, c.face_score = len(main), float(np.mean([f["score"] for f in main]))
        return c

    def classify(self, intake) -> LocalResult:
        c = self.cues(intake)
        category, confidence, description, reason = rules.decide(c)
        detail = {"top": c.top, "faces": c.faces, "flat": round(c.flat, 3),
                  "groups": {k: round(v, 3) for k, v in c.probs.items() if v >= 0.05}}
        if c.text is not None:
            detail["text_boxes"] = c.text.boxes
        return LocalResult(category, confidence, description, reason, detail)


_instances: dict[str, LocalClassifier] = {}
_lock = threading.Lock()


def get_local(model_dir: str, threads: int = 2) -> LocalClassifier:
    """One classifier (and one set of onnxruntime sessions) per process and model folder."""
    with _lock:
        if model_dir not in _instances:
            _instances[model_dir] = LocalClassifier(model_dir, threads)
        return _instances[model_dir]
