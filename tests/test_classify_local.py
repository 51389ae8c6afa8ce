"""The local model: torch-free conversion, ImageNet on real photos, faces, text cues, the rule table."""
import io
import os

import numpy as np
import pytest

from tests.classify_images import PACKAGE_PHOTOS, desktop_screenshot, id_card, package_photo, phone_screenshot
from xintu.classify.intake import decode


def test_legacy_pth_is_read_without_torch():
    from xintu.classify.convert import load_legacy_state_dict, weights_path
    weights = load_legacy_state_dict(weights_path())
    assert len(weights) == 296
    assert weights["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert weights["_fc.weight"].shape == (1000, 1280) and weights["_fc.weight"].dtype == np.float32
    assert weights["_bn0.num_batches_tracked"].dtype == np.int64
    assert np.isfinite(weights["_blocks.15._project_conv.weight"]).all()
    assert 0.5 < float(weights["_bn1.running_var"].mean()) < 50  # real statistics, not zeros or garbage


def test_model_is_built_once_and_reused(tmp_path):
    from xintu.classify.imagenet import MODEL_FILE, ensure_model
    path = ensure_model(str(tmp_path))
    assert path == str(tmp_path / MODEL_FILE) and os.path.getsize(path) > 15_000_000
    mtime = os.stat(path).st_mtime_ns
    assert ensure_model(str(tmp_path)) == path and os.stat(path).st_mtime_ns == mtime
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]


@pytest.mark.parametrize("ref, label", [("skimage:chelsea.png", {"tabby", "tiger cat", "Egyptian cat"}),
                                        ("skimage:coffee.png", {"espresso"}),
                                        ("sklearn:china.jpg", {"palace"})])
def test_converted_model_recognises_imagenet_classes(local_classifier, ref, label):
    probs = local_classifier.model.predict(decode(package_photo(ref)).image)
    (top, p), = local_classifier.model.top(probs, 1)
    assert top in label and p > 0.3
    assert abs(float(probs.sum()) - 1) < 1e-3


@pytest.mark.parametrize("ref", sorted(PACKAGE_PHOTOS))
def test_package_photo_gets_its_category(local_classifier, ref):
    result = local_classifier.classify(decode(package_photo(ref)))
    assert result.category == PACKAGE_PHOTOS[ref], result
    assert 0 < result.confidence <= 1 and 0 < len(result.description) <= 30


def test_two_people_side_by_side_are_a_social_photo(local_classifier):
    from PIL import Image
    left = Image.open(io.BytesIO(package_photo("skimage:astronaut.png"))).convert("RGB").resize((512, 600))
    right = Image.open(io.BytesIO(package_photo("matplotlib:grace_hopper.jpg"))).convert("RGB")
    pair = Image.new("RGB", (1024, 600))
    pair.paste(left, (0, 0))
    pair.paste(right, (512, 0))
    buf = io.BytesIO()
    pair.save(buf, "JPEG", quality=90)
    result = local_classifier.classify(decode(buf.getvalue()))
    assert result.category == "social_activities" and result.cues["faces"] == 2


def test_faces_are_found_on_people_not_on_cats_or_coins(local_classifier):
    faces = local_classifier.faces
    assert len(faces.faces(decode(package_photo("skimage:astronaut.png")).image)) == 1
    assert faces.faces(decode(package_photo("skimage:chelsea.png")).image) == []
    assert faces.faces(decode(package_photo("skimage:coins.png")).image) == []


@pytest.mark.parametrize("make", [phone_screenshot, desktop_screenshot, lambda: phone_screenshot(7)])
def test_synthetic_screenshots_are_screenshots(local_classifier, make):
    result = local_classifier.classify(decode(make()))
    assert result.category == "screenshot", result


@pytest.mark.parametrize("on_table", [False, True])
def test_synthetic_id_cards_are_idcards(local_classifier, on_table):
    result = local_classifier.classify(decode(id_card(on_table)))
    assert result.category == "idcard", result


def test_ocr_reads_the_card_number(local_classifier):
    cues = local_classifier.reader.cues(decode(id_card()).image)
    assert cues.id_number and cues.id_words and not cues.mrz
    assert any("11010519900101123X" in t.replace(" ", "") for t in cues.texts)


