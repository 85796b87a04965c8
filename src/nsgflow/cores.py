"""Saturated star cores rebuilt from each frame's fitted star profile.

A saturated star's core is clipped in both frames, but not alike: the sharper
frame loses more of the star's light. Convolved to one profile
(:func:`nsgflow.gradient.matched_difference`), what the two frames lack
differs and spreads as far as the kernels reach, leaving blobs around the
star's mask in the gradient samples. So each clipped core is replaced by the
frame's fitted profile (:func:`nsgflow.profiles.profile_pixels`) scaled to
the unclipped ring just outside it (:func:`saturated_cores`), in both frames
(:func:`rebuilt_cores`), for the photometry and the difference alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from nsgflow.profiles import profile_pixels
from nsgflow.robust import MAD_TO_SIGMA

__all__ = ["ReplacedPixels", "rebuilt_cores", "saturated_cores", "saturated_positions"]

#: Clipped pixels joined to those within this distance (px) of a star's position are its core.
CORE_REACH_PX = 2.0
#: Width of the ring fitted outside a core, in half-light radii of the frame's stars (at least
#: :data:`MIN_RING_PX`): where the star's own profile still outshines its neighbours and halo.
RING_HLR = 1.5
MIN_RING_PX = 3.0
#: Fewest ring pixels for a fit; a core with fewer (on a border) is left as it is.
MIN_RING_PIXELS = 10
#: Robust sigmas beyond which ring pixels (neighbours, hot pixels) leave the fit, and its passes.
RING_CLIP_SIGMA = 4.0
RING_ITERATIONS = 3
#: First half-width (px) of the window searched for a core; it doubles while the core reaches
#: the window's edge, up to :data:`MAX_WINDOW_PX`.
FIRST_WINDOW_PX = 24
MAX_WINDOW_PX = 512
#: Fewest clipped pixels for a core to be rebuilt: a smaller core lost little light, less than the
#: fitted profile, extrapolated into it, may err by.
MIN_CORE_PIXELS = 20
#: Saturated stars of the two catalogs closer than this (px) are one star.
SAME_STAR_PX = 3.0


class ReplacedPixels(NamedTuple):
    """Pixels of a frame plane to be read with other values: ``plane[rows, cols] = values``.

    ``core`` numbers the star core each pixel belongs to, from 0.
    """

    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray
    core: np.ndarray

    def added_light(self, plane: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each core's centre ``x, y`` (its pixels' mean) and the light its values add to ``plane``."""
        count = np.bincount(self.core)
        x, y = (np.bincount(self.core, weights=v) / count for v in (self.cols, self.rows))
        added = self.values.astype(np.float64) - plane[self.rows, self.cols]
        return x, y, np.bincount(self.core, weights=added)

    def read_block(
        self, plane: np.ndarray, rows: tuple[int, int], cols: tuple[int, int] | None = None
    ) -> np.ndarray:
        """The block of ``plane`` at ``rows`` and ``cols`` (first, last: exclusive), with the replaced pixels.

        ``cols`` defaults to all columns. The plane's own pixels (a view)
        where none of them is replaced, else a copy.
        """
        (first, last), (left, right) = rows, (0, plane.shape[1]) if cols is None else cols
        inside = (self.rows >= first) & (self.rows < last) & (self.cols >= left) & (self.cols < right)
        if not inside.any():
            return plane[first:last, left:right]
        block = plane[first:last, left:right].copy()
        block[self.rows[inside] - first, self.cols[inside] - left] = self.values[inside]
        return block


