"""The sky around a star without its neighbours' light: neighbour masks and annulus backgrounds.

A star's neighbours spread light into the annulus its background is measured
in, and into the pixels its profile is fitted to. :func:`neighbour_mask`
marks the pixels where a detected star's light exceeds a number of noise
sigmas in either of two frames (each star out to :func:`neighbour_radii`, at
the frame's noise from :func:`mask_noise`); :func:`annulus_background` gives
the level and scatter of the pixels in an annulus around each position, those
of the mask left out but a star's own, as a median or a least-squares plane.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from nsgflow.gradient import background_noise, star_mask, star_radius
from nsgflow.robust import MAD_TO_SIGMA, sorted_mad, sorted_median

__all__ = [
    "annulus_background",
    "mask_noise",
    "neighbour_mask",
    "neighbour_radii",
    "plane_fit",
]

#: Fewest annulus pixels, as a fraction of those with data, that masking neighbours may leave; a
#: star whose annulus keeps fewer (a very crowded field) gets the median of all of them instead.
MIN_UNMASKED_FRACTION = 0.25

#: Pixels whose differences give a frame's noise for the neighbour masks: the noise to a few tenths
#: of a percent, plenty for a mask radius, in a sixteenth of the time of all of a large frame's.
MASK_NOISE_PIXELS = 250_000


def annulus_background(
    data: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    r_in: float,
    r_out: float,
    chunk: int = 512,
    *,
    mask: np.ndarray | None = None,
    own_radius: np.ndarray | None = None,
    plane: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Background level and robust sigma of the pixels in an annulus around each position.

    The level is their median, or with ``plane`` the value at the position
    of a least-squares plane through them (:func:`_plane_at_centre`).

    No-data pixels (0) and pixels outside the frame are ignored, and so are
    the pixels of ``mask`` (True: a neighbour's light, :func:`neighbour_mask`)
    except those within ``own_radius`` of the position (its own star's
    mask). Where the mask would leave fewer than :data:`MIN_UNMASKED_FRACTION`
    of an annulus's pixels with data, all of them are used.

    Returns
    -------
    median, sigma : numpy.ndarray, shape (n,)
        Background level and its per-pixel scatter (1.4826 MAD); NaN when the
        annulus holds no valid pixel.
    count : numpy.ndarray of int, shape (n,)
        Valid pixels in each annulus.
    """
    ny, nx = data.shape
    half = int(np.ceil(r_out))
    # Pixel offsets from the rounded position that can lie in the annulus of a position up to
    # half a pixel away in x and y (so up to 0.71 px): only these are read, sorted and tested.
    oy, ox = np.mgrid[-half : half + 1, -half : half + 1]
    near = np.hypot(oy, ox)
    ring = (near >= r_in - 0.75) & (near <= r_out + 0.75)
    oy, ox = oy[ring], ox[ring]
    median = np.full(len(x), np.nan)
    sigma = np.full(len(x), np.nan)
    count = np.zeros(len(x), dtype=np.int64)
    ix, iy = np.rint(x).astype(np.int64), np.rint(y).astype(np.int64)
    # the offsets of each position from its pixel: exact, so (oy - fy) is the same number as (iy + oy) - y
    fx, fy = x - ix, y - iy
    oxf, oyf = ox.astype(np.float64), oy.astype(np.float64)
    flat = data.ravel()
    masked = None if mask is None else mask.ravel()
    own2 = np.zeros(len(x)) if own_radius is None else np.asarray(own_radius, dtype=np.float64) ** 2
    # positions whose every candidate pixel is in the frame need no clipping or test for it
    interior = (ix - half >= 0) & (ix + half < nx) & (iy - half >= 0) & (iy + half < ny)
    for stars in (np.flatnonzero(interior), np.flatnonzero(~interior)):
        for start in range(0, len(stars), chunk):
            pick = stars[start : start + chunk]
            r2 = (oyf - fy[pick, None]) ** 2 + (oxf - fx[pick, None]) ** 2
            ok = (r2 >= r_in**2) & (r2 <= r_out**2)
            if interior[pick[0]]:
                index = (iy[pick] * nx + ix[pick])[:, None] + (oy * nx + ox)
            else:
                cx, cy = ix[pick, None] + ox, iy[pick, None] + oy
                ok &= (cy >= 0) & (cy < ny) & (cx >= 0) & (cx < nx)
                index = np.clip(cy, 0, ny - 1) * nx + np.clip(cx, 0, nx - 1)
            values = flat.take(index)
            ok &= values != 0
            if masked is not None:
                kept = ok & (~masked.take(index) | (r2 <= own2[pick, None]))
                enough = kept.sum(axis=1) >= MIN_UNMASKED_FRACTION * ok.sum(axis=1)
                ok = np.where(enough[:, None], kept, ok)
            n = ok.sum(axis=1)
            ordered = np.sort(np.where(ok, values, np.nan), axis=1)  # NaN sort last
            med = sorted_median(ordered, n)
            mad = sorted_mad(ordered, n, med)
            if plane:
                med = _plane_at_centre(values, ok, oxf - fx[pick, None], oyf - fy[pick, None])
            valid = n > 0
            median[pick] = np.where(valid, med, np.nan)
            sigma[pick] = np.where(valid, MAD_TO_SIGMA * mad, np.nan)
            count[pick] = n
    return median, sigma, count


