"""Hot pixels and cosmic-ray tracks: found by their sharpness and replaced while stars are measured.

Detection and photometry work on frames with the defects replaced: sep's
detection filter spreads a single hot pixel into a blob that passes for a star
(with a tiny half-light radius that then corrupts the frame's star size), and a
hot pixel or a cosmic ray in an aperture or annulus spoils that star's flux.
The replacement is made in place and undone afterwards
(:func:`defects_replaced`), so no frame-sized copy is needed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np

from nsgflow.robust import mad_sigma

__all__ = ["Defects", "defects_replaced", "find_defects", "pixels_replaced"]

#: A frame's defects as :func:`find_defects` returns them: rows, columns, replacement values.
Defects = tuple[np.ndarray, np.ndarray, np.ndarray]

#: Offsets of the 5 x 5 neighbourhood, row by row; the inner 3 x 3 are those with both at most 1.
_DY, _DX = (o.ravel() for o in np.mgrid[-2:3, -2:3])
_INNER = (np.abs(_DY) <= 1) & (np.abs(_DX) <= 1)


def find_defects(
    data: np.ndarray, threshold: float = 6.0, ratio: float = 6.0, chunk_rows: int = 64
) -> Defects:
    """Hot pixels and cosmic-ray pixels of a frame, and the values to replace them with.

    A pixel is a defect when it stands above the mean of its 8 neighbours by
    more than ``threshold`` times the noise of that excess, and by more than
    ``ratio`` times the change from those neighbours to the ring of 16 pixels
    around them: a star, however sharp (FWHM >= 2 px), falls off gradually
    over both rings (its peak stands at most about 2-3 times that drop above
    its neighbours), a hot pixel or a one-pixel-wide track does not. Its
    replacement is the mean of that outer ring. Pixels with no data (or the
    frame's edge) within 2 px are left as they are. Stars sharper than about
    1.2 px FWHM would be taken for defects. One pass finds 68 % of a
    cosmic-ray track's pixels; a second would find 90 % (the inner pixels
    stand out once the brightest are gone) but makes the scale worse on the
    accuracy benchmark's hard set, so there is one.

    Only the excess over the 8 neighbours is computed for every pixel (in
    blocks of ``chunk_rows`` rows); the rest only where it passes the
    threshold.

    Parameters
    ----------
    data : numpy.ndarray, shape (ny, nx)
        The frame; 0 is no data.
    threshold : float, default 6.0
        Least excess over the 8 neighbours, in noise sigmas of that excess.
    ratio : float, default 6.0
        Least excess over the 8 neighbours, in units of the drop from them to the outer ring.
    chunk_rows : int, default 64
        Rows processed at once (their temporaries stay in the CPU cache).

    Returns
    -------
    rows, cols : numpy.ndarray of int
        The defects' pixels.
    values : numpy.ndarray, dtype of ``data``
        Their replacements.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> frame = (100.0 + rng.normal(0, 5, (128, 128))).astype(np.float32)
    >>> frame[20, 30] += 2000.0
    >>> rows, cols, values = find_defects(frame)
    >>> rows.tolist(), cols.tolist(), bool(abs(values[0] - 100.0) < 20)
    ([20], [30], True)
    """
    values = np.asarray(data)
    ny, nx = values.shape
    none = np.zeros(0, dtype=np.int64)
    if ny < 16 or nx < 16:
        return none, none, values[:0, 0]
    # the noise of the excess over the 8 neighbours, from a sparse grid of pixels with data around
    yy, xx = np.mgrid[2 : ny - 2 : 7, 2 : nx - 2 : 7]
    block = np.stack([values[yy + dy, xx + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)]).astype(np.float64)
    usable = (block != 0).all(axis=0)
    if usable.sum() < 100:
        return none, none, values[:0, 0]
    sample = (block[4] - (block.sum(axis=0) - block[4]) / 8.0)[usable]
    sigma = mad_sigma(sample)
    # candidates: 9 * pixel - (3 x 3 sum) > 8 * threshold * sigma, pixels 2 or more from the edge
    level = np.float32(8.0 * threshold * sigma)
    found: list[Defects] = []
    for start in range(2, ny - 2, chunk_rows):
        stop = min(start + chunk_rows, ny - 2)
        slab = values[start - 1 : stop + 1]
        across = slab[:, 1:-3] + slab[:, 2:-2]
        across += slab[:, 3:-1]  # sums of 3 along x for columns 2 .. nx - 3
        excess = np.multiply(slab[1:-1, 2:-2], np.float32(9.0), dtype=np.float32)
        excess -= across[:-2]
        excess -= across[1:-1]
        excess -= across[2:]
        r, c = np.nonzero(excess > level)
        found.append(_confirmed(values, r + start, c + 2, threshold * sigma, ratio))
    rows, cols, replacements = (np.concatenate(parts) for parts in zip(*found, strict=True))
    return rows, cols, replacements


def _confirmed(
    values: np.ndarray, r: np.ndarray, c: np.ndarray, least: float, ratio: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The candidates ``r, c`` of :func:`find_defects` that are defects, and their replacements."""
    around = values[r[None, :] + _DY[:, None], c[None, :] + _DX[:, None]].astype(np.float64)  # (25, n)
    centre = around[12]
    inner_sum = around[_INNER].sum(axis=0)
    ring1 = (inner_sum - centre) / 8.0
    ring2 = (around.sum(axis=0) - inner_sum) / 16.0
    excess = centre - ring1
    defect = (around != 0).all(axis=0) & (excess > least)
    defect &= excess > ratio * np.abs(ring1 - ring2)
    return r[defect], c[defect], ring2[defect].astype(values.dtype)


@contextmanager
def defects_replaced(*frames: np.ndarray, found: Sequence[Defects] | None = None) -> Iterator[list[int]]:
    """Replace each frame's defects (:func:`find_defects`) in place for a block, and restore them after.

    Yields the number of pixels replaced in each frame. ``found`` holds each
    frame's defects if they are known already (the workflow finds them once,
    at detection); otherwise they are found here, all before any is replaced,
    so the same array may be passed twice.

    Examples
    --------
    >>> frame = (100.0 + np.random.default_rng(0).normal(0, 5, (128, 128))).astype(np.float32)
    >>> frame[10, 12] = 5000.0
    >>> with defects_replaced(frame) as counts:
    ...     print(counts, bool(frame[10, 12] < 200))
    [1] True
    >>> float(frame[10, 12])
    5000.0
    """
    if found is None:
        found = [find_defects(frame) for frame in frames]
    with pixels_replaced(frames, found):
        yield [len(r) for r, _, _ in found]


@contextmanager
def pixels_replaced(frames: Sequence[np.ndarray], replacements: Sequence[Sequence | None]) -> Iterator[None]:
    """Each frame's pixels ``rows, cols`` set to ``values`` in place for a block, and restored after.

    ``replacements`` holds per frame ``rows, cols, values`` first (a
    :data:`Defects`, or :class:`nsgflow.cores.ReplacedPixels`), or None to
    leave the frame as it is. The same array may be passed twice: the last
    replacement made is undone first.
    """
    kept = [(frame, rep) for frame, rep in zip(frames, replacements, strict=True) if rep is not None]
    originals = [frame[rep[0], rep[1]] for frame, rep in kept]
    for frame, rep in kept:
        frame[rep[0], rep[1]] = rep[2]
    try:
        yield
    finally:
        for (frame, rep), original in reversed(list(zip(kept, originals, strict=True))):
            frame[rep[0], rep[1]] = original
