"""A 64-bit perceptual hash (pHash) of the working image, for near-duplicate cache hits.

pHash: the image in grey at 32×32, its 2-D DCT, the 8×8 lowest frequencies, one bit per coefficient
above their median. Re-encoding, resizing and mild sharpening move few bits; another photo, a crop, a
rotation or a mirror image move about half of them. Computed with numpy over the ≤ 960 px working image the
intake already decoded (about 0.3 ms), so no extra dependency and no second decode.

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


@functools.lru_cache(maxsize=1)
def _dct_matrix():
    import numpy as np

    n = 32
    k = np.arange(n)[:, None]
    m = np.cos(np.pi * (2 * np.arange(n)[None, :] + 1) * k / (2 * n)) * np.sqrt(2 / n)
    m[0] /= np.sqrt(2)
    return m[:8]   # only the 8 lowest frequencies are ever used


def phash(image) -> int:
    """The 64-bit pHash of a PIL image (any mode)."""
    import numpy as np
    from PIL import Image

    grey = image.convert("L").resize((32, 32), Image.BILINEAR, reducing_gap=2.0)
    pixels = np.asarray(grey, dtype=np.float64)
    d = _dct_matrix()
    low = d @ pixels @ d.T                      # 8×8 lowest frequencies
    bits = (low > np.median(low)).flatten()
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


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
