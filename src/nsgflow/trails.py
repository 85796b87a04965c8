"""Satellite and aircraft trails: straight lines in m*T - R, found and masked before sampling.

A trail in the target shows in the difference image ``m*T - R`` as a bright
line, one in the reference as a dark line; stars, nebulosity and the smooth
background cancel or are masked. The difference is binned (a trail's
signal-to-noise ratio per bin does not depend on the bin size once the bin is
as wide as the trail), the smooth background is subtracted, and bins beyond a
threshold vote in a Hough transform for the lines through them. A line is a
trail when it holds far more votes than the noise gives a line of its length
inside the frame. Each trail is then refined by a least-squares line through
its bins, and its half-width measured from its profile.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from nsgflow.robust import mad_sigma

__all__ = ["TRAIL_COLUMNS", "find_trails", "trail_mask"]

#: Columns of :func:`find_trails`' table.
TRAIL_COLUMNS = ["angle", "rho_px", "half_width_px", "sign", "votes", "length_px", "significance"]
#: A bin is usable when at least this fraction of its pixels is valid.
MIN_BIN_COVER = 0.5
#: Fewest usable bins whose spread gives the noise of the binned significance.
MIN_NOISE_BINS = 10


def _binned_significance(
    difference: np.ndarray, valid: np.ndarray, bin_px: int, window_bins: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per bin: the valid pixels' mean less a robust smooth background, in noise sigmas; usable bins."""
    ny, nx = difference.shape
    gy, gx = ny // bin_px, nx // bin_px
    total, count = np.zeros((gy, gx)), np.zeros((gy, gx), dtype=np.int64)
    rows = max(1, (1 << 20) // max(nx, 1) // bin_px)  # bins' rows at a time: no frame-sized temporaries
    for start in range(0, gy, rows):
        stop = min(start + rows, gy)
        pixels = np.s_[start * bin_px : stop * bin_px, : gx * bin_px]
        data = np.where(valid[pixels], difference[pixels], np.float32(0.0))
        total[start:stop] = data.reshape(stop - start, bin_px, gx, bin_px).sum(axis=(1, 3), dtype=np.float64)
        count[start:stop] = valid[pixels].reshape(stop - start, bin_px, gx, bin_px).sum(axis=(1, 3))
    ok = count >= MIN_BIN_COVER * bin_px * bin_px
    mean = np.where(ok, total / np.maximum(count, 1), np.nan)
    # background: medians of window x window bins (a trail is a small minority in each), bilinear between
    cy, cx = -(-gy // window_bins), -(-gx // window_bins)
    padded = np.full((cy * window_bins, cx * window_bins), np.nan)
    padded[:gy, :gx] = mean
    cells = padded.reshape(cy, window_bins, cx, window_bins).swapaxes(1, 2).reshape(cy, cx, -1)
    filled = np.isfinite(cells).any(axis=2)
    if not filled.any():
        return np.zeros((gy, gx)), np.zeros((gy, gx), dtype=bool)
    coarse = np.full((cy, cx), np.nan)
    coarse[filled] = np.nanmedian(cells[filled], axis=1)
    coarse[~filled] = np.median(coarse[filled])
    # bilinear between the cells' centres, constant beyond the outer ones
    centres = (np.arange(max(cy, cx)) + 0.5) * window_bins - 0.5
    smooth = coarse
    for axis, (n, cells) in enumerate(((gy, cy), (gx, cx))):
        where = np.interp(np.arange(n), centres[:cells], np.arange(cells))
        low = np.floor(where).astype(np.int64)
        high = np.minimum(low + 1, cells - 1)
        frac = (where - low).reshape((-1, 1) if axis == 0 else (1, -1))
        lower, upper = np.take(smooth, low, axis=axis), np.take(smooth, high, axis=axis)
        smooth = lower + frac * (upper - lower)
    z = (mean - smooth) * np.sqrt(count)
    values = z[ok]
    if values.size < MIN_NOISE_BINS:
        return np.zeros((gy, gx)), np.zeros((gy, gx), dtype=bool)
    sigma = mad_sigma(values)
    return np.where(ok, z / max(sigma, 1e-12), 0.0), ok


def _chord(rho: np.ndarray, angle: float, width: float, height: float) -> np.ndarray:
    """Length inside ``[0, width] x [0, height]`` of the lines ``x cos(angle) + y sin(angle) = rho``."""
    c, s = np.cos(angle), np.sin(angle)
    low, high = np.full(rho.shape, -np.inf), np.full(rho.shape, np.inf)
    # points rho * (c, s) + t * (-s, c)
    for start, step, limit in ((rho * c, -s, width), (rho * s, c, height)):
        if abs(step) < 1e-12:
            outside = (start < 0) | (start > limit)
            low = np.where(outside, np.inf, low)
            continue
        t1, t2 = -start / step, (limit - start) / step
        low, high = np.maximum(low, np.minimum(t1, t2)), np.minimum(high, np.maximum(t1, t2))
    return np.maximum(high - low, 0.0)


def _hough_grid(shape: tuple[int, int]) -> tuple[np.ndarray, int, int]:
    """Angles of the Hough accumulator for bins of ``shape``, its rho offset and its number of rhos."""
    gy, gx = shape
    diag = float(np.hypot(gx, gy))
    n_angle = int(np.ceil(np.pi * diag))  # the far end of the longest line moves one bin per step
    shift = int(np.ceil(diag)) + 1
    return np.arange(n_angle) * np.pi / n_angle, shift, 2 * shift + 2


def _votes(x: np.ndarray, y: np.ndarray, angles: np.ndarray, shift: int, n_rho: int) -> np.ndarray:
    """Hough accumulator of the points ``x, y``: votes per angle and rho (one-bin steps), int64."""
    votes = np.zeros((len(angles), n_rho), dtype=np.int64)
    chunk = max(1, (1 << 18) // max(len(x), 1))  # angles at a time: temporaries in the CPU cache
    x, y = np.asarray(x, np.float32)[:, None], np.asarray(y, np.float32)[:, None]
    for start in range(0, len(angles), chunk):
        some = angles[start : start + chunk]
        # rho + shift > 0 for every line through the bins, so truncation is the floor
        rho = x * np.cos(some).astype(np.float32)
        rho += y * np.sin(some).astype(np.float32)
        rho += np.float32(shift)
        index = rho.astype(np.int32)
        index += np.arange(0, n_rho * len(some), n_rho, dtype=np.int32)
        votes[start : start + chunk] = np.bincount(index.ravel(), minlength=n_rho * len(some)).reshape(
            len(some), n_rho
        )
    return votes


def _best_line(
    votes: np.ndarray,
    angles: np.ndarray,
    shift: int,
    usable: tuple[np.ndarray, np.ndarray],
    rate: float,
    cells: int = 24,
) -> tuple[float, float, float, int, int]:
    """The most significant line of a Hough accumulator (:func:`_votes`, bin coordinates).

    Votes are counted in bands two bins wide (a trail between two rows of
    cells still counts whole); the ``cells`` bands with the most votes are
    then compared with what the noise gives them: ``rate`` times the usable
    bins (``usable``: their coordinates) inside the band.

    Returns angle, rho, significance, votes and usable bins of the best band.
    """
    band = (votes[:, :-1] + votes[:, 1:]).ravel()  # band j: rho in [j - shift, j - shift + 2)
    # the least votes among the top cells, from the counts of each number of votes (a partition is slow
    # with this many ties)
    at_least = np.cumsum(np.bincount(band)[::-1])[::-1]
    top = np.flatnonzero(band >= np.flatnonzero(at_least >= cells)[-1])
    top = top[np.lexsort((top, band[top]))[::-1]][:cells]  # most votes first, then larger angle and rho
    best = (0.0, 0.0, -np.inf, 0, 0)
    ux, uy = usable
    for k in top:
        i, j = divmod(int(k), votes.shape[1] - 1)
        n, angle, rho = int(band[k]), float(angles[i]), float(j - shift + 1)
        inside = int(np.count_nonzero(np.abs(ux * np.cos(angle) + uy * np.sin(angle) - rho) < 1.0))
        expected = rate * max(inside, 1)
        significance = (n - expected) / np.sqrt(expected + 1.0)
        if significance > best[2]:
            best = (angle, rho, float(significance), n, inside)
    return best


def _refine(x: np.ndarray, y: np.ndarray, weight: np.ndarray) -> tuple[float, float]:
    """Weighted total-least-squares line through points: angle of its normal and rho."""
    w = weight / weight.sum()
    mx, my = float(w @ x), float(w @ y)
    cov = np.cov(np.stack([x - mx, y - my]), aweights=w, bias=True)
    vectors = np.linalg.eigh(cov)[1]
    normal = vectors[:, 0]  # the direction of least spread
    angle = float(np.arctan2(normal[1], normal[0]) % np.pi)
    return angle, mx * np.cos(angle) + my * np.sin(angle)


def _line_distance(xx: np.ndarray, yy: np.ndarray, angle: float, rho: float) -> np.ndarray:
    """Signed distance (bins) of bins ``(yy, xx)`` from the line ``x cos(angle) + y sin(angle) = rho``."""
    return (xx + 0.5) * np.cos(angle) + (yy + 0.5) * np.sin(angle) - rho


#: A trail's profile is measured out to this many bins on each side, in half-bin steps; its far
#: level is the median of the profile from :data:`FAR_BINS` bins out.
PROFILE_BINS, FAR_BINS = 12, 8
#: A step of the profile is above the far level by more than this many times the noise of its
#: median, :data:`MEDIAN_NOISE` / sqrt(bins) in units of one bin's noise (sqrt(pi / 2) = 1.2533 for
#: the median of normal values).
PROFILE_SIGMA, MEDIAN_NOISE = 3.0, 1.25


def _half_width(values: np.ndarray, distance: np.ndarray) -> float:
    """A trail's half-width in bins, from the significance ``values`` of bins at ``distance`` from its line.

    The profile across the trail (the median of each half-bin step of
    distance, both sides together: robust to stars and other trails
    crossing the band) is followed outwards while it stays above its far
    level (from :data:`FAR_BINS` bins out) by :data:`PROFILE_SIGMA` times
    the noise of a step's median, and falls. Beside a steep glow entering
    along an edge the smooth background is off by a ramp, which rises away
    from the trail where its wings fall: the two tests stop the profile
    where the trail's wings end, not where the ramp does. One bin more is
    the half-width.
    """
    steps = 2 * PROFILE_BINS
    near = np.abs(distance) < PROFILE_BINS
    step = np.floor(np.abs(distance[near]) * 2).astype(np.int64)  # half-bin steps, 0 .. steps - 1
    values = values[near]
    ordered = values[np.lexsort((values, step))]  # by step, then by value
    counts = np.bincount(step, minlength=steps)
    ends = np.cumsum(counts)
    medians = np.array([ordered[e - c // 2 - 1] if c else np.nan for c, e in zip(counts, ends, strict=True)])
    far = medians[2 * FAR_BINS :]
    far = far[np.isfinite(far)]
    level = np.median(far) if far.size else 0.0
    above = medians - level > PROFILE_SIGMA * MEDIAN_NOISE / np.sqrt(np.maximum(counts, 1))
    above[1:] &= medians[1:] <= medians[:-1]  # NaN (no bins) is neither above nor falling
    reach = len(above) if above.all() else int(np.argmin(above))
    return (reach / 2 if reach else 1.0) + 1.0


#: :func:`_is_ridge`: a line's band is the usable bins within :data:`RIDGE_BAND_BINS` of it, its
#: sides those :data:`RIDGE_SIDE_BINS` away on each side; each needs :data:`RIDGE_MIN_BINS` bins.
RIDGE_BAND_BINS, RIDGE_SIDE_BINS, RIDGE_MIN_BINS = 1.0, (2.0, 5.0), 5
#: A ridge's band stands out by this factor over its higher side.
RIDGE_CONTRAST = 3.0


def _is_ridge(z: np.ndarray, ok: np.ndarray, angle: float, rho: float, threshold: float) -> bool:
    """True when the binned significance ``z`` stands out along the line and not beside it, on both sides.

    A trail is a narrow ridge; where a steep glow enters, the smooth
    background leaves a ramp along the edge instead, which rises towards
    the edge (beside a line on it the bins on the edge's side are as high
    as those on the line, or missing), and broad bands parallel to the edge
    where interpolating between its cells misses the glow's bend. The line is ``x cos(angle) + y
    sin(angle) = rho`` in bin units; its band and sides are those of :data:`RIDGE_BAND_BINS`,
    :data:`RIDGE_SIDE_BINS` and :data:`RIDGE_MIN_BINS`, and the band's median must exceed
    :data:`RIDGE_CONTRAST` times the higher side's and ``threshold``.
    """
    yy, xx = np.nonzero(ok)
    distance = _line_distance(xx, yy, angle, rho)
    values = z[yy, xx]
    band = values[np.abs(distance) <= RIDGE_BAND_BINS]
    low, high = RIDGE_SIDE_BINS
    sides = [values[(distance >= low) & (distance <= high)], values[(distance <= -low) & (distance >= -high)]]
    if band.size < RIDGE_MIN_BINS or any(side.size < RIDGE_MIN_BINS for side in sides):
        return False
    beside = max(float(np.median(side)) for side in sides)
    return float(np.median(band)) > max(RIDGE_CONTRAST * beside, threshold)


#: Default bin side (px), and the most bins across the binned frame's diagonal: larger frames get
#: larger bins, which bounds the cost.
MIN_BIN_PX, MAX_DIAGONAL_BINS = 4, 800
#: Side, in bins, of the cells whose medians make the smooth background (:func:`_binned_significance`).
WINDOW_BINS = 16
#: Fewest usable bins in which trails are looked for.
MIN_USABLE_BINS = 100
#: Fewest voting bins left for which another trail is looked for.
MIN_VOTING_BINS = 10
#: A trail's line crosses usable bins over at least this fraction of the binned frame's diagonal.
MIN_LENGTH_FRACTION = 0.05
#: Voting bins within this many bins of a trail's line are its own: taken out of the vote, and
#: the bins its line is refined through.
TRAIL_BAND_BINS = 2.0
#: Fewest of a trail's own bins that refine its line (:func:`_refine`).
MIN_REFINE_BINS = 3
#: Lines within this angle (degrees) of the rows or columns must be ridges (:func:`_is_ridge`).
PARALLEL_DEG = 2.0


def find_trails(
    difference: np.ndarray,
    valid: np.ndarray,
    *,
    bin_px: int | None = None,
    threshold: float = 2.5,
    min_significance: float = 8.0,
    min_fraction: float = 0.3,
    max_trails: int = 10,
) -> pd.DataFrame:
    """Find straight trails in a difference image.

    Parameters
    ----------
    difference : numpy.ndarray, shape (ny, nx)
        ``m*T - R``: an array, or anything with a ``shape`` whose slices
        ``[rows, columns]`` are arrays (it is read a few rows at a time).
    valid : numpy.ndarray of bool, shape (ny, nx)
        Pixels to use: data in both frames, stars masked.
    bin_px : int, optional
        Bin side; by default :data:`MIN_BIN_PX`, more for large frames (the
        binned frame's diagonal at most about :data:`MAX_DIAGONAL_BINS` bins).
    threshold : float, default 2.5
        Bins further than this many noise sigmas from the background vote.
    min_significance : float, default 8.0
        A line is a trail when its votes exceed what the noise gives a line
        of its length by this many Poisson sigmas ...
    min_fraction : float, default 0.3
        ... and at least this fraction of its bins inside the frame voted.
    max_trails : int, default 10
        Of each sign at most.

    Returns
    -------
    pandas.DataFrame
        One row per trail (columns :data:`TRAIL_COLUMNS`): the line
        ``x cos(angle) + y sin(angle) = rho_px`` (0-based pixel centres),
        its half-width, ``sign`` (+1 brighter in the target, -1 in the
        reference), votes, length inside the frame and significance.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> image = rng.normal(0.0, 10.0, (300, 400))
    >>> yy, xx = np.mgrid[0:300, 0:400]
    >>> image += 60.0 * np.exp(-0.5 * ((0.6 * xx + 0.8 * yy - 200.0) / 1.2) ** 2)
    >>> trails = find_trails(image, np.ones(image.shape, dtype=bool))
    >>> len(trails), round(float(trails["angle"].iloc[0]), 2), round(float(trails["rho_px"].iloc[0]))
    (1, 0.93, 200)
    """
    ny, nx = difference.shape
    if bin_px is None:
        bin_px = max(MIN_BIN_PX, int(np.ceil(np.hypot(ny, nx) / MAX_DIAGONAL_BINS)))
    z, ok = _binned_significance(difference, valid, bin_px, WINDOW_BINS)
    if ok.sum() < MIN_USABLE_BINS:
        return pd.DataFrame([], columns=TRAIL_COLUMNS)
    limits = {"min_significance": min_significance, "min_fraction": min_fraction, "max_trails": max_trails}
    rows = [row for sign in (1, -1) for row in _trails_of_sign(sign, z, ok, threshold, **limits)]
    trails = pd.DataFrame(rows, columns=["angle", "rho", "sign", "votes", "length", "significance"])
    if trails.empty:
        return pd.DataFrame(columns=TRAIL_COLUMNS)
    return _trail_table(trails, z, ok, bin_px)


def _trails_of_sign(
    sign: int,
    z: np.ndarray,
    ok: np.ndarray,
    threshold: float,
    *,
    min_significance: float,
    min_fraction: float,
    max_trails: int,
) -> list[dict]:
    """The trails of one ``sign`` in the binned significance ``z`` (usable bins ``ok``), bin units.

    Bins beyond ``threshold`` vote (:func:`_votes`); the best line
    (:func:`_best_line`) is taken while it passes :func:`find_trails`'
    limits, its own bins are taken out of the vote, and its line is refined
    through them. A line along the rows or columns must be a ridge
    (:func:`_is_ridge`): the smooth background misses a steep glow entering
    from an edge by bands parallel to its rows or columns of cells (and by
    a ramp along the edge). Returns one dict per trail: angle, rho, sign,
    votes, length (inside the frame) and significance.
    """
    gy, gx = z.shape
    signed = sign * z
    uy, ux = np.nonzero(ok)
    usable = (ux + 0.5, uy + 0.5)
    angles, shift, n_rho = _hough_grid((gy, gx))
    voting = ok & (signed > threshold)
    rate = voting.sum() / ok.sum()
    by, bx = np.nonzero(voting)
    x, y, strength = bx + 0.5, by + 0.5, signed[by, bx]
    alive = np.ones(len(x), dtype=bool)
    votes = _votes(x, y, angles, shift, n_rho)  # of the points alive: a found trail's are taken out
    shortest = MIN_LENGTH_FRACTION * float(np.hypot(gx, gy))
    rows = []
    for _ in range(max_trails):
        if alive.sum() < MIN_VOTING_BINS:
            break
        angle, rho, significance, n, inside = _best_line(votes, angles, shift, usable, rate)
        if significance < min_significance or n < min_fraction * inside or inside < shortest:
            break
        chord = float(_chord(np.array([rho]), angle, gx, gy)[0])
        near = alive & (np.abs(x * np.cos(angle) + y * np.sin(angle) - rho) <= TRAIL_BAND_BINS)
        alive &= ~near
        votes -= _votes(x[near], y[near], angles, shift, n_rho)
        if near.sum() >= MIN_REFINE_BINS:
            angle, rho = _refine(x[near], y[near], strength[near])
        parallel = min(abs(np.sin(angle)), abs(np.cos(angle))) < np.sin(np.radians(PARALLEL_DEG))
        if parallel and not _is_ridge(signed, ok, angle, rho, threshold):
            continue
        rows.append(
            {
                "angle": angle,
                "rho": rho,
                "sign": sign,
                "votes": int(near.sum()),
                "length": chord,
                "significance": significance,
            }
        )
    return rows


def _trail_table(trails: pd.DataFrame, z: np.ndarray, ok: np.ndarray, bin_px: int) -> pd.DataFrame:
    """:func:`find_trails`' table, in px, from the trails :func:`_trails_of_sign` found, in bins."""
    uy, ux = np.nonzero(ok)
    half_widths = [
        _half_width(t.sign * z[uy, ux], _line_distance(ux, uy, t.angle, t.rho)) for t in trails.itertuples()
    ]
    # bin coordinates (bin centres at 0.5, 1.5, ...) to pixel indices: x_px = bin_px * x_bin - 0.5
    return pd.DataFrame(
        {
            "angle": trails["angle"],
            "rho_px": trails["rho"] * bin_px - 0.5 * (np.cos(trails["angle"]) + np.sin(trails["angle"])),
            "half_width_px": np.array(half_widths) * bin_px,
            "sign": trails["sign"],
            "votes": trails["votes"],
            "length_px": trails["length"] * bin_px,
            "significance": trails["significance"],
        },
        columns=TRAIL_COLUMNS,
    )


def trail_mask(shape: tuple[int, int], trails: pd.DataFrame, chunk_rows: int = 512) -> np.ndarray:
    """Boolean image, True within each trail's half-width of its line."""
    ny, nx = shape
    mask = np.zeros(shape, dtype=bool)
    x = np.arange(nx, dtype=np.float64)
    for t in trails.itertuples():
        c, s = np.cos(t.angle), np.sin(t.angle)
        for start in range(0, ny, chunk_rows):
            y = np.arange(start, min(start + chunk_rows, ny), dtype=np.float64)[:, None]
            mask[start : start + len(y)] |= np.abs(x * c + y * s - t.rho_px) <= t.half_width_px
    return mask
