"""Text cues from rapidocr's PP-OCR models: where the text is, and — for a few boxes only — what it says.

Only the models that the ``rapidocr`` wheel ships (PP-OCRv6 small detection and recognition) and its
pre/post-processing are used, with our own onnxruntime sessions (no spinning, few threads); nothing is
downloaded. ``rapidocr`` 3.x depends on the headless OpenCV, as we do. Detection runs on the ≤ 960 px
working image as is (rapidocr would upscale the short side to 736 px, several times slower on a phone
screenshot). Recognition time grows with the line
count, so only the boxes a rule needs are read: the widest lines (card numbers, MRZ, titles) and the
status-bar band at the top of a screen.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import numpy as np

from xintu.classify.imagenet import session_options

READ_LIMIT = 10  # boxes recognised per image at most (≈ 30 ms each)
ID_NUMBER = re.compile(r"(?<!\d)\d{6}(19|20)\d{2}(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])\d{3}[\dXx](?!\d)")
CARD_NUMBER = re.compile(r"(?<!\d)(\d{4}[ -]?){3}\d{4}(\d{0,3})(?!\d)")
MRZ = re.compile(r"[A-Z0-9]{2,}<<|<<<")
ID_WORDS = re.compile(r"身份证|公民身份|居民身份|签发机关|有效期限|护照|驾驶证|社会保障|银行卡|IDENTITY|PASSPORT"
                      r"|ID\s?CARD|DRIVER|LICEN[CS]E|RESIDENT|DEBIT|CREDIT\s?CARD|VALID\s?THRU", re.I)
CLOCK = re.compile(r"^\D{0,3}([01]?\d|2[0-3])[:：][0-5]\d\D{0,3}$")


@dataclass
class TextCues:
    boxes: int = 0                 # text lines detected
    area: float = 0.0              # fraction of the image covered by text boxes
    texts: list[str] = field(default_factory=list)
    id_number: bool = False        # 18-digit resident ID or a 16–19 digit card number
    mrz: bool = False              # passport / travel document machine-readable zone
    id_words: bool = False         # 身份证 / IDENTITY / PASSPORT / … keywords
    status_clock: bool = False     # a HH:MM in the top band, as in a phone status bar


DET_MODEL = "PP-OCRv6_det_small.onnx"
REC_MODEL = "PP-OCRv6_rec_small.onnx"
REC_HEIGHT, REC_MIN_WIDTH = 48, 320
REC_BATCH = 8


def _model(name: str) -> str:
    import importlib.util
    spec = importlib.util.find_spec("rapidocr")
    if spec is None:
        raise ModuleNotFoundError("text detection needs the `rapidocr` package (pip install rapidocr)",
                                  name="rapidocr")
    path = os.path.join(os.path.dirname(spec.origin), "models", name)
    if not os.path.exists(path):
        raise FileNotFoundError(f"rapidocr does not ship {name}; install the version setup.cfg names")
    return path


class TextReader:
    def __init__(self, threads: int = 2):
        import onnxruntime as ort
        from rapidocr.ch_ppocr_det.utils import DBPostProcess, DetPreProcess
        from rapidocr.ch_ppocr_rec.utils import CTCLabelDecode

        options = session_options(threads)
        self.det = ort.InferenceSession(_model(DET_MODEL), options, providers=["CPUExecutionProvider"])
        self.pre = DetPreProcess(960, "max", [0.5, 0.5, 0.5], [0.5, 0.5, 0.5])
        self.post = DBPostProcess(thresh=0.3, box_thresh=0.5, max_candidates=300, unclip_ratio=1.6,
                                  use_dilation=True, score_mode="fast")
        self.rec = ort.InferenceSession(_model(REC_MODEL), options, providers=["CPUExecutionProvider"])
        # The recognition model carries its own character list in its metadata.
        chars = self.rec.get_modelmeta().custom_metadata_map["character"].splitlines()
        self.decode = CTCLabelDecode(character=chars)

    def _recognise(self, crops: list[np.ndarray]) -> list[tuple[str, float]]:
        """PaddleOCR's recognition input: height 48, width by the batch's widest aspect, [-1, 1], padded."""
        import cv2
        out: list[tuple[str, float]] = [("", 0.0)] * len(crops)
        order = np.argsort([c.shape[1] / c.shape[0] for c in crops])
        for start in range(0, len(crops), REC_BATCH):
            idx = order[start:start + REC_BATCH]
            ratio = max([REC_MIN_WIDTH / REC_HEIGHT] + [crops[i].shape[1] / crops[i].shape[0] for i in idx])
            width = int(REC_HEIGHT * ratio)
            batch = np.zeros((len(idx), 3, REC_HEIGHT, width), np.float32)
            for row, i in enumerate(idx):
                h, w = crops[i].shape[:2]
                resized_w = min(width, int(np.ceil(REC_HEIGHT * w / h)))
                img = cv2.resize(crops[i], (resized_w, REC_HEIGHT)).astype(np.float32)
                batch[row, :, :, :resized_w] = img.transpose(2, 0, 1) / 127.5 - 1.0
            preds = self.rec.run(None, {self.rec.get_inputs()[0].name: batch})[0]
            lines, _ = self.decode(preds)
            for row, i in enumerate(idx):
                out[i] = lines[row]
        return out

    def detect(self, rgb: np.ndarray) -> np.ndarray:
        """Quadrilaterals (N×4×2, pixel coordinates) of the text lines in an RGB uint8 image."""
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        x = self.pre(bgr)
        if x is None:
            return np.empty((0, 4, 2), np.float32)
        pred = self.det.run(None, {self.det.get_inputs()[0].name: x})[0]
        boxes, _ = self.post(pred, bgr.shape[:2])
        return np.asarray(boxes, np.float32).reshape(-1, 4, 2)

    def read(self, rgb: np.ndarray, boxes: np.ndarray) -> list[str]:
        """Text of each box ('' when unreadable), in the order given."""
        import cv2
        crops = []
        for quad in boxes:
            w = int(max(np.linalg.norm(quad[0] - quad[1]), np.linalg.norm(quad[2] - quad[3]), 4))
            h = int(max(np.linalg.norm(quad[0] - quad[3]), np.linalg.norm(quad[1] - quad[2]), 4))
            dst = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
            m = cv2.getPerspectiveTransform(quad.astype(np.float32), dst)
            crops.append(cv2.warpPerspective(rgb[:, :, ::-1], m, (w, h), borderMode=cv2.BORDER_REPLICATE,
                                             flags=cv2.INTER_CUBIC))
        if not crops:
            return []
        return [text.strip() if score >= 0.5 else "" for text, score in self._recognise(crops)]

    def cues(self, pil_img, read=True) -> TextCues:
        """Detect text lines; then read some of them if ``read`` (a bool, or a predicate on the detection-only
        cues, so a caller can skip the costly part once the boxes alone have decided)."""
        rgb = np.asarray(pil_img.convert("RGB"))
        H, W = rgb.shape[:2]
        boxes = self.detect(rgb)
        cues = TextCues(boxes=len(boxes))
        if not len(boxes):
            return cues
        xs, ys = boxes[:, :, 0], boxes[:, :, 1]
        widths, heights = xs.max(1) - xs.min(1), ys.max(1) - ys.min(1)
        cues.area = float(min(1.0, (widths * heights).sum() / (W * H)))
        if not (read(cues) if callable(read) else read):
            return cues
        top = np.where(ys.max(1) < 0.07 * H)[0][:4]
        wide = [i for i in np.argsort(-widths) if i not in set(top)][:READ_LIMIT - len(top)]
        pick = list(top) + wide
        texts = self.read(rgb, boxes[pick])
        cues.texts = [t for t in texts if t]
        joined = " ".join(cues.texts)
        compact = re.sub(r"\s", "", joined)
        cues.id_number = bool(ID_NUMBER.search(compact) or CARD_NUMBER.search(joined))
        cues.mrz = bool(MRZ.search(compact.upper()))
        cues.id_words = bool(ID_WORDS.search(joined))
        cues.status_clock = any(CLOCK.match(t) for t in texts[:len(top)])
        return cues