def saturated_positions(catalogs: list, flag: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions ``x, y`` of the stars flagged ``flag`` in any of ``catalogs``, each star once.

    Of stars closer than :data:`SAME_STAR_PX`, the one listed first is kept
    (the reference's, sharper and so better centred, when it comes first).
    """
    flagged = [c[(c["flags"].to_numpy() & flag) != 0] for c in catalogs]
    xy = np.concatenate([np.column_stack([c["x"].to_numpy(float), c["y"].to_numpy(float)]) for c in flagged])
    later = {j for _, j in cKDTree(xy).query_pairs(SAME_STAR_PX)} if len(xy) else set()
    keep = np.setdiff1d(np.arange(len(xy)), np.fromiter(later, int, len(later)))
    return xy[keep, 0], xy[keep, 1]


def saturated_cores(
    plane: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    profile: np.ndarray,
    hlr_px: float,
    limit: float,
) -> ReplacedPixels:
    """The clipped cores of the stars at ``x, y``, rebuilt from the frame's star ``profile``.

    A star's core is its pixels at or above ``limit`` (the frame's linear
    range) joined to those within :data:`CORE_REACH_PX` of its position. The
    profile (``alpha, beta, g1, g2``, :func:`nsgflow.profiles.profile_fits`)
    at the star's position, times an amplitude, plus a level, is fitted by
    least squares to the unclipped pixels of a ring :data:`RING_HLR` half-light
    radii (``hlr_px``) wide just outside the core, and gives the core's pixels;
    a pixel never drops below its clipped value. Stars without a core, or
    whose ring is too small or fit not positive, are left as they are; a core
    that several positions share is rebuilt once (:func:`_one_per_core`).

    Returns
    -------
    ReplacedPixels
        The cores' pixels and their rebuilt values.
    """
    ring_width = max(RING_HLR * hlr_px, MIN_RING_PX)
    found = [
        _core(window, x0, y0, profile, ring_width)
        for window, x0, y0 in _one_per_core(plane, x, y, limit, ring_width)
    ]
    found = [f for f in found if f is not None]
    if not found:
        empty = np.zeros(0, np.int64)
        return ReplacedPixels(empty, empty, np.zeros(0, plane.dtype), empty)
    rows, cols, values = (np.concatenate(parts) for parts in zip(*found, strict=True))
    core = np.repeat(np.arange(len(found)), [f[0].size for f in found])
    return ReplacedPixels(rows, cols, values.astype(plane.dtype), core)


def rebuilt_cores(
    frames: Sequence[np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
    profiles: Sequence[np.ndarray],
    hlr_px: Sequence[float],
    limits: Sequence[float | None],
) -> list[ReplacedPixels | None]:
    """Each frame's :func:`saturated_cores` at ``x, y``, from its own profile, star size and clip level.

    None for a frame whose limit is None (not clipped), or with no position.
    """
    return [
        None if limit is None or not len(x) else saturated_cores(plane, x, y, np.asarray(profile), hlr, limit)
        for plane, profile, hlr, limit in zip(frames, profiles, hlr_px, limits, strict=True)
    ]


def _one_per_core(
    plane: np.ndarray, x: np.ndarray, y: np.ndarray, limit: float, ring_width: float
) -> list[tuple[tuple, float, float]]:
    """The positions ``x, y`` with a clipped core, one per core, each with its :func:`_core_window`.

    Of positions that share a core, the one nearest its clipped pixels' centroid is kept.

    A catalog may hold a saturated star twice (its plateau split by the
    deblending); rebuilt from each position, its core would take the values
    of the last, centred off the star.
    """
    best: dict[tuple[int, int], tuple[float, tuple, float, float]] = {}
    for x0, y0 in zip(x, y, strict=True):
        window = _core_window(plane, x0, y0, limit, ring_width)
        if window is None:
            continue
        _, rows, cols, core, _, _ = window
        pixels = rows[core] * plane.shape[1] + cols[core]
        key = (int(pixels.min()), int(pixels.size))  # the same pixels found from another position
        offset = float(np.hypot(cols[core].mean() - x0, rows[core].mean() - y0))
        if key not in best or offset < best[key][0]:
            best[key] = (offset, window, x0, y0)
    return [(window, x0, y0) for _, window, x0, y0 in best.values()]


def _core(
    window: tuple, x0: float, y0: float, profile: np.ndarray, ring_width: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """One star's core pixels ``rows, cols`` and rebuilt values (its ring ``ring_width`` px wide), or None.

    ``window`` is the star's :func:`_core_window`.
    """
    values, rows, cols, core, over, radius = window
    if core.sum() < MIN_CORE_PIXELS:
        return None
    edge = radius[core].max()
    ring = ~over & (values != 0) & (radius > edge + 0.5) & (radius <= edge + ring_width)
    if ring.sum() < MIN_RING_PIXELS:
        return None
    disc = radius <= edge + ring_width
    if (values[disc] == 0).any() or disc.sum() < 0.95 * np.pi * (edge + ring_width) ** 2:
        x0, y0 = _ring_centre(values, rows, cols, ring, profile, (x0, y0))  # cut by a border or the edge
    unit = profile_pixels(profile, cols - x0, rows - y0)
    amplitude, level = _ring_fit(values, unit, ring)
    if not amplitude > 0:
        return None
    rebuilt = np.maximum(amplitude * unit[core] + level, values[core])
    return rows[core], cols[core], rebuilt


#: Farthest (px) the ring fit moves a saturated star cut by a border or the frame's edge from its
#: catalog position: such a star is catalogued off its centre, on its visible side, and its core
#: rebuilt there falls short. Whole stars keep their catalog position, which the ring's pixels would
#: only make noisier.
MAX_SHIFT_PX = 4.0


def _ring_centre(
    values: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    ring: np.ndarray,
    profile: np.ndarray,
    start: tuple[float, float],
) -> tuple[float, float]:
    """The centre of the ``profile`` (times an amplitude, plus a level) that fits the ``ring`` pixels best.

    The best of a half-pixel grid within :data:`MAX_SHIFT_PX` of ``start``,
    refined by a robust (soft L1) least-squares fit.
    """
    from scipy.optimize import least_squares

    x, y, light = cols[ring], rows[ring], values[ring]

    def residual(p: np.ndarray) -> np.ndarray:
        return p[0] * profile_pixels(profile, x - p[2], y - p[3]) + p[1] - light

    def linear(centre: np.ndarray) -> tuple[float, tuple[float, float]]:
        """Sum of squared residuals of the best amplitude and level at ``centre``, and those."""
        unit = profile_pixels(profile, x - centre[0], y - centre[1])
        amplitude, level = _amplitude_and_level(unit, light)
        return float(np.sum((amplitude * unit + level - light) ** 2)), (amplitude, level)

    # a grid of centres first: from a position off by pixels, a local fit can end in a false minimum
    steps = np.arange(-MAX_SHIFT_PX, MAX_SHIFT_PX + 0.25, 0.5)
    grid = [np.asarray(start) + np.array([dx, dy]) for dx in steps for dy in steps]
    best = min(grid, key=lambda centre: linear(centre)[0])
    cost, (amplitude, level) = linear(best)
    scale = np.sqrt(cost / len(light)) + 1e-12
    shift = np.array([MAX_SHIFT_PX, MAX_SHIFT_PX])
    fit = least_squares(
        residual,
        [amplitude, level, *best],
        bounds=([-np.inf, -np.inf, *(np.array(start) - shift)], [np.inf, np.inf, *(np.array(start) + shift)]),
        loss="soft_l1",
        f_scale=scale,
    )
    return float(fit.x[2]), float(fit.x[3])


def _core_window(
    plane: np.ndarray, x0: float, y0: float, limit: float, ring_width: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """Values (float64), rows, columns, core, clipped pixels and radii of a window around a star.

    The window holds the star's core and its ring.

    The window grows until the core and its ring fit inside (or it reaches
    :data:`MAX_WINDOW_PX`); None when no clipped pixel is near the star.
    """
    ny, nx = plane.shape
    half = FIRST_WINDOW_PX
    while True:
        y_lo, y_hi = max(int(y0) - half, 0), min(int(y0) + half + 1, ny)
        x_lo, x_hi = max(int(x0) - half, 0), min(int(x0) + half + 1, nx)
        rows, cols = np.mgrid[y_lo:y_hi, x_lo:x_hi]
        radius = np.hypot(cols - x0, rows - y0)
        values = plane[y_lo:y_hi, x_lo:x_hi].astype(np.float64)
        over = values >= limit
        labels, _ = ndimage.label(over)
        near = np.unique(labels[(radius <= CORE_REACH_PX) & over])
        if not near.size:
            return None
        core = np.isin(labels, near)
        if radius[core].max() + ring_width < half or half >= MAX_WINDOW_PX:
            return values, rows, cols, core, over, radius
        half *= 2


def _ring_fit(values: np.ndarray, unit: np.ndarray, ring: np.ndarray) -> tuple[float, float]:
    """Amplitude and level of ``amplitude * unit + level`` fitted to the ``ring`` pixels, clipped."""
    keep = ring
    amplitude, level = 0.0, 0.0
    for _ in range(RING_ITERATIONS):
        amplitude, level = _amplitude_and_level(unit[keep], values[keep])
        residual = values - (amplitude * unit + level)
        spread = MAD_TO_SIGMA * np.median(np.abs(residual[ring]))
        keep = ring & (np.abs(residual) <= RING_CLIP_SIGMA * spread)
        if keep.sum() < MIN_RING_PIXELS:
            break
    return float(amplitude), float(level)


def _amplitude_and_level(unit: np.ndarray, light: np.ndarray) -> tuple[float, float]:
    """Least-squares ``amplitude`` and ``level`` of ``amplitude * unit + level`` fitted to ``light``."""
    design = np.stack([unit, np.ones_like(unit)], axis=1)
    (amplitude, level), *_ = np.linalg.lstsq(design, light, rcond=None)
    return float(amplitude), float(level)
