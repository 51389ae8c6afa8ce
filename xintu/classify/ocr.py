"""Text cues from rapidocr's PP-OCRv4 models: where the text is, and — for a few boxes only — what it says.

Only the models and rapidocr's pre/post-processing are used, with our own onnxruntime sessions (no
spinning, few threads). Detection runs on the ≤ 960 px working image as is (rapidocr would upscale the
short side to 736 px, several times slower on a phone screenshot). Recognition time grows with the line
count, so only the boxes a rule needs are read: the widest lines (card numbers, MRZ, titles) and the
status-bar band at the top of a screen.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import numpy as np

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


def _model(name: str) -> str:
    import importlib.util
    spec = importlib.util.find_spec("rapidocr_onnxruntime")
    return os.path.join(os.path.dirname(spec.origin), "models", name)


class TextReader:
    def __init__(self, threads: int = 2):
        import onnxruntime as ort
        from rapidocr_onnxruntime.ch_ppocr_det.utils import DBPostProcess, DetPreProcess
        from rapidocr_onnxruntime.ch_ppocr_rec import TextRecognizer
        from xintu.classify.imagenet import session_options
        self.det = ort.InferenceSession(_model("ch_PP-OCRv4_det_infer.onnx"), session_options(threads),
                                        providers=["CPUExecutionProvider"])
        self.pre = DetPreProcess(960, "max", [0.5, 0.5, 0.5], [0.5, 0.5, 0.5])
        self.post = DBPostProcess(thresh=0.3, box_thresh=0.5, max_candidates=300, unclip_ratio=1.6,
                                  use_dilation=True, score_mode="fast")
        self.rec = TextRecognizer({"model_path": _model("ch_PP-OCRv4_rec_infer.onnx"), "rec_batch_num": 8,
                                   "rec_img_shape": [3, 48, 320], "intra_op_num_threads": threads,
                                   "inter_op_num_threads": 1})
        # rapidocr builds its own session; give it the same no-spinning options as ours.
        self.rec.session.session = ort.InferenceSession(_model("ch_PP-OCRv4_rec_infer.onnx"),
                                                        session_options(threads),
                                                        providers=["CPUExecutionProvider"])

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
        result = self.rec(crops)[0]
        return [text.strip() if score >= 0.5 else "" for text, score in result]

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
