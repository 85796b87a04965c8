"""Star detection: a catalog of stars per frame, with saturation and border flags."""

from __future__ import annotations

from enum import IntFlag

import numpy as np
import pandas as pd
import sep

from nsgflow.errors import FrameError

__all__ = ["StarFlag", "detect_stars", "estimate_saturation", "nodata_counts"]

#: Catalog columns, in order.
CATALOG_COLUMNS = ["id", "x", "y", "flux", "peak", "sky", "a", "b", "theta", "hlr_px", "flags"]


class StarFlag(IntFlag):
    """Per-star problems, as bit flags in the catalog's ``flags`` column."""

    #: Peak at or above the linear range of the frame's saturation level.
    SATURATED = 1
    #: No-data pixels (exact zeros) or the frame edge within the border margin.
    NEAR_BORDER = 2
    #: Deblended from a neighbour by sep.
    BLENDED = 4


def estimate_saturation(
    data: np.ndarray, min_pixels: int = 5, tolerance: float = 0.02, min_clipped: int = 2
) -> float:
    """Return the frame's saturation level, found from the data; ``inf`` if none.

    A frame is taken as saturated when at least ``min_pixels`` pixels lie within
    ``tolerance`` (relative) of its maximum: clipped star cores form such a
    plateau, even after flat-fielding spreads it a little, while the peak of an
    unsaturated star is a single pixel. It is also taken as saturated when
    ``min_clipped`` pixels hold exactly the maximum: stars that only just
    reach the clip level leave a pixel or two at it, too few for a plateau
    but enough to cost them flux (two such stars left unflagged, the
    brightest of a frame, can bias its scale by 0.3 %), while noise seldom
    gives two pixels the same largest value.

    Parameters
    ----------
    data : numpy.ndarray, shape (ny, nx)
        Frame, 0 for no data.
    min_pixels : int, default 5
        Pixels needed near the maximum to call it a plateau.
    tolerance : float, default 0.02
        Relative width of the plateau.
    min_clipped : int, default 2
        Pixels at exactly the maximum that make it the saturation level.
    """
    top = float(np.max(data))
    if top <= 0:
        return float("inf")
    plateau = int(np.count_nonzero(data >= top * (1 - tolerance))) >= min_pixels
    return top if plateau or int(np.count_nonzero(data == top)) >= min_clipped else float("inf")


#: Side (px) of the blocks in which :func:`nodata_counts` first looks for no-data pixels.
NODATA_BLOCK = 32


def nodata_counts(nodata: np.ndarray, x: np.ndarray, y: np.ndarray, half: np.ndarray) -> np.ndarray:
    """Count no-data pixels in boxes around positions; area outside the frame counts too.

    Parameters
    ----------
    nodata : numpy.ndarray of bool, shape (ny, nx)
        True where the frame has no data.
    x, y : numpy.ndarray, shape (n,)
        Box centres, 0-based pixels.
    half : numpy.ndarray or int
        Box half-size in pixels (box side ``2*half+1``).
    """
    ny, nx = nodata.shape
    ix, iy = np.rint(x).astype(np.int64), np.rint(y).astype(np.int64)
    half = np.broadcast_to(np.asarray(half, dtype=np.int64), ix.shape)
    x1, x2 = ix - half, ix + half + 1
    y1, y2 = iy - half, iy + half + 1
    cx1, cx2, cy1, cy2 = (np.clip(v, 0, n) for v, n in ((x1, nx), (x2, nx), (y1, ny), (y2, ny)))
    outside = (x2 - x1) * (y2 - y1) - (cx2 - cx1).clip(0) * (cy2 - cy1).clip(0)
    if not nodata.any():  # the usual frame
        return outside
    # no-data pixels per block of NODATA_BLOCK x NODATA_BLOCK, summed over blocks: only the boxes
    # reaching a block with some are counted pixel by pixel (those near a border, most often)
    starts = np.arange(0, nx, NODATA_BLOCK)
    blocks = np.array(
        [
            np.add.reduceat(np.count_nonzero(nodata[top : top + NODATA_BLOCK], axis=0), starts)
            for top in range(0, ny, NODATA_BLOCK)
        ]
    )
    table = np.zeros((blocks.shape[0] + 1, blocks.shape[1] + 1), dtype=np.int64)
    table[1:, 1:] = blocks.cumsum(axis=0).cumsum(axis=1)
    by1, by2 = cy1 // NODATA_BLOCK, -(-cy2 // NODATA_BLOCK)
    bx1, bx2 = cx1 // NODATA_BLOCK, -(-cx2 // NODATA_BLOCK)
    near = table[by2, bx2] - table[by1, bx2] - table[by2, bx1] + table[by1, bx1]
    inside = np.zeros(ix.shape, dtype=np.int64)
    for i in np.flatnonzero((near > 0) & (cx2 > cx1) & (cy2 > cy1)):
        inside[i] = np.count_nonzero(nodata[cy1[i] : cy2[i], cx1[i] : cx2[i]])
    return inside + outside


