"""The ImageNet classifier: EfficientNet-Lite0 in ONNX, run by onnxruntime, plus its 1000 labels.

The ONNX file is not shipped: it is built from the weights package at first use (``convert.py``) into a
model folder (the instance folder by default) and reused afterwards. Several workers may start at once, so
the build happens under an exclusive file lock and lands by atomic rename.
"""
from __future__ import annotations

import fcntl
import os
from functools import lru_cache
from importlib import resources

import numpy as np

MODEL_FILE = "efficientnet-lite0.onnx"
#: Part of the cache key of local answers: bump when the converter, preprocessing or rules change.
MODEL_VERSION = "lite0-1"
INPUT_SIZE, RESIZE_SHORT = 224, 256


def ensure_model(model_dir: str) -> str:
    path = os.path.join(model_dir, MODEL_FILE)
    if os.path.exists(path):
        return path
    os.makedirs(model_dir, exist_ok=True)
    with open(os.path.join(model_dir, MODEL_FILE + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.exists(path):  # another process may have built it while we waited
            # once per machine, when the ONNX file is missing: the converter stays out of normal start-up
            from xintu.classify.convert import convert
            convert(dst=path)
    return path


@lru_cache(maxsize=1)
def labels() -> list[str]:
    """Class index → short English label (first WordNet lemma)."""
    text = resources.files("xintu.classify").joinpath("imagenet_labels.txt").read_text("utf-8")
    return [line.split("\t", 1)[1].split(",")[0] for line in text.splitlines() if line]


def index_of(label: str) -> int:
    """The class index of a label (its first lemma, as in the label file); a typo fails at import."""
    try:
        return labels().index(label)
    except ValueError:
        raise KeyError(f"no ImageNet class {label!r}") from None


def session_options(threads: int = 2):
    import onnxruntime as ort
    so = ort.SessionOptions()
    # Idle gunicorn workers must not spin on CPU waiting for work that a sibling is doing.
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return so


def to_tensor(img) -> np.ndarray:
    """PIL RGB → 1×3×224×224 float32: short side 256, centre crop 224, (x − 127) / 128 as the TF Lite model."""
    from PIL import Image
    w, h = img.size
    scale = RESIZE_SHORT / min(w, h)
    img = img.resize((max(INPUT_SIZE, round(w * scale)), max(INPUT_SIZE, round(h * scale))), Image.BILINEAR)
    w, h = img.size
    left, top = (w - INPUT_SIZE) // 2, (h - INPUT_SIZE) // 2
    arr = np.asarray(img.crop((left, top, left + INPUT_SIZE, top + INPUT_SIZE)), dtype=np.float32)
    arr = (arr - 127.0) * (1.0 / 128.0)
    return np.ascontiguousarray(arr.transpose(2, 0, 1)[None])


class ImageNetModel:
    """One onnxruntime session per process; ``run`` is safe to call from several threads."""

    def __init__(self, model_dir: str, threads: int = 2):
        import onnxruntime as ort
        self.path = ensure_model(model_dir)
        self.session = ort.InferenceSession(self.path, session_options(threads),
                                            providers=["CPUExecutionProvider"])

    def run(self, tensor: np.ndarray) -> np.ndarray:
        return self.session.run(["probs"], {"input": tensor})[0][0]

    def predict(self, img) -> np.ndarray:
        return self.run(to_tensor(img))

    @staticmethod
    def top(probs: np.ndarray, k: int = 5) -> list[tuple[str, float]]:
        names = labels()
        return [(names[i], float(probs[i])) for i in np.argsort(probs)[::-1][:k]]
