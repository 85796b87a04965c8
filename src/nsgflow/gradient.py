"""Gradient samples: clipped means of m*T - R in boxes, away from stars."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import sep

from nsgflow.robust import IQR_TO_SIGMA, MAD_TO_SIGMA, sorted_quantile

if TYPE_CHECKING:
    from nsgflow.cores import ReplacedPixels

__all__ = [
    "alpha_from_hlr",
    "background_noise",
    "background_statistics",
    "box_statistic",
    "kernel_spectrum",
    "matched_difference",
    "moffat_radius",
    "sample_background",
    "star_mask",
    "star_radius",
]

#: Step (px) between the background map's pixels whose percentiles give the sky level and range.
MAP_STEP = 4

#: Pixels whose differences give a frame's noise (:func:`background_noise`).
NOISE_PIXELS = 4_000_000

#: Moffat beta assumed for star-rejection radii: broad wings, so radii err on the large side.
MASK_BETA = 2.5

#: Largest ratio of a star's peak to the level its mask radius reaches (:func:`star_radius`): beyond
#: the range of any camera's frame over its noise, so it only bounds frames without noise.
MAX_MASK_DEPTH = 1e6


def background_noise(data: np.ndarray, pixels: int = NOISE_PIXELS) -> float:
    """Robust per-pixel noise of a frame's background (MAD of pixel-to-pixel differences).

    Differences of horizontal neighbours cancel smooth background and most
    of the stars, so this is the noise even in a crowded or nebulous frame.
    Of a large frame every few rows are used, about ``pixels`` pixels
    (:data:`NOISE_PIXELS`: enough for the median to 0.1 %).
    """
    rows = data[:: max(1, data.size // pixels)]
    a, b = rows[:, :-1], rows[:, 1:]
    diff = np.subtract(a, b)
    if (rows == 0).any():  # only differences between two pixels with data
        ok = a != 0
        ok &= b != 0
        diff = diff[ok]
        del ok
    diff = diff.ravel()
    if diff.size == 0:
        return float("nan")
    # in place: the medians reorder diff, which changes neither them nor what follows
    diff -= np.median(diff, overwrite_input=True)
    np.abs(diff, out=diff)
    return float(MAD_TO_SIGMA * np.median(diff, overwrite_input=True) / np.sqrt(2))


def background_statistics(
    data: np.ndarray, box_px: int = 64, background: sep.Background | None = None
) -> dict[str, float]:
    """Level, flatness and noise of a frame's background.

    ``background``, sep's background of ``data`` with no-data pixels masked and
    mesh ``box_px``, is used if given rather than made again.

    Returns
    -------
    dict
        ``sky`` (median of sep's background map), ``sky_range`` (its 95th minus
        5th percentile: how strong the gradient is), ``noise`` (see
        :func:`background_noise`) and ``valid_fraction`` (pixels with data).
        The map is smooth on the scale of its mesh, so its percentiles are
        taken on every :data:`MAP_STEP`-th pixel each way rather than on all
        of a large frame's pixels.
    """
    nodata = data == 0
    valid_fraction = float(1.0 - nodata.mean())
    if valid_fraction == 0:
        return {"sky": float("nan"), "sky_range": float("nan"), "noise": float("nan"), "valid_fraction": 0.0}
    if background is None:
        background = sep.Background(data, mask=nodata, bw=box_px, bh=box_px)
    back = background.back()[::MAP_STEP, ::MAP_STEP]
    low, mid, high = np.percentile(back[~nodata[::MAP_STEP, ::MAP_STEP]], [5, 50, 95])
    del back, nodata
    return {
        "sky": float(mid),
        "sky_range": float(high - low),
        "noise": background_noise(data),
        "valid_fraction": valid_fraction,
    }


def alpha_from_hlr(hlr_px: float | np.ndarray, beta: float) -> float | np.ndarray:
    """Width ``alpha`` (px) of a round Moffat profile of half-light radius ``hlr_px`` and ``beta``.

    Examples
    --------
    >>> float(alpha_from_hlr(1.0, 2.0))  # beta 2 holds half its light within alpha
    1.0
    """
    return hlr_px / np.sqrt(2 ** (1 / (beta - 1)) - 1)


def moffat_radius(level: np.ndarray | float, alpha: float, beta: float) -> np.ndarray | float:
    """Radius (px) where a round Moffat profile of ``alpha`` and ``beta`` peaking at ``level`` falls to 1.

    Examples
    --------
    >>> float(moffat_radius(4.0, 1.0, 2.0))  # (1 + r**2) ** -2 = 1/4
    1.0
    """
    return alpha * np.sqrt(level ** (1 / beta) - 1)


def star_radius(
    amplitude: np.ndarray,
    hlr_px: float,
    noise: float,
    *,
    mask_sigma: float = 1.0,
    growth: float = 1.0,
    min_hlr: float = 2.0,
) -> np.ndarray:
    """Radius (px) beyond which a star's light falls below ``mask_sigma`` times the noise.

    The star is modelled as a Moffat profile (beta = :data:`MASK_BETA`) with the
    frame's median half-light radius and the given peak ``amplitude``; the
    radius is multiplied by ``growth`` and is at least ``min_hlr`` half-light radii.
    Light is followed down to at most :data:`MAX_MASK_DEPTH` times below the
    peak, so a frame without measurable noise (``noise`` 0: every pixel
    difference the same, e.g. a synthetic frame) still gets finite radii.
    """
    alpha = alpha_from_hlr(hlr_px, MASK_BETA)
    with np.errstate(divide="ignore", invalid="ignore"):
        level = np.asarray(amplitude, float) / (mask_sigma * noise)
    level = np.clip(np.nan_to_num(level, nan=1.0), 1.0, MAX_MASK_DEPTH)
    radius = moffat_radius(level, alpha, MASK_BETA)
    return np.maximum(growth * radius, min_hlr * hlr_px)


def star_mask(shape: tuple[int, int], x: np.ndarray, y: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """Boolean image, True within ``radius`` of any star (stars with a non-finite radius are skipped).

    A pixel is masked when ``(px - x)**2 + (py - y)**2 <= radius**2``: sep's
    ``mask_ellipse`` with circles, in C: the same pixels as drawing a box of
    pixels around each star with numpy, in a fraction of the time.

    Examples
    --------
    >>> mask = star_mask((5, 7), np.array([3.0]), np.array([2.0]), np.array([1.0]))
    >>> mask.astype(int)
    array([[0, 0, 0, 0, 0, 0, 0],
           [0, 0, 0, 1, 0, 0, 0],
           [0, 0, 1, 1, 1, 0, 0],
           [0, 0, 0, 1, 0, 0, 0],
           [0, 0, 0, 0, 0, 0, 0]])
    """
    mask = np.zeros(shape, dtype=bool)
    x, y, radius = (np.asarray(v, dtype=np.float64).ravel() for v in (x, y, radius))
    finite = np.isfinite(radius) & np.isfinite(x) & np.isfinite(y)
    x, y, radius = x[finite], y[finite], radius[finite]
    sep.mask_ellipse(mask, x, y, radius, radius, np.zeros_like(radius), r=1.0)
    return mask


#: Pixels of :func:`matched_difference` whose convolved kernels have less than this fraction of their
#: light on pixels with data are left out: near a border, the difference rests on the side with data.
MIN_MATCHED_COVERAGE = 0.5


#: Rows that :func:`matched_difference` convolves at once (overlap-save): its memory stays a small
#: fraction of a frame's, and a strip's transforms fit the CPU's caches better than a frame's.
MATCHED_STRIP_ROWS = 256


def matched_difference(
    target: np.ndarray,
    reference: np.ndarray,
    scale: float,
    target_kernel: np.ndarray,
    reference_kernel: np.ndarray,
    valid: tuple[np.ndarray, np.ndarray],
    replaced: tuple[ReplacedPixels | None, ReplacedPixels | None] = (None, None),
    *,
    out: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """m*(T * K_R) - R * K_T: the difference of the two frames convolved to one star profile.

    Each frame is convolved with the other frame's star profile (``K_R`` the
    reference's, ``K_T`` the target's, each an odd-sized image), so every
    star, faint or bright, has the same profile in both and cancels in the
    difference, wings included; a smooth background is unchanged, as each
    kernel is normalized to sum 1. Each frame's own ``valid`` pixels (the
    target's, the reference's) enter its convolution, divided by the
    convolved ``valid`` (normalized convolution), so borders, trails and hot
    pixels do not leak in, and a star in one frame's border or under its
    trail still enters the other frame's convolution whole.
    The frame is convolved in strips of :data:`MATCHED_STRIP_ROWS` rows by FFT.
    ``replaced`` holds pixels of the target and the reference read with other
    values (saturated cores rebuilt, :func:`nsgflow.cores.saturated_cores`).
    ``out``, float32 of the target's shape, receives the difference; it may
    be ``target`` itself (its rows are read before they are overwritten).

    Returns
    -------
    difference : numpy.ndarray of float32, shape of ``target``
    defined : numpy.ndarray of bool
        Pixels valid in both frames whose kernels have at least
        :data:`MIN_MATCHED_COVERAGE` of their light on each frame's valid
        pixels (the frame's edge is a border too).
    """
    from scipy import fft

    half = max(target_kernel.shape[0], reference_kernel.shape[0]) // 2
    ny, nx = target.shape
    rows = min(MATCHED_STRIP_ROWS, ny)
    shape = (fft.next_fast_len(rows + 2 * half, real=True), fft.next_fast_len(nx + 2 * half, real=True))
    kernels = [kernel_spectrum(k / k.sum(), shape) for k in (reference_kernel, target_kernel)]
    out = np.zeros(target.shape, np.float32) if out is None else out
    in_place = np.shares_memory(out, target)
    defined = valid[0] & valid[1]
    above = target[:0]  # in place: the target's rows above the strip, as read before they were overwritten
    for y0 in range(0, ny, rows):
        y1 = min(y0 + rows, ny)
        lo, hi = max(y0 - half, 0), min(y1 + half, ny)
        target_rows = _read_rows(target, y0 if in_place else lo, hi, replaced[0])
        if in_place:
            target_rows = np.concatenate([above, target_rows])
            above = target_rows[max(y1 - half, 0) - lo : y1 - lo].copy()
        blocks = (target_rows, _read_rows(reference, lo, hi, replaced[1]))
        window = np.s_[half - (y0 - lo) : half + (hi - y0), half : half + nx]
        masks = (valid[0][lo:hi], valid[1][lo:hi])
        difference, ok = _matched_strip(blocks, (scale, -1.0), kernels, masks, shape, window, y1 - y0)
        out[y0:y1] = difference
        defined[y0:y1] &= ok
    out[~defined] = 0.0
    return out, defined


def _read_rows(plane: np.ndarray, first: int, last: int, replaced: ReplacedPixels | None) -> np.ndarray:
    """Rows ``first`` to ``last`` of ``plane``, with the ``replaced`` pixels if any."""
    return plane[first:last] if replaced is None else replaced.read_block(plane, (first, last))


def _matched_strip(
    blocks: tuple[np.ndarray, np.ndarray],
    factors: tuple[float, float],
    kernels: list[np.ndarray],
    valid: tuple[np.ndarray, np.ndarray],
    shape: tuple[int, int],
    window: tuple[slice, slice],
    rows: int,
) -> tuple[np.ndarray, np.ndarray]:
    """One strip of :func:`matched_difference`: the sum of each block's normalized convolution times a factor.

    ``blocks`` and their ``valid`` pixels are the strip's rows with their margins, placed at
    ``window`` of a zero-padded ``shape`` image; ``kernels`` the spectra
    (:func:`kernel_spectrum`) each block is convolved with. Returns the strip's
    ``rows`` rows of the sum and of the pixels whose kernels are covered.
    """
    from scipy import fft

    half = window[1].start
    strip = np.s_[half : half + rows, window[1]]
    padded = np.zeros(shape, np.float32)
    total, defined = np.zeros((rows, window[1].stop - half), np.float32), True
    # in place: strips count
    for block, mask, factor, kernel in zip(blocks, valid, factors, kernels, strict=True):
        padded[window] = mask
        spectrum = fft.rfft2(padded)
        spectrum *= kernel
        weight = fft.irfft2(spectrum, shape, overwrite_x=True)[strip]
        defined = defined & (weight >= MIN_MATCHED_COVERAGE)
        np.maximum(weight, MIN_MATCHED_COVERAGE, out=weight)
        padded[window] = 0.0
        np.copyto(padded[window], block, where=mask)
        spectrum = fft.rfft2(padded)
        spectrum *= kernel
        light = fft.irfft2(spectrum, shape, overwrite_x=True)[strip]
        light *= np.float32(factor)
        light /= weight
        total += light
        del spectrum, light, weight
    return total, defined


def kernel_spectrum(kernel: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Real FFT of an odd-sized ``kernel`` centred on pixel (0, 0) of a ``shape`` image (wrapped round).

    Multiplying an image's ``rfft2`` of ``shape`` by it convolves the image with ``kernel``, circularly.
    """
    from scipy import fft

    k = kernel.shape[0] // 2
    padded = np.zeros(shape, np.float32)
    padded[: 2 * k + 1, : 2 * k + 1] = kernel
    return fft.rfft2(np.roll(padded, (-k, -k), axis=(0, 1)))


def box_statistic(
    values: np.ndarray, clip_sigma: float = 4.0, iterations: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """The value of each sample box, a sigma-clipped mean, and how many pixels it has.

    This is the one place that decides what a sample measures. Starting from
    the median, values further than ``clip_sigma`` robust standard deviations
    (interquartile range / :data:`~nsgflow.robust.IQR_TO_SIGMA`) from the current mean are left out and the
    mean is taken again, ``iterations`` times. Unlike the median, the mean of
    a box of m*T - R does not depend on how sharp the faint stars are in
    either frame (they hold the same light); the clipping keeps hot pixels,
    cosmic rays and trail cores out of it. (At 3 sigmas it also clipped the
    sharper frame's faint star peaks, not the broader one's wings: 0.01-0.03
    sigma of bias on the benchmark's hard set.)

    Parameters
    ----------
    values : numpy.ndarray, shape (n, k)
        One box per row, NaN for the pixels not to use (star, no data,
        outside the frame).
    clip_sigma : float, default 4.0
        Clipping threshold in robust standard deviations.
    iterations : int, default 2
        Clipping passes.

    Returns
    -------
    value : numpy.ndarray of float64, shape (n,)
        The clipped mean, NaN for rows without values.
    count : numpy.ndarray of int, shape (n,)
        Finite values in each row.

    Examples
    --------
    >>> rows = np.array([[1.0, 2.0, 3.0, 4.0, 100.0, np.nan], [np.nan] * 6])
    >>> value, count = box_statistic(rows)
    >>> value.tolist()[0], bool(np.isnan(value[1])), count.tolist()
    (2.5, True, [5, 0])
    """
    ordered = np.sort(values, axis=1)  # NaN last
    count = np.isfinite(ordered).sum(axis=1)
    index = np.arange(len(ordered))
    centre = sorted_quantile(ordered, count, 0.5)
    spread = (sorted_quantile(ordered, count, 0.75) - sorted_quantile(ordered, count, 0.25)) / IQR_TO_SIGMA
    # cumulative sums of the values less the median: any window's sum by two look-ups (in float32:
    # the outliers sorted below the window shift its sums by about 1e-7 of theirs)
    offset = ordered - centre[:, None].astype(ordered.dtype)
    offset[~np.isfinite(offset)] = 0.0
    sums = np.zeros((len(ordered), ordered.shape[1] + 1), dtype=np.float32)
    np.cumsum(offset, axis=1, out=sums[:, 1:])
    value = centre.copy()
    for _ in range(iterations):
        low = (ordered < (value - clip_sigma * spread)[:, None]).sum(axis=1)
        high = (ordered <= (value + clip_sigma * spread)[:, None]).sum(axis=1)
        kept = high - low
        window = (sums[index, high].astype(np.float64) - sums[index, low]) / np.maximum(kept, 1)
        value = np.where(kept > 0, centre + window, value)
    return np.where(count > 0, value, np.nan), count


def sample_background(
    difference: np.ndarray,
    valid: np.ndarray,
    *,
    box_px: int = 32,
    min_valid_fraction: float = 0.1,
) -> pd.DataFrame:
    """The value (:func:`box_statistic`) of ``difference`` over valid pixels in each box of a regular grid.

    Parameters
    ----------
    difference : numpy.ndarray, shape (ny, nx)
        ``m*T - R``.
    valid : numpy.ndarray of bool, shape (ny, nx)
        Pixels to use: data on both frames, not near a star.
    box_px : int, default 32
        Side of the square sample boxes; boxes tile the frame from (0, 0),
        the last row and column may be smaller.
    min_valid_fraction : float, default 0.1
        Boxes with fewer valid pixels than this fraction of a full box are
        rejected (so are thin slivers at the frame's edges).

    Returns
    -------
    pandas.DataFrame
        One row per box: ``x, y`` (centroid of its valid pixels, 0-based px),
        ``box_px``, ``value`` (:func:`box_statistic`, NaN if rejected), ``weight`` (valid
        pixels / full box area, 0 if rejected), ``valid_fraction`` and ``status`` (``used``,
        ``no_data`` or ``too_few_pixels``).
    """
    ny, nx = difference.shape
    nby, nbx = -(-ny // box_px), -(-nx // box_px)
    value = np.full(nby * nbx, np.nan)
    count = np.zeros(nby * nbx, dtype=np.int64)
    # each sample sits at the centroid of its valid pixels: a box cut by a border or by
    # masked stars measures the background there, not at the box's centre
    cx, cy = np.zeros(nby * nbx), np.zeros(nby * nbx)
    local = np.arange(box_px, dtype=np.float64)
    # one row of boxes at a time: no frame-sized temporaries
    strip = np.full((box_px, nbx * box_px), np.nan, dtype=np.float32)
    for row in range(nby):
        y0, y1 = row * box_px, min((row + 1) * box_px, ny)
        strip[:] = np.nan
        np.copyto(strip[: y1 - y0, :nx], difference[y0:y1], where=valid[y0:y1], casting="unsafe")
        blocks = strip.reshape(box_px, nbx, box_px).swapaxes(0, 1).reshape(nbx, -1)
        boxes = slice(row * nbx, (row + 1) * nbx)
        value[boxes], count[boxes] = box_statistic(blocks)
        finite = np.isfinite(blocks).reshape(nbx, box_px, box_px)  # box, row, column
        cx[boxes] = finite.sum(axis=1) @ local
        cy[boxes] = finite.sum(axis=2) @ local
    iy, ix = np.divmod(np.arange(nby * nbx), nbx)
    width = np.minimum((ix + 1) * box_px, nx) - ix * box_px
    height = np.minimum((iy + 1) * box_px, ny) - iy * box_px
    has = count > 0
    cx = np.where(has, cx / np.maximum(count, 1), (width - 1) / 2.0)
    cy = np.where(has, cy / np.maximum(count, 1), (height - 1) / 2.0)
    fraction = count / box_px**2
    status = np.where(
        count == 0, "no_data", np.where(fraction < min_valid_fraction, "too_few_pixels", "used")
    )
    use = status == "used"
    value[~use] = np.nan
    return pd.DataFrame(
        {
            "x": ix * box_px + cx,
            "y": iy * box_px + cy,
            "box_px": box_px,
            "value": value,
            "weight": np.where(use, fraction, 0.0),
            "valid_fraction": fraction,
            "status": status,
        }
    )