#: Stars (the brightest) whose half-light radius is measured: the frame's star size is their median.
SIZED_STARS = 2000

#: Pixels sep may hold in its extraction buffer at first (~50 bytes each); doubled while it overflows.
PIXSTACK = 1_000_000
#: Frames taller than two strips are searched a strip of this many rows at a time: sep's cleaning
#: (dropping detections that are only a brighter neighbour's wing) compares every object with the
#: others still open, which on a 24-megapixel frame costs twice as much at once as in strips.
STRIP_ROWS = 1024
#: Rows a strip reaches into each neighbour, so that every object is whole in the strip holding
#: its centroid; each object is kept from that strip only.
STRIP_OVERLAP = 128


def _extract_whole(data: np.ndarray, threshold: float, **kwargs: object) -> np.ndarray:
    """``sep.extract``, with a pixel buffer grown only as far as the frame needs.

    sep allocates its whole buffer up front: a quarter of a 24-megapixel frame
    costs 300 MB, while most frames need a small part of that. The result does
    not depend on the buffer's size, only whether it suffices.
    """
    stack = min(PIXSTACK, max(300_000, data.size))
    while True:
        sep.set_extract_pixstack(stack)
        try:
            return sep.extract(data, threshold, **kwargs)
        except Exception as exc:
            if "pixel buffer full" not in str(exc) or stack >= data.size:
                raise
            stack = min(2 * stack, data.size)


def _extract(data: np.ndarray, threshold: float, *, mask: np.ndarray, **kwargs: object) -> np.ndarray:
    """``sep.extract`` of the whole frame, in overlapping strips of :data:`STRIP_ROWS` rows if tall."""
    ny = data.shape[0]
    if ny <= 2 * STRIP_ROWS:
        return _extract_whole(data, threshold, mask=mask, **kwargs)
    parts = []
    for start in range(0, ny, STRIP_ROWS):
        low, high = max(0, start - STRIP_OVERLAP), min(ny, start + STRIP_ROWS + STRIP_OVERLAP)
        rows = slice(low, high)
        objects = _extract_whole(
            np.ascontiguousarray(data[rows]), threshold, mask=np.ascontiguousarray(mask[rows]), **kwargs
        )
        for key in ("y", "ymin", "ymax", "ycpeak", "ypeak"):
            objects[key] += low
        parts.append(objects[(objects["y"] >= start) & (objects["y"] < start + STRIP_ROWS)])
    return np.concatenate(parts)


def _background_subtracted(
    data: np.ndarray, nodata: np.ndarray, background: sep.Background | None, box_px: int
) -> tuple[np.ndarray, float]:
    """The frame less its background, 0 where it has no data, and the background's noise.

    The background is ``background``, else sep's made with a mesh of ``box_px``.

    Raises
    ------
    FrameError
        The background has no noise (a constant frame).
    """
    if background is None:
        background = sep.Background(data, mask=nodata, bw=box_px, bh=box_px)
    rms = background.globalrms
    if not np.isfinite(rms) or rms <= 0:
        raise FrameError("frame has no background noise (constant frame?)")
    subtracted = background.back()
    np.subtract(data, subtracted, out=subtracted)  # the map's memory, reused; made again for the sky
    np.copyto(subtracted, 0.0, where=nodata)
    return subtracted, rms


#: Most sub-objects sep may split one detection into while deblending (sep's default: 1024).
SUB_OBJECT_LIMIT = 4096


def _brightest(
    subtracted: np.ndarray,
    nodata: np.ndarray,
    rms: float,
    *,
    threshold_sigma: float,
    min_area_px: int,
    deblend_levels: int,
    max_stars: int,
) -> np.ndarray:
    """sep's objects in the background-subtracted frame: the ``max_stars`` brightest, brightest first.

    Objects without a positive flux and size are left out; the settings
    are :func:`detect_stars`'.

    Raises
    ------
    FrameError
        No object.
    """
    sep.set_sub_object_limit(SUB_OBJECT_LIMIT)
    objects = _extract(
        subtracted, threshold_sigma, err=rms, mask=nodata, minarea=min_area_px, deblend_nthresh=deblend_levels
    )
    objects = objects[(objects["flux"] > 0) & (objects["a"] > 0)]
    if len(objects) == 0:
        raise FrameError(f"no stars found above {threshold_sigma} sigma")
    return objects[np.argsort(-objects["flux"], kind="stable")][:max_stars]


#: A star's half-light radius is looked for within this many of its semi-major axes (sep's ``a``).
HLR_SEARCH_A = 6.0


