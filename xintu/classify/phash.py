"""A 64-bit perceptual hash (pHash) and the mean colour of the working image, for near-duplicate cache hits.

pHash: the image at 32×32 in grey, its 2-D DCT, the 8×8 lowest frequencies, one bit per coefficient above
their median. Re-encoding and resizing move few bits (pairs of them: a coefficient crossing the median swaps
with another), another photo, a crop, a rotation or a mirror image move about half of them. pHash sees only
brightness, so the mean colour (one byte per channel) is kept too and must agree within MAX_COLOUR_DIFF: a
grey copy or a colour-swapped one is another picture. Computed with numpy over the ≤ 960 px working image the
intake already decoded (one 32×32 resize, a few ms; scripts/bench/near_duplicates.py), so no extra
dependency and no second decode.

The hash is stored as four 16-bit bands, each in an indexed column (``classify_cache.phash0..3``): two hashes
within Hamming distance 3 agree on at least one band (pigeonhole), so ``phash0=? OR … OR phash3=?`` finds
every candidate in one indexed query and the exact distance is checked on the few rows it returns.
"""
from __future__ import annotations

import functools

BANDS = 4
BAND_BITS = 16
#: Hashes with fewer than this many bits on either side carry little information (flat or almost flat
#: pictures: a white page, a black frame) and share bands with too many others: they are not used.
MIN_BITS = 12
#: Largest difference of a channel's mean (0–255) between near-duplicates. JPEG re-encoding and resizing
#: move a mean by 0–2; a grey copy of a colour photo, swapped channels or +40 % brightness by far more.
MAX_COLOUR_DIFF = 8


@functools.lru_cache(maxsize=1)
def _dct_matrix():
    import numpy as np

    n = 32
    k = np.arange(n)[:, None]
    m = np.cos(np.pi * (2 * np.arange(n)[None, :] + 1) * k / (2 * n)) * np.sqrt(2 / n)
    m[0] /= np.sqrt(2)
    return m[:8]   # only the 8 lowest frequencies are ever used


def fingerprint(image) -> tuple[int, int]:
    """(64-bit pHash, mean colour as 0xRRGGBB) of a PIL image (any mode)."""
    import numpy as np
    from PIL import Image

    small = image.convert("RGB").resize((32, 32), Image.BILINEAR, reducing_gap=2.0)
    rgb = np.asarray(small, dtype=np.float64)
    grey = rgb @ np.array([0.299, 0.587, 0.114])   # ITU-R 601 luma, as Pillow's convert("L")
    d = _dct_matrix()
    low = d @ grey @ d.T                          # 8×8 lowest frequencies
    bits = (low > np.median(low)).flatten()
    r, g, b = (int(round(v)) for v in rgb.mean(axis=(0, 1)))
    return int.from_bytes(np.packbits(bits).tobytes(), "big"), (r << 16) | (g << 8) | b


def phash(image) -> int:
    """The 64-bit pHash of a PIL image (any mode)."""
    return fingerprint(image)[0]


def colour_diff(a: int, b: int) -> int:
    """Largest difference of one channel's mean between two packed 0xRRGGBB colours."""
    return max(abs(((a >> s) & 255) - ((b >> s) & 255)) for s in (16, 8, 0))


def bands(value: int) -> tuple[int, ...]:
    """The four 16-bit bands of a hash, most significant first."""
    mask = (1 << BAND_BITS) - 1
    return tuple((value >> (BAND_BITS * (BANDS - 1 - i))) & mask for i in range(BANDS))


def from_bands(parts) -> int:
    value = 0
    for part in parts:
        value = (value << BAND_BITS) | int(part)
    return value


def distance(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def informative(value: int) -> bool:
    ones = value.bit_count()
    return MIN_BITS <= ones <= 64 - MIN_BITS