def _plane_at_centre(values: np.ndarray, ok: np.ndarray, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Per row, the least-squares plane through ``values`` where ``ok``, at offset (0, 0).

    A plane, not a level: masked neighbours leave annuli lopsided, and the
    mean of a sloping sky over a lopsided annulus is not its value at the centre.
    """
    level, _ = plane_fit(values, ok, dx, dy)
    return level


def plane_fit(
    values: np.ndarray, ok: np.ndarray, dx: np.ndarray, dy: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the least-squares plane through ``values`` where ``ok``: its value at (0, 0) and the RMS.

    ``dx, dy`` are the pixels' offsets (arrays broadcastable to ``values``,
    shape (n, k)). The RMS of the residuals is over the pixels less the
    plane's 3 parameters; NaN with fewer than 4 pixels.
    """
    columns = np.stack(np.broadcast_arrays(np.ones_like(dx), dx, dy), axis=-1) * ok[:, :, None]
    kept = np.where(ok, values, 0.0)
    normal = columns.transpose(0, 2, 1) @ columns + 1e-9 * np.eye(3)
    rhs = columns.transpose(0, 2, 1) @ kept[:, :, None]
    coefficients = np.linalg.solve(normal, rhs)
    square = np.einsum("nk,nk->n", kept, kept) - np.sum(coefficients * rhs, axis=(1, 2))
    count = ok.sum(axis=1)
    rms = np.sqrt(np.maximum(square, 0.0) / np.maximum(count - 3, 1))
    return coefficients[:, 0, 0], np.where(count >= 4, rms, np.nan)


def neighbour_radii(
    frames: Sequence[tuple[np.ndarray, pd.DataFrame]],
    hlr: float,
    mask_sigma: float,
    noise: Sequence[float] | None = None,
) -> list[np.ndarray]:
    """Each catalog's star radii (px) out to which a star's light exceeds ``mask_sigma`` noise sigmas.

    Parameters and star model as :func:`neighbour_mask`; ``noise`` holds the
    frames' noise if already measured (:func:`mask_noise`).

    Returns
    -------
    list of numpy.ndarray
        One array per frame, a radius per catalog row.
    """
    if noise is None:
        noise = [mask_noise(data) for data, _ in frames]
    return [
        star_radius(
            np.maximum(catalog["peak"].to_numpy() - catalog["sky"].to_numpy(), 0.0),
            hlr,
            frame_noise,
            mask_sigma=mask_sigma,
        )
        for (_, catalog), frame_noise in zip(frames, noise, strict=True)
    ]


def mask_noise(data: np.ndarray) -> float:
    """A frame's noise for the neighbour masks: :func:`nsgflow.gradient.background_noise` of about
    :data:`MASK_NOISE_PIXELS` pixels."""
    return background_noise(data, pixels=MASK_NOISE_PIXELS)


def neighbour_mask(
    frames: Sequence[tuple[np.ndarray, pd.DataFrame]],
    hlr: float,
    mask_sigma: float,
    noise: Sequence[float] | None = None,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Pixels where a detected star's light exceeds ``mask_sigma`` times the noise, in either frame.

    Each catalog's stars are masked out to :func:`nsgflow.gradient.star_radius`
    of their peak above the sky, at the star size ``hlr`` (the broader
    frame's: in the sharper frame a star's light lies inside that radius, in
    the broader one its wings reach that far) and the frame's own noise
    (:func:`nsgflow.gradient.background_noise`, of every few rows, about
    :data:`MASK_NOISE_PIXELS`). Both catalogs' stars share
    one mask: a neighbour found in only one frame is there in the other too.

    Parameters
    ----------
    frames : sequence of (data, catalog)
        The frames (registered, the same shape) and their catalogs
        (:func:`nsgflow.detect.detect_stars`).
    hlr : float
        Half-light radius (px) of the masks' Moffat profile.
    mask_sigma : float
        Light level, in noise sigmas, out to which each star is masked.
    noise : sequence of float, optional
        The frames' noise (:func:`mask_noise`) if already measured.

    Returns
    -------
    mask : numpy.ndarray of bool, shape (ny, nx)
        True within some star's radius.
    radii : list of numpy.ndarray
        Each catalog's mask radii (px), to exempt a star's own pixels.
    """
    radii = neighbour_radii(frames, hlr, mask_sigma, noise)
    catalogs = [catalog for _, catalog in frames]
    mask = star_mask(
        frames[0][0].shape,
        np.concatenate([c["x"].to_numpy() for c in catalogs]),
        np.concatenate([c["y"].to_numpy() for c in catalogs]),
        np.concatenate(radii),
    )
    return mask, radii