def _half_light_radii(
    subtracted: np.ndarray, objects: np.ndarray, x: np.ndarray, y: np.ndarray, nodata: np.ndarray
) -> np.ndarray:
    """Half-light radii (px) of the :data:`SIZED_STARS` first ``objects`` at ``x, y``; NaN for the others."""
    hlr = np.full(len(objects), np.nan)
    n = min(len(objects), SIZED_STARS)
    hlr[:n], _ = sep.flux_radius(subtracted, x[:n], y[:n], HLR_SEARCH_A * objects["a"][:n], 0.5, mask=nodata)
    return hlr


def _star_flags(objects: np.ndarray, saturated: np.ndarray, near_border: np.ndarray) -> np.ndarray:
    """:class:`StarFlag` of each of sep's ``objects``: ``saturated``, ``near_border`` and deblended by sep."""
    flags = np.zeros(len(objects), dtype=np.int64)
    flags[saturated] |= StarFlag.SATURATED
    flags[near_border] |= StarFlag.NEAR_BORDER
    flags[(objects["flag"] & sep.OBJ_MERGED) != 0] |= StarFlag.BLENDED
    return flags


def detect_stars(
    data: np.ndarray,
    *,
    threshold_sigma: float = 5.0,
    min_area_px: int = 5,
    deblend_levels: int = 8,
    background_box_px: int = 64,
    linear_range: float = 0.9,
    border_margin_hlr: float = 6.0,
    max_stars: int = 20000,
    saturation: float | None = None,
    background: sep.Background | None = None,
) -> pd.DataFrame:
    """Detect stars in a frame after subtracting its local background.

    Parameters
    ----------
    data : numpy.ndarray, shape (ny, nx), float32
        Frame; exact zeros are no data and are masked.
    threshold_sigma : float, default 5.0
        Detection threshold in units of the background noise.
    min_area_px : int, default 5
        Minimum connected pixels above threshold.
    deblend_levels : int, default 8
        Thresholds between the detection threshold and an object's peak at
        which sep looks for separate stars in it (``deblend_nthresh``). More
        split close pairs a little more finely and take longer: on a
        24-megapixel frame 16 take a third more time than 8, SExtractor's
        usual 32 more still, for the same scale and gradient accuracy on the
        benchmark (``benchmarks/accuracy.py``).
    background_box_px : int, default 64
        Mesh size of sep's background model.
    linear_range : float, default 0.9
        Stars whose raw peak reaches this fraction of the saturation level
        (:func:`estimate_saturation`) are flagged ``SATURATED``.
    border_margin_hlr : float, default 6.0
        Stars with no-data pixels or the frame edge closer than this many
        median half-light radii are flagged ``NEAR_BORDER``.
    max_stars : int, default 20000
        Keep at most this many stars, brightest first.
    saturation : float, optional
        The frame's saturation level if already known; by default
        :func:`estimate_saturation` finds it.
    background : sep.Background, optional
        sep's background of ``data`` (no-data pixels masked, mesh
        ``background_box_px``) if already made.

    Returns
    -------
    pandas.DataFrame
        One row per star, brightest first, columns ``id, x, y`` (0-based px),
        ``flux`` (background-subtracted isophotal sum), ``peak`` (raw value of
        the brightest pixel), ``sky`` (local background there), ``a, b, theta`` (sep's shape), ``hlr_px``
        (half-light radius; of the :data:`SIZED_STARS` brightest, NaN for the
        others) and ``flags`` (:class:`StarFlag`).

    Raises
    ------
    FrameError
        The frame holds no data or no detectable star.
    """
    nodata = data == 0
    if nodata.all():
        raise FrameError("frame holds no data (all pixels are 0, NaN or inf)")
    subtracted, rms = _background_subtracted(data, nodata, background, background_box_px)
    objects = _brightest(
        subtracted,
        nodata,
        rms,
        threshold_sigma=threshold_sigma,
        min_area_px=min_area_px,
        deblend_levels=deblend_levels,
        max_stars=max_stars,
    )
    x, y = objects["x"].astype(np.float64), objects["y"].astype(np.float64)
    hlr = _half_light_radii(subtracted, objects, x, y, nodata)
    peaks = objects["ycpeak"], objects["xcpeak"]
    peak = data[peaks].astype(np.float64)
    sky = peak - subtracted[peaks]  # the background map there, without making the map again
    del subtracted

    if saturation is None:
        saturation = estimate_saturation(data)
    border_px = int(np.ceil(border_margin_hlr * np.nanmedian(hlr)))
    near_border = nodata_counts(nodata, x, y, border_px) > 0
    flags = _star_flags(objects, peak >= linear_range * saturation, near_border)
    return pd.DataFrame(
        {
            "id": np.arange(len(objects)),
            "x": x,
            "y": y,
            "flux": objects["flux"].astype(np.float64),
            "peak": peak,
            "sky": sky,
            "a": objects["a"].astype(np.float64),
            "b": objects["b"].astype(np.float64),
            "theta": objects["theta"].astype(np.float64),
            "hlr_px": hlr,
            "flags": flags,
        },
        columns=CATALOG_COLUMNS,
    )
