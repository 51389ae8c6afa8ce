"""Test images: real photos that ship inside PyPI packages, and synthetic screenshots / ID cards.

Nothing is downloaded: scikit-image, scikit-learn and matplotlib (the ``test`` extra) carry the photos,
matplotlib carries the DejaVu font the synthetic images are drawn with.
"""
from __future__ import annotations

import functools
import io
import os

#: photo → the category the local model must give it (and why a person would agree).
PACKAGE_PHOTOS = {
    "skimage:astronaut.png": "single_person",       # Eileen Collins, one face, portrait
    "matplotlib:grace_hopper.jpg": "single_person",  # portrait of Grace Hopper
    "skimage:camera.png": "single_person",           # the cameraman
    "skimage:chelsea.png": "pets",                   # Chelsea the cat
    "skimage:coffee.png": "foods",                   # a cup of espresso
    "sklearn:china.jpg": "travel_scenery",           # a temple in China
    "skimage:coins.png": "other",                    # coins on a table
    "skimage:rocket.jpg": "other",                   # a rocket on its pad
    "skimage:motorcycle_left.png": "other",          # a motorbike
}


def package_photo(ref: str) -> bytes:
    pkg, name = ref.split(":", 1)
    if pkg == "skimage":
        import skimage
        path = os.path.join(os.path.dirname(skimage.__file__), "data", name)
    elif pkg == "sklearn":
        import sklearn
        path = os.path.join(os.path.dirname(sklearn.__file__), "datasets", "images", name)
    else:
        import matplotlib
        path = os.path.join(matplotlib.get_data_path(), "sample_data", name)
    with open(path, "rb") as f:
        return f.read()


def _font(size: int, bold: bool = False):
    import matplotlib
    from PIL import ImageFont
    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    return ImageFont.truetype(os.path.join(matplotlib.get_data_path(), "fonts", "ttf", name), size)


