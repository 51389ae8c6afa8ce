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
