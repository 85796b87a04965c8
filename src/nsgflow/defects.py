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


def clean_defects(data: np.ndarray, threshold: float = 6.0, ratio: float = 6.0) -> tuple[np.ndarray, int]:
    """A copy of a frame with hot pixels and cosmic-ray tracks replaced by their surroundings.

    A pixel is a defect when it stands above the mean of its 8 neighbours by
    more than ``threshold`` times the noise of that excess, and by more than
    ``ratio`` times the change from those neighbours to the ring of 16 pixels
    around them: a star, however sharp (FWHM >= 2 px), falls off gradually
    over both rings (its peak stands at most about 2-3 times that drop above
    its neighbours), a hot pixel or a one-pixel-wide track does not. Defects
    are replaced by the mean of that outer ring. Pixels with no data within
    2 px are left as they are.

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
    nodata = values == 0
    near_nodata = ndimage.maximum_filter(nodata, size=5, mode="constant", cval=True)
    box3 = ndimage.uniform_filter(values, size=3, mode="nearest") * 9.0
    box5 = ndimage.uniform_filter(values, size=5, mode="nearest") * 25.0
    ring1 = (box3 - values) / 8.0
    ring2 = (box5 - box3) / 16.0
    excess = values - ring1
    sample = excess[::7, ::7][~near_nodata[::7, ::7]]
    if sample.size < 100:
        return values.copy(), 0
    sigma = 1.4826 * float(np.median(np.abs(sample - np.median(sample))))
    defect = ~near_nodata & (excess > threshold * sigma) & (excess > ratio * np.abs(ring1 - ring2))
    cleaned = values.copy()
    cleaned[defect] = ring2[defect]
    return cleaned, int(defect.sum())