def test_rule_table_order_prefers_specific_evidence():
    from xintu.classify import rules
    from xintu.classify.ocr import TextCues
    card_text = TextCues(boxes=12, id_number=True, id_words=True)
    # A flat, text-heavy, card-shaped picture with a card number is a card, not a screenshot.
    c = rules.Cues(width=856, height=540, flat=0.8, text=card_text)
    assert rules.decide(c)[0] == "idcard"
    # The same flatness on a known phone screen without card text is a screenshot; faces in it don't count.
    c = rules.Cues(width=1080, height=2340, flat=0.9, faces=3, text=TextCues(boxes=20))
    assert rules.decide(c)[0] == "screenshot"
    # A camera photo is never a screenshot, however flat.
    c = rules.Cues(width=1080, height=2340, flat=0.9, camera=True, probs={"dog": 0.6}, text=TextCues(boxes=20))
    assert rules.decide(c)[0] == "pets"
    assert rules.decide(rules.Cues(width=640, height=480, probs={"food": 0.2, "scenery": 0.1}))[0] == "other"
    assert set(r.category for r in rules.RULES) == set(rules.CATEGORIES)


def test_pet_groups_hold_every_domestic_breed_and_no_wild_cat():
    from xintu.classify import rules
    from xintu.classify.imagenet import index_of, labels
    names = labels()
    assert [names[i] for i in rules.GROUPS["dog"]][:2] == ["Chihuahua", "Japanese spaniel"]
    assert len(rules.GROUPS["dog"]) == 118 and names[rules.GROUPS["dog"][-1]] == "Mexican hairless"
    assert {names[i] for i in rules.GROUPS["cat"]} == {"tabby", "tiger cat", "Persian cat", "Siamese cat",
                                                       "Egyptian cat"}
    pets = {names[i] for i in rules.PET_INDEXES}
    assert {"goldfish", "hamster", "guinea pig", "Angora", "macaw", "lorikeet", "box turtle"} <= pets
    assert not {"lion", "tiger", "lynx", "kit fox", "timber wolf", "loggerhead"} & pets
    with pytest.raises(KeyError):
        index_of("unicorn")


@pytest.mark.parametrize("probs, peak, expected", [
    ({"cat": 0.9}, 0.5, "pets"),
    # two kittens taken half for a kit fox: tiger cat 0.14 + other cats + the fox → a pet
    ({"cat": 0.2, "pet_lookalike": 0.14}, 0.14, "pets"),
    # a cat asleep behind a mug: the pet is moderate but well clear of the cup (a food class)
    ({"cat": 0.22, "food": 0.08}, 0.12, "pets"),
    ({"cat": 0.22, "food": 0.2}, 0.12, "other"),      # not clear of the rival group
    ({"dog": 0.28}, 0.03, "other"),                   # grass: a little of every breed, no breed likely
    ({"pet_lookalike": 0.6}, 0.0, "other"),           # a fox in the woods is not a pet
    ({"pet_lookalike": 0.6, "dog": 0.08}, 0.03, "other"),  # … nor with a little dog mass beside it
    ({"fish": 0.4}, 0.4, "pets"),                      # a goldfish
    ({"food": 0.3, "cat": 0.04}, 0.04, "foods"),       # drinks in hands: moderate, clear of the rest
])
def test_pet_rule_weighs_partly_visible_animals(probs, peak, expected):
    from xintu.classify import rules
    assert rules.decide(rules.Cues(width=640, height=480, probs=probs, pet_peak=peak))[0] == expected


def test_flat_photo_of_a_pet_is_a_pet_but_a_flat_drawing_stays_a_graphic():
    from xintu.classify import rules
    flat_photo = rules.Cues(width=640, height=427, flat=0.7, colours=3600, probs={"cat": 0.46}, pet_peak=0.16)
    assert rules.decide(flat_photo)[0] == "pets"
    silhouette = rules.Cues(width=400, height=328, flat=0.97, colours=128, probs={"dog": 0.72}, pet_peak=0.25)
    assert rules.decide(silhouette)[:3:2] == ("other", "图形或插画")


@pytest.mark.parametrize("probs, expected", [
    ({"scenery": 0.6}, "travel_scenery"),
    # a sunset over hills: valley, alp, lakeside, geyser… each a little, together clear of the rest
    ({"scenery": 0.17, "landmark": 0.12, "food": 0.03, "dog": 0.03}, "travel_scenery"),
    ({"scenery": 0.27, "food": 0.15}, "other"),        # moderate, but not clear of the food classes
    ({"scenery": 0.2}, "other"),                        # too little, however clear
])
def test_view_rule_takes_a_moderate_view_that_is_clear_of_the_rest(probs, expected):
    from xintu.classify import rules
    assert rules.decide(rules.Cues(width=640, height=480, probs=probs))[0] == expected


def test_a_screen_sized_picture_without_any_text_is_not_a_screenshot():
    from xintu.classify import rules
    from xintu.classify.ocr import TextCues
    wallpaper = rules.Cues(width=3840, height=2160, flat=0.56, probs={"landmark": 0.17}, text=TextCues(boxes=0))
    assert rules.decide(wallpaper)[0] == "other"
    # One line of text on it (a clock, a menu bar) is enough for a known screen size.
    wallpaper.text = TextCues(boxes=2)
    assert rules.decide(wallpaper)[0] == "screenshot"
