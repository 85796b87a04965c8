"""Aperture photometry of matched stars with the same aperture on both frames.

The aperture radius follows the broader of the two frames' star sizes, and the
local background is the median of an annulus, with the pixels of detected
neighbours left out (:func:`neighbour_mask`): in a crowded field their light
raises the median, the more so the broader the PSF. A fixed aperture still
loses a PSF-dependent fraction of each star's light (outside the aperture, and
into the annulus), which biases the ratio towards the sharper frame. So each
frame's brightest stars are fitted, pixel by pixel with their neighbours'
pixels left out, with elliptical Moffat profiles of their own width, beta and
elongation (:func:`profile_fits`); each frame's profiles give the fraction of
its light the aperture measures (:func:`profile_fraction`), and the ratio of
the two fractions is the *aperture correction* of the scale
(:func:`aperture_correction_from_profiles`). Every frame has a profile of its
own: frames of one night differ in wings and elongation, not only in width.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import sep

from nsgflow.defects import Defects, defects_replaced
from nsgflow.detect import StarFlag
from nsgflow.errors import FrameError
from nsgflow.gradient import background_noise, star_mask, star_radius
from nsgflow.robust import sorted_mad, sorted_median

__all__ = [
    "annulus_background",
    "aperture_correction_from_profiles",
    "aperture_fraction",
    "aperture_photometry",
    "elliptical_fraction",
    "frame_hlr",
    "mask_noise",
    "measure_photometry",
    "moffat_enclosed",
    "neighbour_mask",
    "neighbour_radii",
    "profile_fits",
    "profile_fraction",
]

#: Moffat beta assumed for a frame whose star profiles cannot be fitted (typical of real seeing).
FALLBACK_BETA = 3.0

#: Model error of a frame's :func:`profile_fraction`, as a fraction of the light the aperture
#: misses: the fitted Moffat profiles extrapolate the wings, which real stars need not follow.
PROFILE_SYSTEMATIC = 0.1

#: Fewest annulus pixels, as a fraction of those with data, that masking neighbours may leave; a
#: star whose annulus keeps fewer (a very crowded field) gets the median of all of them instead.
MIN_UNMASKED_FRACTION = 0.25

#: Pixels whose differences give a frame's noise for the neighbour masks: the noise to a few tenths
#: of a percent, plenty for a mask radius, in a sixteenth of the time of all of a large frame's.
MASK_NOISE_PIXELS = 250_000

#: Noise sigmas out to which detected neighbours' pixels are left out of a star's profile fit
#: (:func:`profile_fits`): the neighbour masks' default.
PROFILE_MASK_SIGMA = 2.0

#: Fewest stars with a fitted profile for a frame's :func:`profile_fraction`.
MIN_PROFILE_STARS = 5


def frame_hlr(catalog: pd.DataFrame, stars: int = 200) -> float:
    """Median half-light radius (px) of the brightest clean stars of a catalog (any star if none is clean).

    NaN when no star has a finite, positive half-light radius.
    """
    measured = catalog[np.isfinite(catalog["hlr_px"]) & (catalog["hlr_px"] > 0)]
    clean = measured[measured["flags"] == 0]
    chosen = clean if len(clean) else measured
    return float(np.median(chosen.nlargest(stars, "flux")["hlr_px"])) if len(chosen) else float("nan")


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
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Median and robust sigma of the pixels in an annulus around each position.

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
            valid = n > 0
            median[pick] = np.where(valid, med, np.nan)
            sigma[pick] = np.where(valid, 1.4826 * mad, np.nan)
            count[pick] = n
    return median, sigma, count


def aperture_photometry(
    data: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    radius: float,
    annulus: tuple[float, float],
    *,
    mask: np.ndarray | None = None,
    own_radius: np.ndarray | None = None,
) -> pd.DataFrame:
    """Background-subtracted flux in a circular aperture, with its error.

    ``mask`` and ``own_radius``: neighbours' pixels left out of the annulus
    (:func:`annulus_background`).

    Returns
    -------
    pandas.DataFrame
        Columns ``flux, flux_err, bkg, bkg_sigma`` and ``nodata`` (True when the
        aperture reaches a no-data pixel or the frame edge).
    """
    x = np.ascontiguousarray(x, dtype=np.float64)
    y = np.ascontiguousarray(y, dtype=np.float64)
    bkg, bkg_sigma, n_ann = annulus_background(data, x, y, *annulus, mask=mask, own_radius=own_radius)
    total, _, flag = sep.sum_circle(data, x, y, radius, subpix=0)
    nodata = data == 0
    if nodata.any():  # sep sums the mask's bytes as they are: no frame-sized float copy
        holes, _, _ = sep.sum_circle(nodata.view(np.uint8), x, y, radius, subpix=0)
    else:
        holes = np.zeros(len(x))
    del nodata
    area = np.pi * radius**2
    flux = total - bkg * area
    var = area * bkg_sigma**2 * (1 + area * np.pi / (2 * np.maximum(n_ann, 1)))
    nodata = (holes > 0) | ((flag & sep.APER_TRUNC) != 0) | ~np.isfinite(bkg)
    return pd.DataFrame(
        {"flux": flux, "flux_err": np.sqrt(var), "bkg": bkg, "bkg_sigma": bkg_sigma, "nodata": nodata}
    )


def moffat_enclosed(r: np.ndarray | float, alpha: float, beta: float) -> np.ndarray:
    """Fraction of a Moffat profile's light within radius ``r``."""
    return 1.0 - (1.0 + (np.asarray(r) / alpha) ** 2) ** (1.0 - beta)