def _png(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def phone_screenshot(seed: int = 0) -> bytes:
    """A chat app on a 1080×2340 phone screen: status bar with a clock, bubbles of text, an input bar."""
    import random

    from PIL import Image, ImageDraw
    rnd = random.Random(seed)
    img = Image.new("RGB", (1080, 2340), (237, 237, 237))
    d = ImageDraw.Draw(img)
    d.text((60, 40), "9:41", font=_font(44, True), fill=(0, 0, 0))
    d.rectangle((930, 50, 1010, 86), outline=(0, 0, 0), width=4)
    d.rectangle((936, 56, 990, 80), fill=(0, 0, 0))
    d.rectangle((0, 130, 1080, 260), fill=(247, 247, 247))
    d.text((400, 165), "Family Group (5)", font=_font(46, True), fill=(0, 0, 0))
    words = "see you at dinner tonight bring the photos from the trip we took last summer ok".split()
    y = 320
    while y < 2000:
        mine = rnd.random() < 0.5
        lines = [" ".join(rnd.choices(words, k=rnd.randint(3, 6))) for _ in range(rnd.randint(1, 3))]
        h = 40 + 62 * len(lines)
        x0 = 420 if mine else 160
        d.rounded_rectangle((x0, y, x0 + 500, y + h), 18, fill=(149, 236, 105) if mine else (255, 255, 255))
        if not mine:
            d.rectangle((40, y, 130, y + 90), fill=(rnd.randint(60, 200), 120, 180))
        for i, line in enumerate(lines):
            d.text((x0 + 24, y + 20 + 62 * i), line, font=_font(40), fill=(20, 20, 20))
        y += h + 50
    d.rectangle((0, 2160, 1080, 2340), fill=(247, 247, 247))
    d.rounded_rectangle((140, 2190, 860, 2290), 14, fill=(255, 255, 255))
    d.text((900, 2210), "Send", font=_font(40), fill=(30, 30, 30))
    return _png(img)


def desktop_screenshot() -> bytes:
    """A 1920×1080 desktop: a window with a menu, a document of text lines and a task bar."""
    from PIL import Image, ImageDraw
    img = Image.new("RGB", (1920, 1080), (32, 96, 160))
    d = ImageDraw.Draw(img)
    d.rectangle((160, 80, 1760, 980), fill=(255, 255, 255), outline=(90, 90, 90))
    d.rectangle((160, 80, 1760, 124), fill=(225, 225, 225))
    d.text((180, 88), "Quarterly report.docx - Editor", font=_font(24), fill=(0, 0, 0))
    for i, item in enumerate(["File", "Edit", "View", "Insert", "Format", "Tools", "Help"]):
        d.text((180 + 110 * i, 136), item, font=_font(22), fill=(40, 40, 40))
    text = "Revenue grew in every region this quarter while costs stayed flat across the board"
    for i in range(20):
        d.text((240, 200 + 36 * i), text[: 40 + (i * 7) % 45], font=_font(24), fill=(30, 30, 30))
    d.rectangle((0, 1040, 1920, 1080), fill=(20, 20, 20))
    d.text((1800, 1048), "14:05", font=_font(22), fill=(255, 255, 255))
    return _png(img)


def id_card(on_table: bool = False) -> bytes:
    """A resident-ID-like card (85.6 × 54 mm ratio) with an 18-digit number, as a scan or lying on a table."""
    from PIL import Image, ImageDraw
    card = Image.new("RGB", (856, 540), (226, 236, 244))
    d = ImageDraw.Draw(card)
    for y in range(0, 540, 6):  # the faint guilloche-like background pattern of real cards
        d.line((0, y, 856, y + 40), fill=(214, 226, 238), width=2)
    d.text((40, 30), "RESIDENT IDENTITY CARD", font=_font(36, True), fill=(20, 40, 90))
    rows = [("Name", "ZHANG SAN"), ("Sex", "M    Nation  Han"), ("Born", "1990  01  01"),
            ("Address", "No. 8 Chang An Avenue"), ("", "Dongcheng District Beijing")]
    for i, (k, v) in enumerate(rows):
        d.text((40, 110 + 62 * i), k, font=_font(26), fill=(60, 80, 120))
        d.text((170, 110 + 62 * i), v, font=_font(30), fill=(10, 10, 10))
    d.text((40, 450), "ID No.", font=_font(28), fill=(60, 80, 120))
    d.text((170, 446), "11010519900101123X", font=_font(38, True), fill=(10, 10, 10))
    d.rectangle((600, 110, 810, 380), fill=(200, 205, 210))
    d.ellipse((650, 140, 760, 260), fill=(120, 110, 100))
    d.rectangle((630, 270, 780, 380), fill=(60, 60, 80))
    if not on_table:
        return _png(card)
    import numpy as np
    table = Image.new("RGB", (1280, 960), (120, 84, 52))
    table.paste(card.rotate(4, expand=True, fillcolor=(120, 84, 52)), (200, 180))
    # A phone photo: sensor noise, and the EXIF a camera writes.
    noisy = np.asarray(table, np.float32) + np.random.default_rng(1).normal(0, 4, (960, 1280, 3))
    photo = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "Xiaomi", "Redmi Note 12"
    buf = io.BytesIO()
    photo.save(buf, "JPEG", quality=90, exif=exif)
    return buf.getvalue()


@functools.lru_cache(maxsize=4)
def zeros_png(width: int, height: int, mode: str = "RGBA") -> bytes:
    """A valid PNG of all-zero pixels, encoded row by row (never width×height bytes in memory).

    Zeros compress about 1000:1, so 7071×7071 RGBA — 200 MB once decoded — is a ~190 KB file: the
    decompression bomb that passes a bytes limit and a 50 MP pixel limit.
    """
    import struct
    import zlib

    color_type, channels = {"L": (0, 1), "RGB": (2, 3), "RGBA": (6, 4)}[mode]

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    z, parts, row = zlib.compressobj(9), [], bytes(1 + width * channels)  # filter byte 0 + the pixels
    for _ in range(height):
        parts.append(z.compress(row))
    parts.append(z.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")
