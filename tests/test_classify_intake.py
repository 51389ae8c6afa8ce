"""Image intake: formats, orientation, draft decoding, and the bad-image corpus → stable 4xx codes."""
import io
import struct
import zlib

import pytest
from PIL import Image

from tests.classify_fixtures import register
from tests.classify_images import package_photo
from xintu.classify.intake import MAX_BYTES, decode
from xintu.errors import XintuError


def _encode(img, fmt, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _photo(size=(640, 480)):
    return Image.open(io.BytesIO(package_photo("skimage:chelsea.png"))).convert("RGB").resize(size)


def _png_claiming(width, height) -> bytes:
    """A tiny valid PNG whose header claims width×height pixels (a decompression bomb's signature)."""
    raw = bytearray(_encode(Image.new("L", (8, 8)), "PNG"))
    ihdr = struct.pack(">II", width, height) + bytes(raw[24:29])
    raw[16:29] = ihdr
    raw[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(raw)


def _bad_corpus():
    jpeg = _encode(_photo(), "JPEG", quality=90)
    png = _encode(_photo(), "PNG")
    return {
        "empty": (b"", 400, "image_empty"),
        "text": (b"hello, this is not an image at all", 415, "image_unsupported"),
        "pdf": (b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\n", 415, "image_unsupported"),
        "svg": (b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', 415, "image_unsupported"),
        "bmp": (_encode(_photo((32, 32)), "BMP"), 415, "image_unsupported"),
        "tiff": (_encode(_photo((32, 32)), "TIFF"), 415, "image_unsupported"),
        "truncated_jpeg": (jpeg[: len(jpeg) // 2], 400, "image_truncated"),
        "truncated_png": (png[: len(png) // 2], 400, "image_truncated"),
        "jpeg_header_only": (jpeg[:300], 400, "image_corrupt"),
        "bomb_png": (_png_claiming(30000, 30000), 413, "image_too_many_pixels"),
        "huge_bomb_png": (_png_claiming(100000, 100000), 413, "image_too_many_pixels"),
        "60mp_png": (_png_claiming(10000, 6000), 413, "image_too_many_pixels"),  # fine as a JPEG, not as PNG
        "zero_size_png": (_png_claiming(0, 0), 415, "image_unsupported"),  # Pillow: not a PNG
        "too_large": (jpeg + b"\0" * (MAX_BYTES + 1 - len(jpeg)), 413, "image_too_large"),
    }


@pytest.mark.parametrize("name", sorted(_bad_corpus()))
def test_bad_image_is_refused_with_a_stable_code(name):
    data, status, code = _bad_corpus()[name]
    with pytest.raises(XintuError) as err:
        decode(data)
    assert (err.value.status, err.value.code) == (status, code)


def test_bad_image_corpus_through_the_api_gives_json_4xx(local_app):
    client = local_app.test_client()
    headers = register(client)
    for name, (data, status, code) in _bad_corpus().items():
        for path in ("/api/v1/classify", "/api/v1/classify/local"):
            r = client.post(path, headers=headers, data={"image": (io.BytesIO(data), f"{name}.bin")})
            assert r.status_code == status, (name, path, r.get_json())
            assert r.get_json()["error"]["code"] == code


@pytest.mark.parametrize("fmt, kw", [("WEBP", {"quality": 80}), ("GIF", {}), ("PNG", {}),
                                     ("JPEG", {"quality": 85})])
def test_accepted_formats_decode_to_rgb(fmt, kw):
    result = decode(_encode(_photo().convert("P") if fmt == "GIF" else _photo(), fmt, **kw))
    assert result.image.mode == "RGB" and result.image.size == (640, 480)
    assert (result.width, result.height) == (640, 480)


def test_heic_is_accepted():
    import pillow_heif
    pillow_heif.register_heif_opener()
    data = _encode(_photo(), "HEIF", quality=80)
    result = decode(data)
    assert result.format == "HEIF" and result.image.size == (640, 480) and result.mime == "image/heic"


def test_mpo_from_a_phone_is_accepted():
    data = _encode(_photo(), "MPO", save_all=True, append_images=[_photo().rotate(5)])
    result = decode(data)
    assert result.format == "MPO" and result.image.size == (640, 480)


def test_animated_gif_uses_the_first_frame():
    frames = [Image.new("RGB", (60, 40), c) for c in ((255, 0, 0), (0, 0, 255))]
    data = _encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert decode(data).image.getpixel((5, 5)) == (255, 0, 0)


def test_exif_orientation_is_applied_and_camera_recognised():
    exif = Image.Exif()
    exif[0x0112], exif[0x010F], exif[0x0110] = 6, "Apple", "iPhone 15"
    data = _encode(_photo((400, 300)), "JPEG", exif=exif)
    result = decode(data)
    assert result.image.size == (300, 400) and (result.width, result.height) == (300, 400)
    assert result.camera and result.exif["make"] == "Apple"


def test_transparent_png_is_flattened_on_white():
    img = Image.new("RGBA", (50, 50), (0, 0, 0, 0))
    assert decode(_encode(img, "PNG")).image.getpixel((10, 10)) == (255, 255, 255)


def test_draft_decode_of_a_12mp_jpeg_keeps_the_working_size():
    data = _encode(_photo((4000, 3000)), "JPEG", quality=90)
    fast, full = decode(data), decode(data, draft=False)
    assert fast.image.size == full.image.size == (960, 720)
    assert (fast.width, fast.height) == (4000, 3000)
    assert fast.sha256 == full.sha256


def test_server_hash_is_of_the_bytes():
    import hashlib
    data = _encode(_photo(), "PNG")
    assert decode(data).sha256 == hashlib.sha256(data).hexdigest()


def test_png_bomb_of_zeros_is_refused_before_decoding():
    from tests.classify_images import zeros_png

    data = zeros_png(7071, 7071)  # 190 KB, 50 MP: under both old limits, 200 MB once decoded
    assert len(data) < 300_000
    with pytest.raises(XintuError) as err:
        decode(data)
    assert (err.value.status, err.value.code) == (413, "image_too_many_pixels")


def test_decoded_size_counts_bytes_per_pixel():
    from tests.classify_images import zeros_png

    # 30 MP: 120 MB as RGBA is over the decode budget, 30 MB as greyscale is not.
    with pytest.raises(XintuError) as err:
        decode(zeros_png(6000, 5000, "RGBA"))
    assert err.value.code == "image_too_many_pixels"
    grey = decode(zeros_png(6000, 5000, "L"))
    assert grey.image.mode == "RGB" and grey.image.size[0] == 960 and abs(grey.image.size[1] - 800) <= 1
    assert (grey.width, grey.height) == (6000, 5000)
    assert grey.image.getpixel((480, 400)) == (0, 0, 0)


def test_large_transparent_png_is_shrunk_strip_by_strip_onto_white():
    img = Image.new("RGBA", (3000, 2000), (0, 0, 0, 0))
    img.paste((200, 30, 30, 255), (1500, 0, 3000, 2000))
    result = decode(_encode(img, "PNG"))
    assert result.image.mode == "RGB" and result.image.size == (960, 640)
    assert result.image.getpixel((100, 320)) == (255, 255, 255)
    assert result.image.getpixel((900, 320)) == (200, 30, 30)
    # the same picture through the small-image path agrees
    small = decode(_encode(img.resize((960, 640)), "PNG")).image
    assert small.getpixel((100, 320)) == (255, 255, 255) and small.getpixel((900, 320)) == (200, 30, 30)


def test_large_palette_png_with_transparency_is_flattened():
    img = Image.new("P", (4000, 3000), 0)
    img.putpalette([0, 0, 0, 10, 200, 10] + [0] * 762)
    img.paste(1, (0, 1500, 4000, 3000))
    result = decode(_encode(img, "PNG", transparency=0))
    assert result.image.size == (960, 720)
    assert result.image.getpixel((480, 100)) == (255, 255, 255)
    assert result.image.getpixel((480, 600)) == (10, 200, 10)


def test_exif_orientation_is_applied_on_the_strip_path():
    exif = Image.Exif()
    exif[0x0112] = 6
    img = Image.new("RGBA", (3000, 2000), (0, 0, 255, 255))
    img.paste((255, 0, 0, 255), (0, 0, 100, 2000))  # a red band on the left edge
    result = decode(_encode(img, "PNG", exif=exif))
    assert result.image.size == (640, 960) and (result.width, result.height) == (2000, 3000)
    assert result.image.getpixel((320, 5)) == (255, 0, 0)  # rotated 90° clockwise: the band is on top


def test_png_bomb_through_every_image_endpoint_is_a_json_413(local_app):
    from tests.classify_images import zeros_png

    client = local_app.test_client()
    headers = register(client)
    data = zeros_png(7071, 7071)
    for path in ("/api/v1/classify", "/api/v1/classify/local"):
        r = client.post(path, headers=headers, data={"image": (io.BytesIO(data), "bomb.png")})
        assert r.status_code == 413 and r.get_json()["error"]["code"] == "image_too_many_pixels", path
    r = client.post("/api/v1/classify/batch", headers=headers,
                    data={"images": [(io.BytesIO(data), f"b{i}.png") for i in range(20)]})
    assert r.status_code == 200
    assert [item["error"]["code"] for item in r.get_json()["results"]] == ["image_too_many_pixels"] * 20


def test_strip_shrinking_matches_a_whole_image_resize():
    import numpy as np

    from xintu.classify.intake import _shrink_to_rgb

    pixels = np.random.default_rng(0).integers(0, 256, (2000, 3000, 4), dtype=np.uint8)
    pixels[..., 3] = 255
    img = Image.fromarray(pixels, "RGBA")
    small = _shrink_to_rgb(img, 960)
    whole = img.convert("RGB").resize(small.size, Image.BILINEAR)
    assert small.size == (960, 640) and np.array_equal(np.asarray(small), np.asarray(whole))  # no seams


def test_heic_orientation_and_camera_come_through_libheif():
    import pillow_heif
    pillow_heif.register_heif_opener()
    exif = Image.Exif()
    exif[0x0112], exif[0x010F], exif[0x0110] = 6, "Apple", "iPhone 15"
    img = Image.new("RGB", (400, 300), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 40, 300))  # a red band on the left edge
    result = decode(_encode(img, "HEIF", quality=90, exif=exif.tobytes()))
    assert result.format == "HEIF" and result.camera and result.exif["model"] == "iPhone 15"
    assert result.image.size == (300, 400) and (result.width, result.height) == (300, 400)
    r, g, b = result.image.getpixel((150, 5))  # rotated 90° clockwise: the band is on top
    assert r > 200 and b < 60


def test_large_transparent_heic_is_shrunk_from_libheifs_buffer():
    import pillow_heif
    pillow_heif.register_heif_opener()
    img = Image.new("RGBA", (2400, 1600), (0, 0, 0, 0))
    img.paste((20, 160, 20, 255), (1200, 0, 2400, 1600))
    result = decode(_encode(img, "HEIF", quality=90))
    assert result.image.mode == "RGB" and result.image.size == (960, 640)
    assert result.image.getpixel((100, 320)) == (255, 255, 255)
    r, g, b = result.image.getpixel((900, 320))
    assert g > 130 and r < 60 and b < 60