def aperture_fraction(
    alpha: float, beta: float, radius: np.ndarray | float, annulus: tuple[float, float]
) -> np.ndarray:
    """Fraction of a Moffat star's flux that an aperture with annulus background measures.

    The aperture misses the light beyond ``radius`` and subtracts, with the
    background, the star's own wing in the annulus times the aperture area.
    """
    r_in, r_out = annulus
    wing = (moffat_enclosed(r_out, alpha, beta) - moffat_enclosed(r_in, alpha, beta)) / (r_out**2 - r_in**2)
    return moffat_enclosed(radius, alpha, beta) - np.asarray(radius) ** 2 * wing


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


#: Most Levenberg-Marquardt iterations of a star's profile fit (:func:`profile_fits`).
PROFILE_ITERATIONS = 60
#: Bound of the profile fits' elongation parameters g1, g2 (1: axis ratio 0.41).
MAX_SHEAR = 1.0
#: Directions over which :func:`elliptical_fraction` averages an elongated star's light.
FRACTION_ANGLES = 36


def _annulus_level(alpha: np.ndarray, beta: np.ndarray, annulus: tuple[float, float]) -> np.ndarray:
    """Mean of a Moffat profile of unit amplitude over an annulus: the star's own light in its background."""
    r_in, r_out = annulus
    flux = np.pi * alpha**2 / (beta - 1)  # a Moffat's total over its peak
    ring = moffat_enclosed(r_out, alpha, beta) - moffat_enclosed(r_in, alpha, beta)
    return flux * ring / (np.pi * (r_out**2 - r_in**2))


