"""The rule table that turns cheap cues + ImageNet probabilities into one of the 8 categories.

Read it top to bottom: the first rule whose test holds wins. Order matters — an ID card photographed on a
table is also "a photo with text", a screenshot of a chat also contains faces in avatars — so the most
specific evidence (OCR'd card numbers, pixel-perfect flat UI) comes first and the ImageNet class groups
last. Thresholds were set on package-shipped photos plus synthetic screenshots and cards (see tests).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from xintu.classify.imagenet import index_of

#: Part of the cache key of local answers: bump when a rule or threshold changes.
RULES_VERSION = "r3"
CATEGORIES = ("social_activities", "pets", "single_person", "foods", "travel_scenery", "screenshot", "idcard",
              "other")

# ImageNet class index groups (0-based, the model's output order). Probabilities are *summed* per group:
# 120 dog breeds each get a little of a dog photo's mass, the sum is what says "dog".
_r = lambda a, b: list(range(a, b + 1))  # noqa: E731 — inclusive ranges read like the label file

#: Domestic animals, by the label file's first lemma (``imagenet.index_of`` checks every name exists).
#: Dogs and cats are WordNet-contiguous: every domestic dog (n02085620 Chihuahua … n02113978 Mexican
#: hairless) and every domestic cat (n02123045 tabby … n02124075 Egyptian cat). The rest are the classes
#: people keep at home: rabbits/hares, rodents, caged birds, aquarium fish, pet turtles and lizards.
PET_RANGES = {"dog": ("Chihuahua", "Mexican hairless"), "cat": ("tabby", "Egyptian cat")}
PET_NAMES = {
    "small_pet": ("wood rabbit", "hare", "Angora", "hamster", "guinea pig", "black-footed ferret"),
    "bird": ("African grey", "macaw", "sulphur-crested cockatoo", "lorikeet", "house finch", "goldfinch"),
    "fish": ("goldfish", "anemone fish", "rock beauty", "puffer", "lionfish"),
    "reptile": ("mud turtle", "terrapin", "box turtle", "banded gecko", "common iguana",
                "American chameleon", "African chameleon", "axolotl"),
}
#: Wild relatives that a kitten or a puppy in poor light is often taken for (foxes, wolves, lynx): evidence
#: of a pet only next to real pet classes, never alone (see ``pet_score``).
PET_LOOKALIKES = ("timber wolf", "white wolf", "red wolf", "coyote", "dingo", "red fox", "kit fox",
                  "Arctic fox", "grey fox", "lynx")
PET_GROUPS = ("dog", "cat", "small_pet", "bird", "fish", "reptile")


def _pet_groups() -> dict:
    groups = {g: _r(index_of(a), index_of(b)) for g, (a, b) in PET_RANGES.items()}
    groups.update({g: [index_of(n) for n in names] for g, names in PET_NAMES.items()})
    groups["pet_lookalike"] = [index_of(n) for n in PET_LOOKALIKES]
    return groups


GROUPS = {
    **_pet_groups(),
    "food": _r(923, 957) + _r(959, 969) + [415, 762, 809, 909, 567],
    "scenery": [970] + _r(972, 980),
    "landmark": [442, 449, 460, 483, 497, 500, 525, 536, 562, 576, 649, 663, 668, 672, 682, 698, 718, 727,
                 821, 832, 839, 853, 858, 863, 873, 888, 915],
    "text": [916, 917, 918, 919, 921, 922, 549, 692, 781, 782, 851, 664, 681, 620, 527, 480, 446],
}
PET_INDEXES = sorted(i for g in PET_GROUPS for i in GROUPS[g])
LABEL_ZH = {"dog": "狗", "cat": "猫", "small_pet": "小宠物", "bird": "宠物鸟", "fish": "观赏鱼",
            "reptile": "宠物龟或蜥蜴", "food": "美食", "scenery": "自然风光", "landmark": "名胜建筑"}

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
    pet_peak: float = 0.0         # the largest single pet-class probability
    colours: int = 0              # distinct colours of the working image (measured only when flat)
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
    """Flat, not from a camera, and shaped or laid out like a screen. A screen-sized picture in which OCR
    found no text at all is a wallpaper or a drawing saved at the screen's size, not a capture of a screen
    (every app, desktop and lock screen shows some text)."""
    t = c.text
    ui_like = (c.screen_size and (t is None or t.boxes > 0)) or (t is not None and (t.status_clock or t.boxes >= 8))
    return not c.camera and c.flat >= 0.45 and ui_like


#: A pet fills the frame: its summed probability alone says so.
PET_SURE = 0.35
#: A pet partly hidden (behind a mug, two kittens in a basket) spreads its mass over breeds and wild
#: look-alikes: a moderate score still wins when it is well clear of every other group.
PET_PARTIAL, PET_MARGIN = 0.18, 2.0
#: ... but only with one pet class that stands out: grass or fur-like textures spread a few percent over
#: 118 dog breeds, which adds up without any breed being likely.
PET_PEAK = 0.1


def pet_score(c: Cues) -> float:
    """Summed pet probability. Foxes/wolves/lynx add at most as much as the real pet classes have (a
    kitten taken half for a kit fox), so a fox in the woods with a little dog mass stays what it is."""
    pets = c.p(*PET_GROUPS)
    return pets + min(c.p("pet_lookalike"), pets) if pets >= 0.08 else pets


def _pets(c: Cues) -> bool:
    if c.p(*PET_GROUPS) >= PET_SURE:
        return True
    score = pet_score(c)
    rival = max(c.p("food"), c.p("scenery", "landmark"), c.p("text"))
    return score >= PET_PARTIAL and c.pet_peak >= PET_PEAK and score >= PET_MARGIN * rival


#: Drawn graphics use few colours; a product shot on a white sweep or a dark cat, JPEG-compressed hard
#: (as messengers do), is as flat but keeps thousands of colours in its subject.
GRAPHIC_COLOURS = 2000


def _graphic(c: Cues) -> bool:
    """Flat and not from a camera: a drawing — unless it has a photo's colours and ImageNet recognises a
    pet, a dish or a view in it (then the class-group rules below decide)."""
    if c.camera or c.flat < 0.6:
        return False
    photo_like = c.colours >= GRAPHIC_COLOURS and (_pets(c) or _food(c) or _view(c))
    return not photo_like


def _food(c: Cues) -> bool:
    """A dish or a drink; like pets, a moderate share that is well clear of the other groups (drinks in
    hands spread over espresso, cup, eggnog…) counts."""
    food = c.p("food")
    rival = max(pet_score(c), c.p("scenery", "landmark"), c.p("text"))
    return food >= 0.35 or (food >= 0.25 and food >= PET_MARGIN * rival)


#: A view: scenery and landmark classes summed. Like pets and foods, a moderate share that is well clear of
#: every other group also counts — a sunset over hills spreads its mass over valley, alp, lakeside, geyser…
VIEW_SURE, VIEW_PARTIAL = 0.3, 0.25


def _view(c: Cues) -> bool:
    view = c.p("scenery", "landmark")
    rival = max(pet_score(c), c.p("food"), c.p("text"))
    return view >= VIEW_SURE or (view >= VIEW_PARTIAL and view >= PET_MARGIN * rival)


def _pet_kind(c: Cues) -> str:
    return max(PET_GROUPS, key=lambda g: c.p(g))


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
    Rule("other", _graphic, lambda c: 0.6, lambda c: "图形或插画"),
    Rule("pets", _pets, lambda c: min(0.95, 0.45 + pet_score(c) / 2),
         lambda c: f"宠物照片（{LABEL_ZH[_pet_kind(c)]}）"),
    Rule("foods", _food, lambda c: min(0.95, 0.5 + c.p("food") / 2), lambda c: "美食照片"),
    Rule("travel_scenery", _view,
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
