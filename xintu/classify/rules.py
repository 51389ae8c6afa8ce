"""The rule table that turns cheap cues + ImageNet probabilities into one of the 8 categories.

Read it top to bottom: the first rule whose test holds wins. Order matters — an ID card photographed on a
table is also "a photo with text", a screenshot of a chat also contains faces in avatars — so the most
specific evidence (OCR'd card numbers, pixel-perfect flat UI) comes first and the ImageNet class groups
last. Thresholds were set on package-shipped photos plus synthetic screenshots and cards (see tests).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

#: Part of the cache key of local answers: bump when a rule or threshold changes.
RULES_VERSION = "r1"
CATEGORIES = ("social_activities", "pets", "single_person", "foods", "travel_scenery", "screenshot", "idcard",
              "other")

# ImageNet class index groups (0-based, the model's output order). Probabilities are *summed* per group:
# 120 dog breeds each get a little of a dog photo's mass, the sum is what says "dog".
_r = lambda a, b: list(range(a, b + 1))  # noqa: E731 — inclusive ranges read like the label file
GROUPS = {
    "dog": _r(151, 268),
    "cat": _r(281, 285),
    "small_pet": [1, 88, 89, 90, 330, 331, 332, 333, 338],
    "food": _r(923, 957) + _r(959, 969) + [415, 762, 809, 909, 567],
    "scenery": [970] + _r(972, 980),
    "landmark": [442, 449, 460, 483, 497, 500, 525, 536, 562, 576, 649, 663, 668, 672, 682, 698, 718, 727,
                 821, 832, 839, 853, 858, 863, 873, 888, 915],
    "text": [916, 917, 918, 919, 921, 922, 549, 692, 781, 782, 851, 664, 681, 620, 527, 480, 446],
}
LABEL_ZH = {"dog": "狗", "cat": "猫", "small_pet": "小宠物", "food": "美食", "scenery": "自然风光",
            "landmark": "名胜建筑"}

# Screens people take screenshots of (either orientation).
SCREEN_SIZES = {(720, 1280), (720, 1600), (750, 1334), (828, 1792), (1080, 1920), (1080, 2340), (1080, 2400),
                (1125, 2436), (1170, 2532), (1179, 2556), (1242, 2208), (1242, 2688), (1284, 2778),
                (1290, 2796), (1440, 2560), (1440, 3088), (1440, 3120), (1440, 3200), (768, 1366),
                (900, 1440), (900, 1600), (1080, 1920), (1200, 1920), (1440, 2560), (1600, 2560),
                (1800, 2880), (864, 1536), (800, 1280), (720, 1280), (1964, 3024), (2160, 3840)}


@dataclass
class Cues:
    width: int
    height: int
    camera: bool = False          # EXIF names a camera or a capture time
    flat: float = 0.0             # share of neighbouring pixel pairs that are (nearly) identical
    probs: dict = field(default_factory=dict)   # group → summed probability
    top: list = field(default_factory=list)     # [(label, p)] top ImageNet classes
    faces: int = 0                # confident, not tiny faces
    face_score: float = 0.0
    text: object = None           # ocr.TextCues or None when OCR was not needed

    @property
    def aspect(self) -> float:
        return max(self.width, self.height) / max(1, min(self.width, self.height))

    @property
    def screen_size(self) -> bool:
        return tuple(sorted((self.width, self.height))) in SCREEN_SIZES

    def p(self, *groups) -> float:
        return sum(self.probs.get(g, 0.0) for g in groups)


def _card_text(c: Cues) -> bool:
    t = c.text
    return bool(t and (t.mrz or (t.id_number and (t.id_words or 1.45 <= c.aspect <= 1.75)) or
                       (t.id_words and 1.45 <= c.aspect <= 1.75)))


def _screen(c: Cues) -> bool:
    t = c.text
    ui_like = c.screen_size or (t is not None and (t.status_clock or t.boxes >= 8))
    return not c.camera and c.flat >= 0.45 and ui_like


def _pet_kind(c: Cues) -> str:
    return max(("dog", "cat", "small_pet"), key=lambda g: c.p(g))


@dataclass(frozen=True)
class Rule:
    category: str
    test: Callable[[Cues], bool]
    confidence: Callable[[Cues], float]
    describe: Callable[[Cues], str]


RULES = [
    Rule("idcard", _card_text, lambda c: 0.9, lambda c: "证件或卡片照片"),
    Rule("screenshot", _screen, lambda c: 0.9 if c.screen_size else 0.8, lambda c: "屏幕截图"),
    Rule("social_activities", lambda c: c.faces >= 2, lambda c: min(0.9, 0.6 + 0.05 * c.faces),
         lambda c: f"多人合影（{c.faces} 张人脸）"),
    Rule("single_person", lambda c: c.faces == 1, lambda c: round(0.85 * c.face_score, 3),
         lambda c: "单人照片"),
    Rule("other", lambda c: not c.camera and c.flat >= 0.6, lambda c: 0.6, lambda c: "图形或插画"),
    Rule("pets", lambda c: c.p("dog", "cat", "small_pet") >= 0.35,
         lambda c: min(0.95, 0.5 + c.p("dog", "cat", "small_pet") / 2), lambda c: f"宠物照片（{LABEL_ZH[_pet_kind(c)]}）"),
    Rule("foods", lambda c: c.p("food") >= 0.35, lambda c: min(0.95, 0.5 + c.p("food") / 2), lambda c: "美食照片"),
    Rule("travel_scenery", lambda c: c.p("scenery", "landmark") >= 0.3,
         lambda c: min(0.9, 0.45 + c.p("scenery", "landmark") / 2),
         lambda c: "旅行风景（{}）".format(LABEL_ZH["landmark" if c.p("landmark") > c.p("scenery") else "scenery"])),
    Rule("other", lambda c: True, lambda c: 0.4, lambda c: "其他照片"),
]


def needs_ocr(c: Cues) -> bool:
    """OCR costs 10× the rest: run it only when the picture could be a card or a screen."""
    return (c.flat >= 0.4 or c.p("text") >= 0.2 or 1.45 <= c.aspect <= 1.75 and c.p("text") >= 0.05
            or c.screen_size)


def needs_reading(c: Cues, t) -> bool:
    """Reading text lines is the slowest step (≈ 30 ms a line): skip it when the detected boxes alone make
    this a screenshot — a known screen size, or a flat, text-heavy image that is not card-shaped."""
    if c.camera or c.flat < 0.45 or not t.boxes:
        return bool(t.boxes)
    return not (c.screen_size or (t.boxes >= 8 and not 1.45 <= c.aspect <= 1.75))


def decide(c: Cues) -> tuple[str, float, str, str]:
    """(category, confidence, Chinese description ≤ 30 chars, the rule's index as a reason)."""
    for i, rule in enumerate(RULES):
        if rule.test(c):
            return rule.category, round(float(rule.confidence(c)), 3), rule.describe(c)[:30], f"rule{i}"
    raise AssertionError("the last rule always matches")