def _quadratic_form(
    g1: np.ndarray, g2: np.ndarray, dx: np.ndarray, dy: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """An elliptical profile's ``Q = (c + g1) dx**2 + 2 g2 dx dy + (c - g1) dy**2`` and ``c``.

    ``c = sqrt(1 + g1**2 + g2**2)`` makes the form's determinant 1, so the
    elongation ``g1, g2`` leaves the profile's area unchanged.
    """
    c = np.sqrt(1 + g1**2 + g2**2)
    return (c + g1) * dx**2 + 2 * g2 * dx * dy + (c - g1) * dy**2, c


def _moffat_pixels(
    p: np.ndarray, px: np.ndarray, py: np.ndarray, annulus: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Elliptical Moffat values at pixel offsets, less the star's own level in ``annulus``, and derivatives.

    ``p`` holds, per star (rows), ``dx, dy, log amplitude, log alpha, beta,
    g1, g2``: the profile is ``(1 + Q / alpha**2) ** -beta`` with the
    quadratic form ``Q = (c + g1) ex**2 + 2 g2 ex ey + (c - g1) ey**2``,
    ``c = sqrt(1 + g1**2 + g2**2)`` (determinant 1: alpha sets the area,
    g1 and g2 the elongation). ``px, py`` are the pixels' offsets from each
    star's catalog position (rows). The background the pixels have had
    subtracted, an annulus median, holds the star's own wing
    (:func:`_annulus_level`; its mean), which the model subtracts too.
    Returns the values, shape (n, k), and the Jacobian, shape (n, k, 7).
    """
    ex, ey = px - p[:, :1], py - p[:, 1:2]
    g1, g2 = p[:, 5:6], p[:, 6:7]
    form, c = _quadratic_form(g1, g2, ex, ey)
    inv_a2 = np.exp(-2 * p[:, 3:4])
    xx, yy, xy = ex**2, ey**2, ex * ey
    u = form * inv_a2
    log1u = np.log1p(u)
    amplitude, alpha, beta = np.exp(p[:, 2:3]), np.exp(p[:, 3:4]), p[:, 4:5]
    level = _annulus_level(alpha, beta, annulus)
    step = 1e-6
    level_lna = (_annulus_level(alpha * np.exp(step), beta, annulus) - level) / step
    level_beta = (_annulus_level(alpha, beta + step, annulus) - level) / step
    profile = amplitude * np.exp(-beta * log1u)
    value = profile - amplitude * level
    slope = -beta * profile / (1 + u)  # d profile / d u
    jac = np.stack(
        np.broadcast_arrays(
            -2 * ((c + g1) * ex + g2 * ey) * inv_a2 * slope,
            -2 * (g2 * ex + (c - g1) * ey) * inv_a2 * slope,
            value,
            -2 * u * slope - amplitude * level_lna,
            -log1u * profile - amplitude * level_beta,
            ((g1 / c + 1) * xx + (g1 / c - 1) * yy) * inv_a2 * slope,
            (g2 / c * (xx + yy) + 2 * xy) * inv_a2 * slope,
        ),
        axis=2,
    )
    return value, jac


#: Offsets (px) of the 2-point Gauss-Legendre rule over a pixel: exact for profiles cubic across it.
PIXEL_NODES = np.array([-0.5, 0.5]) / np.sqrt(3.0)


def _pixel_integrated(
    p: np.ndarray, px: np.ndarray, py: np.ndarray, annulus: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_moffat_pixels` averaged over each pixel (2 x 2 Gauss-Legendre nodes), as pixels record light.

    Sampled at pixel centres, a model takes the pixels' blur of a star's core
    for a broader core and steeper wings (beta 3.24 for 3 at 4 px FWHM).
    """
    n, k = px.shape
    nodes_x, nodes_y = (v.ravel() for v in np.meshgrid(PIXEL_NODES, PIXEL_NODES))
    value, jac = _moffat_pixels(
        p, (px[:, :, None] + nodes_x).reshape(n, -1), (py[:, :, None] + nodes_y).reshape(n, -1), annulus
    )
    return value.reshape(n, k, 4).mean(axis=2), jac.reshape(n, k, 4, -1).mean(axis=2)


def profile_fits(
    data: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    bkg: np.ndarray,
    radius: float,
    hlr: float,
    neighbours: np.ndarray,
    neighbour_radii: np.ndarray,
    annulus: tuple[float, float] | None = None,
) -> np.ndarray:
    """Each star's elliptical Moffat profile, from a least-squares fit of its pixels within ``radius``.

    Each star's pixels, less its background ``bkg``, are fitted with an
    elliptical Moffat profile averaged over each pixel (free centre,
    amplitude, alpha, beta and elongation; equal weights; Levenberg-Marquardt,
    all stars at once, each until its own fit converges). The fit sees the
    whole profile, core and wings, pixel by pixel, so it separates a broad
    core from broad wings with a single star; and it leaves neighbours out by their
    pixels, within ``neighbour_radii`` of each of ``neighbours`` (positions
    of both frames' catalogs; those within ``hlr`` of the star are the star
    itself), so stars need not be isolated.

    Parameters
    ----------
    data : numpy.ndarray, shape (ny, nx)
        The frame (0 = no data).
    x, y, bkg : numpy.ndarray, shape (n,)
        The stars' positions (px) and background levels.
    radius : float
        Radius (px) of the pixels fitted.
    hlr : float
        Half-light radius (px): the fits' start, and how near a catalog
        position must be to count as the star itself.
    neighbours : numpy.ndarray, shape (m, 2)
        x, y of every detected star.
    neighbour_radii : numpy.ndarray, shape (m,)
        Their mask radii (:func:`neighbour_radii`).
    annulus : (float, float), optional
        Radii (px) of the annulus ``bkg`` was measured in, which holds some of
        the star's own wing; that much is subtracted from the model too
        (:func:`aperture_fraction` does the same). None: ``bkg`` is the sky alone.

    Returns
    -------
    numpy.ndarray, shape (n, 4)
        Per star ``alpha`` (px), ``beta``, ``g1``, ``g2`` of the elliptical
        Moffat (:func:`_moffat_pixels`); NaN where the star's pixels reach the
        frame's edge or no data, its core (2 px) or half its pixels are a
        neighbour's, or the fit does not converge or ends at a bound (beta 1.05
        or 20, centre 2 px off, g1 or g2 at :data:`MAX_SHEAR`).
    """
    from scipy.spatial import cKDTree

    ny, nx = data.shape
    half = int(np.ceil(radius))
    oy, ox = np.mgrid[-half : half + 1, -half : half + 1]
    oy, ox = oy.ravel(), ox.ravel()
    tree = cKDTree(neighbours)
    reach = radius + (float(np.max(neighbour_radii)) if len(neighbour_radii) else 0.0)
    ix, iy = np.rint(x).astype(np.int64), np.rint(y).astype(np.int64)
    inside = (ix >= half) & (ix < nx - half) & (iy >= half) & (iy < ny - half) & np.isfinite(bkg)
    stars = np.flatnonzero(inside)
    fits = np.full((len(x), 4), np.nan)
    if not len(stars):
        return fits
    px = ix[stars, None] + ox - x[stars, None]  # offsets from the catalog positions
    py = iy[stars, None] + oy - y[stars, None]
    light = data[iy[stars, None] + oy, ix[stars, None] + ox].astype(np.float64)
    r2 = px**2 + py**2
    disc = r2 <= radius**2
    keep = disc & (light != 0)
    complete = ~(disc & (light == 0)).any(axis=1)
    for row, near in enumerate(tree.query_ball_point(np.column_stack([x[stars], y[stars]]), reach)):
        offset = neighbours[near] - (x[stars[row]], y[stars[row]])
        others = np.hypot(offset[:, 0], offset[:, 1]) > hlr  # not the star itself
        if others.any():
            ex, ey = px[row, :, None] - offset[others, 0], py[row, :, None] - offset[others, 1]
            keep[row] &= ~(ex**2 + ey**2 <= neighbour_radii[near][others] ** 2).any(axis=1)
    usable = (
        complete & (keep.sum(axis=1) >= 0.5 * disc.sum(axis=1)) & ~(disc & (r2 <= 4.0) & ~keep).any(axis=1)
    )
    stars, px, py, keep = stars[usable], px[usable], py[usable], keep[usable]
    light = (light[usable] - bkg[stars, None]) * keep
    if not len(stars):
        return fits
    weight = keep.astype(np.float64)
    low = np.array([-2.0, -2.0, -np.inf, np.log(0.1 * hlr), 1.05, -MAX_SHEAR, -MAX_SHEAR])
    high = np.array([2.0, 2.0, np.inf, np.log(20 * hlr), 20.0, MAX_SHEAR, MAX_SHEAR])
    p = np.zeros((len(stars), 7))
    p[:, 2] = np.log(np.maximum(light.max(axis=1), 1.0))
    p[:, 3] = np.log(hlr / np.sqrt(np.sqrt(2.0) - 1))  # beta 3 to start
    p[:, 4] = 3.0
    far = (1e6, 2e6) if annulus is None else annulus  # an annulus holding none of the star's light
    value, jac = _pixel_integrated(p, px, py, far)
    cost = np.sum(weight * (value - light) ** 2, axis=1)
    damping = np.full(len(stars), 1e-3)
    change = np.full(len(stars), np.inf)
    converged = np.zeros(len(stars), dtype=bool)
    active = np.arange(len(stars))  # the stars still being fitted: each fit stops when it converges
    for _ in range(PROFILE_ITERATIONS):
        jw = (jac[active] * weight[active, :, None]).transpose(0, 2, 1)
        normal = jw @ jac[active]
        grad = (jw @ (value[active] - light[active])[:, :, None])[:, :, 0]
        diagonal = normal[:, np.arange(7), np.arange(7)]
        system = normal + (damping[active, None] * diagonal + 1e-12)[:, :, None] * np.eye(7)
        trial = np.clip(p[active] - np.linalg.solve(system, grad[:, :, None])[:, :, 0], low, high)
        trial_value, trial_jac = _pixel_integrated(trial, px[active], py[active], far)
        trial_cost = np.sum(weight[active] * (trial_value - light[active]) ** 2, axis=1)
        better = trial_cost < cost[active]
        gained = (cost[active] - trial_cost) / np.maximum(cost[active], 1e-300)
        change[active] = np.where(better, gained, change[active])
        taken = active[better]
        p[taken], value[taken] = trial[better], trial_value[better]
        jac[taken], cost[taken] = trial_jac[better], trial_cost[better]
        damping[active] = np.clip(np.where(better, damping[active] / 3, damping[active] * 4), 1e-9, 1e9)
        # steps no longer gain, or all fail: a minimum
        converged[active] = (change[active] < 1e-8) | (damping[active] > 1e4)
        active = active[~converged[active]]
        if not len(active):
            break
    at_bound = ((p <= low + 1e-3) | (p >= high - 1e-3)).any(axis=1)
    fitted = np.column_stack([np.exp(p[:, 3]), p[:, 4], p[:, 5], p[:, 6]])
    fits[stars] = np.where((converged & ~at_bound)[:, None], fitted, np.nan)
    return fits


def elliptical_fraction(fits: np.ndarray, radius: float, annulus: tuple[float, float]) -> np.ndarray:
    """:func:`aperture_fraction` of elliptical Moffat stars (rows of :func:`profile_fits`).

    Along a direction ``n`` the profile is a round Moffat of core width
    ``alpha / sqrt(n' M n)`` (``M`` the fit's quadratic form, determinant 1),
    and a direction's share of the light is proportional to ``1 / n' M n``;
    the fraction is the share-weighted mean over :data:`FRACTION_ANGLES` directions.
    """
    alpha, beta, g1, g2 = (fits[:, k : k + 1] for k in range(4))
    theta = np.pi * (np.arange(FRACTION_ANGLES) + 0.5) / FRACTION_ANGLES
    g, _ = _quadratic_form(g1, g2, np.cos(theta), np.sin(theta))
    share = (1 / g) / np.sum(1 / g, axis=1, keepdims=True)
    return np.sum(share * aperture_fraction(alpha / np.sqrt(g), beta, radius, annulus), axis=1)


def profile_fraction(
    fits: np.ndarray, radius: float, annulus: tuple[float, float]
) -> tuple[float, float] | None:
    """Fraction of a frame's star light that the aperture measures, from its stars' :func:`profile_fits`.

    Each star's fitted Moffat gives the fraction its aperture with annulus
    background measures (:func:`elliptical_fraction`); the frame's is their
    median, with the uncertainty of a median (1.2533 * robust sigma / sqrt(n)).
    None with fewer than :data:`MIN_PROFILE_STARS` fitted stars.
    """
    good = np.all(np.isfinite(fits), axis=1)
    if good.sum() < MIN_PROFILE_STARS:
        return None
    from astropy.stats import mad_std

    fractions = elliptical_fraction(fits[good], radius, annulus)
    return float(np.median(fractions)), 1.2533 * float(mad_std(fractions)) / np.sqrt(good.sum())


def aperture_correction_from_profiles(
    fits: Sequence[np.ndarray], hlr: Sequence[float], radius: float, annulus: tuple[float, float]
) -> dict:
    """The aperture correction (target fraction over reference fraction) from each frame's own star profiles.

    Each frame's fraction is :func:`profile_fraction` of its stars'
    :func:`profile_fits`; its uncertainty adds to the median's a model error
    of :data:`PROFILE_SYSTEMATIC` times the light the aperture misses. With
    fewer than :data:`MIN_PROFILE_STARS` fitted stars in a frame, a round
    Moffat of beta :data:`FALLBACK_BETA` and the frame's half-light radius
    stands in, with an uncertainty of half the light it misses.

    Parameters
    ----------
    fits : sequence of two numpy.ndarray, shape (n, 4)
        The reference's and the target's :func:`profile_fits`.
    hlr : sequence of two float
        Their half-light radii (px), for the fallback.
    radius, annulus
        The aperture radius and the background annulus (px).

    Returns
    -------
    dict
        ``aperture_correction`` and its ``_err``, ``aperture_correction_method``,
        and per frame (reference, target) ``profile_fraction``, its ``_err``,
        and the median fitted ``profile_beta`` (None where not fitted).
    """
    fractions, errors, betas, methods = [], [], [], []
    for frame_fits, frame_hlr_px in zip(fits, hlr, strict=True):
        measured = profile_fraction(frame_fits, radius, annulus)
        if measured is None:
            alpha = frame_hlr_px / np.sqrt(2 ** (1 / (FALLBACK_BETA - 1)) - 1)
            fraction = float(aperture_fraction(alpha, FALLBACK_BETA, radius, annulus))
            error = 0.5 * (1 - fraction) + 1e-3
            betas.append(None)
            methods.append(f"half-light radius, Moffat beta {FALLBACK_BETA} assumed")
        else:
            fraction, spread = measured
            error = float(np.hypot(spread, PROFILE_SYSTEMATIC * (1 - fraction)))
            betas.append(float(np.nanmedian(frame_fits[:, 1])))
            methods.append("elliptical Moffat fits of its stars")
        fractions.append(fraction)
        errors.append(error)
    correction = fractions[1] / fractions[0]
    return {
        "aperture_correction": correction,
        "aperture_correction_err": correction
        * float(np.hypot(errors[0] / fractions[0], errors[1] / fractions[1])),
        "aperture_correction_method": f"reference: {methods[0]}; target: {methods[1]}",
        "profile_fraction": fractions,
        "profile_fraction_err": errors,
        "profile_beta": betas,
    }


def measure_photometry(
    reference: np.ndarray,
    target: np.ndarray,
    ref_catalog: pd.DataFrame,
    target_catalog: pd.DataFrame,
    pairs: pd.DataFrame,
    *,
    aperture_hlr: float = 4.0,
    aperture_px: float | str = "auto",
    annulus_inner: float = 1.5,
    annulus_outer: float = 2.2,
    neighbour_mask_sigma: float = 2.0,
    min_snr: float = 10.0,
    profile_stars: int = 60,
    aperture_correction: bool = True,
    max_stars: int = 5000,
    defects: Sequence[Defects] | None = None,
) -> tuple[pd.DataFrame, dict]:
    """Measure matched stars on both frames with the same aperture, hot pixels and cosmic rays replaced.

    The frames' defects (:func:`nsgflow.defects.find_defects`) are replaced
    while the stars are measured and restored afterwards.

    Parameters
    ----------
    reference, target : numpy.ndarray, shape (ny, nx)
        The two frames (0 = no data).
    ref_catalog, target_catalog : pandas.DataFrame
        Their catalogs (:func:`nsgflow.detect.detect_stars`).
    pairs : pandas.DataFrame
        Matches from :func:`nsgflow.match.match_stars`.
    aperture_hlr : float, default 4.0
        Aperture radius in units of the larger of the two frames' median
        half-light radius (about 2.5 FWHM). Larger holds more light but adds noise
        and neighbours.
    aperture_px : float or "auto", default "auto"
        The aperture radius in px, set by hand; ``"auto"`` uses ``aperture_hlr``.
    annulus_inner, annulus_outer : float, default 1.5, 2.2
        Background annulus radii, in units of the aperture radius.
    neighbour_mask_sigma : float, default 2.0
        Annulus pixels where a detected neighbour's light exceeds this many
        noise sigmas (:func:`neighbour_mask`) are left out of the background;
        0 keeps them all.
    min_snr : float, default 10
        Pairs below this signal-to-noise ratio in either frame are rejected.
    profile_stars : int, default 60
        The brightest usable stars whose profiles are fitted in each frame
        for the aperture correction (:func:`aperture_correction_from_profiles`).
    aperture_correction : bool, default True
        Apply the aperture correction (see module notes); when False the
        factor is 1.
    max_stars : int, default 5000
        Measure at most this many pairs, the reference's brightest: fainter
        ones add little weight to the fit, and time.
    defects : sequence of two Defects, optional
        The reference's and the target's defects if already found (the
        workflow finds them at detection); by default they are found here.

    Raises
    ------
    FrameError
        Neither frame's star sizes can be measured.

    Returns
    -------
    table : pandas.DataFrame
        One row per pair: ids, positions and fluxes on both frames, and
        ``status`` (``used`` or the reason for rejection).
    info : dict
        Aperture and annulus radii, both frames' half-light radii, and the
        aperture correction with its uncertainty.
    """
    hlr_ref, hlr_target = frame_hlr(ref_catalog), frame_hlr(target_catalog)
    if not (np.isfinite(hlr_ref) and np.isfinite(hlr_target)):
        raise FrameError("the star sizes could not be measured (no star with a finite half-light radius)")
    # hot pixels and cosmic rays in an aperture or annulus would spoil that star's flux
    with defects_replaced(reference, target, found=defects) as replaced:
        radius = aperture_hlr * max(hlr_ref, hlr_target) if aperture_px == "auto" else float(aperture_px)
        annulus = (annulus_inner * radius, annulus_outer * radius)
        pairs = pairs.nsmallest(max_stars, "ref_index")  # catalogs list the brightest first
        ref = ref_catalog.iloc[pairs["ref_index"].to_numpy()].reset_index(drop=True)
        tgt = target_catalog.iloc[pairs["target_index"].to_numpy()].reset_index(drop=True)
        ref_index, target_index = pairs["ref_index"].to_numpy(), pairs["target_index"].to_numpy()
        both = [(reference, ref_catalog), (target, target_catalog)]
        broad = max(hlr_ref, hlr_target)
        noise = [mask_noise(data) for data, _ in both]  # for the neighbour masks and the profile fits
        if neighbour_mask_sigma > 0:
            mask, (ref_radii, target_radii) = neighbour_mask(both, broad, neighbour_mask_sigma, noise)
            own = np.maximum(ref_radii[ref_index], target_radii[target_index])
        else:
            mask, own = None, None
        phot_ref = aperture_photometry(
            reference, ref["x"].to_numpy(), ref["y"].to_numpy(), radius, annulus, mask=mask, own_radius=own
        )
        phot_tgt = aperture_photometry(
            target, tgt["x"].to_numpy(), tgt["y"].to_numpy(), radius, annulus, mask=mask, own_radius=own
        )

        flags = ref["flags"].to_numpy() | tgt["flags"].to_numpy()
        snr = np.minimum(phot_ref["flux"] / phot_ref["flux_err"], phot_tgt["flux"] / phot_tgt["flux_err"])
        status = np.full(len(pairs), "used", dtype=object)
        checks = [  # first failing check names the reason; later ones do not overwrite it
            (phot_ref["nodata"] | phot_tgt["nodata"], "no_data_in_aperture"),
            ((flags & StarFlag.SATURATED) != 0, "saturated"),
            ((flags & StarFlag.NEAR_BORDER) != 0, "near_border"),
            ((flags & StarFlag.BLENDED) != 0, "blended"),
            (~(phot_ref["flux"] > 0) | ~(phot_tgt["flux"] > 0), "non_positive_flux"),
            (~(snr >= min_snr), "low_snr"),
        ]
        for failed, reason in reversed(checks):
            status[np.asarray(failed)] = reason
        table = pd.DataFrame(
            {
                "ref_id": ref["id"],
                "target_id": tgt["id"],
                "x_ref": ref["x"],
                "y_ref": ref["y"],
                "x_target": tgt["x"],
                "y_target": tgt["y"],
                "flux_ref": phot_ref["flux"],
                "flux_err_ref": phot_ref["flux_err"],
                "bkg_ref": phot_ref["bkg"],
                "flux_target": phot_tgt["flux"],
                "flux_err_target": phot_tgt["flux_err"],
                "bkg_target": phot_tgt["bkg"],
                "snr": snr,
                "status": status,
            }
        )

        info = {
            "defects_replaced": replaced,
            "aperture_radius_px": radius,
            "annulus_px": list(annulus),
            "hlr_ref_px": hlr_ref,
            "hlr_target_px": hlr_target,
            "aperture_correction": 1.0,
            "aperture_correction_err": 0.0,
            "aperture_correction_method": "none",
            "profile_fraction": None,
            "profile_fraction_err": None,
            "profile_beta": None,
        }
        if aperture_correction:
            used = np.flatnonzero(status == "used")
            bright = used[np.argsort(-snr.to_numpy()[used])][:profile_stars]
            radii = np.concatenate(neighbour_radii(both, broad, PROFILE_MASK_SIGMA, noise))
            neighbours = np.concatenate([c[["x", "y"]].to_numpy() for c in (ref_catalog, target_catalog)])
            fits = [
                profile_fits(
                    data,
                    *(stars[k].to_numpy()[bright] for k in ("x", "y")),
                    measured["bkg"].to_numpy()[bright],
                    radius,
                    broad,
                    neighbours,
                    radii,
                    annulus,
                )
                for data, stars, measured in ((reference, ref, phot_ref), (target, tgt, phot_tgt))
            ]
            info.update(aperture_correction_from_profiles(fits, (hlr_ref, hlr_target), radius, annulus))
    return table, info
