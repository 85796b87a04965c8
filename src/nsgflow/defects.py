"""Hot pixels and cosmic-ray tracks: found by their sharpness and replaced, on copies of a frame.

Detection and photometry work on cleaned copies: sep's detection filter
spreads a single hot pixel into a blob that passes for a star (with a tiny
half-light radius that then corrupts the frame's star size), and a hot pixel
or a cosmic ray in an aperture or annulus spoils that star's flux.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["clean_defects"]


def clean_defects(
    data: np.ndarray, threshold: float = 6.0, ratio: float = 6.0, passes: int = 1, chunk_rows: int = 1024
) -> tuple[np.ndarray, int]:
    """A copy of a frame with hot pixels and cosmic-ray tracks replaced by their surroundings.

    A pixel is a defect when it stands above the mean of its 8 neighbours by
    more than ``threshold`` times the noise of that excess, and by more than
    ``ratio`` times the change from those neighbours to the ring of 16 pixels
    around them: a star, however sharp (FWHM >= 2 px), falls off gradually
    over both rings (its peak stands at most about 2-3 times that drop above
    its neighbours), a hot pixel or a one-pixel-wide track does not. Defects
    are replaced by the mean of that outer ring. More ``passes`` repeat the
    search (a cosmic-ray track's inner pixels stand out once its brightest
    ones are gone: 90 % of the hit pixels instead of 68 %), but on the
    benchmark's hard set a second pass made the scale worse (worst frame
    1.1 % instead of 0.93 %), so one is the default. Pixels with no data (or the frame's edge) within
    2 px are left as they are. Stars sharper than about 1.2 px FWHM would be
    taken for defects.

    Returns
    -------
    cleaned : numpy.ndarray, float32
    count : int
        Pixels replaced.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> frame = (100.0 + rng.normal(0, 5, (128, 128))).astype(np.float32)
    >>> frame[20, 30] += 2000.0
    >>> cleaned, count = clean_defects(frame)
    >>> count, bool(abs(cleaned[20, 30] - 100.0) < 20)
    (1, True)
    """
    values = np.asarray(data, dtype=np.float32)
    ny, nx = values.shape
    cleaned = values.copy()
    if ny < 16 or nx < 16:
        return cleaned, 0
    # the noise of the excess over the 8 neighbours, from a sparse grid of pixels with data around
    yy, xx = np.mgrid[2 : ny - 2 : 7, 2 : nx - 2 : 7]
    block = np.stack([values[yy + dy, xx + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)])
    usable = (block != 0).all(axis=0)
    excess = block[4] - (block.sum(axis=0) - block[4]) / 8.0
    if usable.sum() < 100:
        return cleaned, 0
    sample = excess[usable]
    sigma = 1.4826 * float(np.median(np.abs(sample - np.median(sample))))
    replaced = 0
    for start in range(0, ny, chunk_rows):  # row slabs with a margin of 4: bounded memory
        low, high = max(start - 4, 0), min(start + chunk_rows + 4, ny)
        slab = cleaned[low:high]  # a view: cleaned in place
        inner = slice(start - low, start - low + min(chunk_rows, ny - start))
        near_nodata = ndimage.maximum_filter(slab == 0, size=5, mode="constant", cval=True)
        near_nodata[: inner.start] = True  # rows of the margin belong to the neighbouring slabs
        near_nodata[inner.stop :] = True
        done = np.zeros(slab.shape, dtype=bool)
        for _ in range(passes):
            ring1 = ndimage.uniform_filter(slab, size=3, mode="nearest") * 9.0
            ring2 = ndimage.uniform_filter(slab, size=5, mode="nearest") * 25.0
            ring2 -= ring1
            ring2 /= 16.0
            ring1 -= slab
            ring1 /= 8.0
            excess = slab - ring1
            ring1 -= ring2
            np.abs(ring1, out=ring1)
            defect = ~near_nodata & (excess > threshold * sigma) & (excess > ratio * ring1)
            if not defect.any():
                break
            slab[defect] = ring2[defect]
            done |= defect
        replaced += int(done.sum())
    return cleaned, replaced
