"""Aperture photometry of matched stars with the same aperture on both frames.

The aperture radius follows the broader of the two frames' star sizes, and the
local background is the median of an annulus, with the pixels of detected
neighbours left out (:func:`neighbour_mask`): in a crowded field their light
raises the median, the more so the broader the PSF, which biased the ratio
of a broad frame's fluxes to a sharp one's. A fixed aperture still loses a
PSF-dependent fraction of each star's light (outside the aperture, and into
the annulus), which biases the ratio towards the sharper frame. So each frame's
growth curve is measured on its bright isolated stars and the two are fitted
with Moffat profiles of one shared beta, which gives the fraction of light the
aperture measures in each frame; the ratio of the two fractions is the
*aperture correction* of the scale. The growth curves alone constrain beta
poorly (in a crowded field few stars are isolated), so it is also measured by
Moffat fits to the pixels of the brightest stars, isolated or not, with their
neighbours' pixels left out (:func:`profile_betas`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import sep

from nsgflow.defects import Defects, defects_replaced
from nsgflow.detect import StarFlag
from nsgflow.errors import FrameError
from nsgflow.gradient import background_noise, star_mask, star_radius
from nsgflow.robust import sorted_mad, sorted_median

__all__ = [
    "GrowthFit",
    "annulus_background",
    "aperture_fraction",
    "aperture_photometry",
    "fit_growth_pair",
    "frame_hlr",
    "mask_noise",
    "measure_photometry",
    "moffat_enclosed",
    "neighbour_mask",
    "neighbour_radii",
    "pixel_blur",
    "profile_beta",
    "profile_betas",
]

#: Moffat beta assumed when growth curves cannot be fitted (typical of real seeing).
FALLBACK_BETA = 3.0
#: The growth-curve fits' range of the Moffat beta, which also bounds their start.
GROWTH_BETA_BOUNDS = (1.5, 30.0)

#: Systematic uncertainty of a growth-curve aperture correction f, added to the fit's own:
#: relative * |f - 1| + floor. The Moffat model and the annulus backgrounds are not exact. With
#: beta from the stars' profiles, 0.1 makes the scale's uncertainty honest on the accuracy
#: benchmark's hard set (seeds 30-59, 150 frames: 63 % of the errors within 1 sigma, 93 % within
#: 2, all within 3; checked on seeds 0-29: 71, 97 and 100 %); 0.2, right for beta from the growth
#: curves alone, left 83-86 % within 1 sigma.
CORRECTION_SYSTEMATIC = (0.1, 3e-4)

#: Fewest annulus pixels, as a fraction of those with data, that masking neighbours may leave; a
#: star whose annulus keeps fewer (a very crowded field) gets the median of all of them instead.
MIN_UNMASKED_FRACTION = 0.25

#: Pixels whose differences give a frame's noise for the neighbour masks: the noise to a few tenths
#: of a percent, plenty for a mask radius, in a sixteenth of the time of all of a large frame's.
MASK_NOISE_PIXELS = 250_000

#: Variance (px**2 along each axis) that summing pixels over a circle by their overlap adds to
#: the profile the pixel values sample: each value counts as spread evenly over its pixel, a
#: box of 1 px.
PIXEL_VARIANCE = 1.0 / 12.0

#: Noise sigmas out to which detected neighbours' pixels are left out of a star's profile fit
#: (:func:`profile_betas`): the neighbour masks' default.
PROFILE_MASK_SIGMA = 2.0

#: Fewest stars with a fitted profile for a frame's :func:`profile_beta`.
MIN_PROFILE_STARS = 5

#: Growth-curve radii as fractions of the aperture radius.
GROWTH_RADII = np.array([0.25, 0.35, 0.5, 0.65, 0.8, 1.0, 1.2, 1.4])


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


def pixel_blur(r: np.ndarray | float, alpha: float, beta: float) -> np.ndarray:
    """Change of a Moffat profile's light within ``r`` when it is summed from pixels by their overlap.

    The sum treats each pixel's value as spread evenly over the pixel, which
    blurs the profile by :data:`PIXEL_VARIANCE`; to first order the light
    within ``r`` changes by ``pi * PIXEL_VARIANCE * r * I'(r)`` (``I`` the
    profile, of unit total). Negative: light moves out of the core. A few
    tenths of a percent within a FWHM, nothing at the aperture radius.
    """
    u = (np.asarray(r, dtype=np.float64) / alpha) ** 2
    return -PIXEL_VARIANCE * 2 * beta * (beta - 1) * u / alpha**2 * (1 + u) ** (-beta - 1)


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


@dataclass(frozen=True)
class GrowthFit:
    """A frame's Moffat growth-curve fit and the aperture's light fraction."""

    alpha: float
    beta: float
    fraction: float
    fraction_err: float
    stars: int


def _median_growth(
    data: np.ndarray, x: np.ndarray, y: np.ndarray, radius: float, annulus: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray, int] | None:
    """Median growth curve (flux at :data:`GROWTH_RADII` x ``radius`` over flux at ``radius``) of stars.

    Returns the curve, its uncertainty per radius and the number of stars, or
    None with fewer than 5 stars with a positive flux.
    """
    if len(x) < 5:
        return None
    radii = GROWTH_RADII * radius
    x = np.ascontiguousarray(x, dtype=np.float64)
    y = np.ascontiguousarray(y, dtype=np.float64)
    bkg, _, _ = annulus_background(data, x, y, *annulus)
    sums = np.stack([sep.sum_circle(data, x, y, r, subpix=0)[0] - bkg * np.pi * r**2 for r in radii], 1)
    at_radius = sums[:, GROWTH_RADII == 1.0][:, 0]
    good = np.isfinite(at_radius) & (at_radius > 0)
    if good.sum() < 5:
        return None
    ratios = sums[good] / at_radius[good, None]
    curve = np.median(ratios, axis=0)
    spread = 1.4826 * np.median(np.abs(ratios - curve), axis=0) / np.sqrt(good.sum())
    return curve, np.maximum(spread, 1e-5), int(good.sum())


def fit_growth_pair(
    frames: list[tuple[np.ndarray, np.ndarray, np.ndarray, float]],
    radius: float,
    annulus: tuple[float, float],
    beta: tuple[float, float] | None = None,
) -> tuple[list[GrowthFit], float, float] | None:
    """Fit two frames' median growth curves with Moffat profiles of one shared beta.

    ``frames`` holds ``(data, x, y, hlr)`` of the reference and the target. A
    growth curve that ends at the aperture cannot tell a broad core from
    broad wings (alpha and beta are nearly degenerate), and fitted apart the
    two frames' betas scatter, biasing the ratio of their light fractions;
    the same beta for both (one telescope, one atmosphere) leaves only the
    cores' widths free, which the curves measure well. The model curves are
    those the pixel sums measure (:func:`pixel_blur`): a Moffat alone would
    take the pixels' blur of the cores (0.8 % of the light within 0.9 FWHM)
    for broader cores and a lower beta.

    A growth curve that ends at the aperture still constrains beta poorly
    (in a crowded field few stars are isolated enough to be measured: fitted
    betas of 1.7-6.2 for a true 3); ``beta``, an independent measurement
    ``(value, sigma)`` of it (:func:`profile_beta`), enters the fit as one
    more datum, so that the curves mostly fit the cores' widths.

    Returns
    -------
    fits : list of GrowthFit
        Reference and target (same beta; ``fraction_err`` from the joint covariance).
    correction, correction_err : float
        Target fraction over reference fraction, and its uncertainty.
        None when a frame has fewer than 5 stars or the fit fails.
    """
    measured = [_median_growth(data, x, y, radius, annulus) for data, x, y, _ in frames]
    if any(m is None for m in measured):
        return None
    from scipy.optimize import least_squares  # here: only the photometry job fits growth curves

    radii = GROWTH_RADII * radius
    curves = np.concatenate([m[0] for m in measured])
    spreads = np.concatenate([m[1] for m in measured])

    def fractions(p: np.ndarray, r: np.ndarray | float) -> list[np.ndarray]:
        # as the pixel sums measure them: blurred by the pixels (which bends the curves' cores)
        return [
            aperture_fraction(np.exp(p[i]), p[2], r, annulus) + pixel_blur(r, np.exp(p[i]), p[2])
            for i in range(2)
        ]

    def model(p: np.ndarray) -> np.ndarray:
        at_radius = fractions(p, radius)
        return np.concatenate([f / f0 for f, f0 in zip(fractions(p, radii), at_radius, strict=True)])

    def residuals(p: np.ndarray) -> np.ndarray:
        misfit = (model(p) - curves) / spreads
        return misfit if beta is None else np.append(misfit, (p[2] - beta[0]) / beta[1])

    beta0 = FALLBACK_BETA if beta is None else float(np.clip(beta[0], *GROWTH_BETA_BOUNDS))
    alpha0 = [hlr / np.sqrt(2 ** (1 / (beta0 - 1)) - 1) for *_, hlr in frames]
    fit = least_squares(
        residuals,
        [np.log(alpha0[0]), np.log(alpha0[1]), beta0],
        bounds=(
            [np.log(0.05 * alpha0[0]), np.log(0.05 * alpha0[1]), GROWTH_BETA_BOUNDS[0]],
            [np.log(20 * alpha0[0]), np.log(20 * alpha0[1]), GROWTH_BETA_BOUNDS[1]],
        ),
    )
    if not fit.success:
        return None
    dof = max(len(fit.fun) - 3, 1)
    chi2 = max(float(np.sum(fit.fun**2)) / dof, 1.0)
    try:
        cov = np.linalg.inv(fit.jac.T @ fit.jac) * chi2
    except np.linalg.LinAlgError:
        return None

    def derived(p: np.ndarray) -> np.ndarray:
        f_ref, f_tgt = fractions(p, radius)
        return np.array([f_ref, f_tgt, f_tgt / f_ref], dtype=float)

    value = derived(fit.x)
    step = 1e-6
    jac = np.stack([(derived(fit.x + step * np.eye(3)[k]) - value) / step for k in range(3)], axis=1)
    errors = np.sqrt(np.maximum(np.diag(jac @ cov @ jac.T), 0.0))
    fits = [
        GrowthFit(float(np.exp(fit.x[i])), float(fit.x[2]), float(value[i]), float(errors[i]), measured[i][2])
        for i in range(2)
    ]
    return fits, float(value[2]), float(errors[2])


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


#: Most Levenberg-Marquardt iterations of a star's profile fit (:func:`profile_betas`).
PROFILE_ITERATIONS = 60


def _annulus_level(alpha: np.ndarray, beta: np.ndarray, annulus: tuple[float, float]) -> np.ndarray:
    """Mean of a Moffat profile of unit amplitude over an annulus: the star's own light in its background."""
    r_in, r_out = annulus
    flux = np.pi * alpha**2 / (beta - 1)  # a Moffat's total over its peak
    ring = moffat_enclosed(r_out, alpha, beta) - moffat_enclosed(r_in, alpha, beta)
    return flux * ring / (np.pi * (r_out**2 - r_in**2))


def _moffat_pixels(
    p: np.ndarray, px: np.ndarray, py: np.ndarray, annulus: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Moffat values at pixel offsets, less the star's own level in ``annulus``, and their derivatives.

    ``p`` holds, per star (rows), ``dx, dy, log amplitude, log alpha, beta``;
    ``px, py`` the pixels' offsets from each star's catalog position (rows).
    The background the pixels have had subtracted, an annulus median, holds
    the star's own wing (:func:`_annulus_level`; its mean), which the model
    subtracts too. Returns the values, shape (n, k), and the Jacobian, shape
    (n, k, 5).
    """
    ex, ey = px - p[:, :1], py - p[:, 1:2]
    inv_a2 = np.exp(-2 * p[:, 3:4])
    u = (ex**2 + ey**2) * inv_a2
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
            -2 * ex * inv_a2 * slope,
            -2 * ey * inv_a2 * slope,
            value,
            -2 * u * slope - amplitude * level_lna,
            -log1u * profile - amplitude * level_beta,
        ),
        axis=2,
    )
    return value, jac


def profile_betas(
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
    """Moffat beta of each star, from a least-squares fit of its pixels within ``radius``.

    Each star's pixels, less its background ``bkg``, are fitted with a Moffat
    profile sampled at the pixel centres (free centre, amplitude, alpha and
    beta; equal weights; Levenberg-Marquardt, all stars at once, each until
    its own fit converges). The fit sees the whole profile, core and wings,
    pixel by pixel, so unlike a growth curve it separates a broad core from
    broad wings with a single star; and it leaves neighbours out by their
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
    numpy.ndarray, shape (n,)
        Beta per star; NaN where the star's pixels reach the frame's edge or
        no data, its core (2 px) or half its pixels are a neighbour's, or the
        fit does not converge or ends at a bound (beta 1.05 or 20, centre 2 px off).
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
    betas = np.full(len(x), np.nan)
    if not len(stars):
        return betas
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
        return betas
    weight = keep.astype(np.float64)
    low = np.array([-2.0, -2.0, -np.inf, np.log(0.1 * hlr), 1.05])
    high = np.array([2.0, 2.0, np.inf, np.log(20 * hlr), 20.0])
    p = np.zeros((len(stars), 5))
    p[:, 2] = np.log(np.maximum(light.max(axis=1), 1.0))
    p[:, 3] = np.log(hlr / np.sqrt(np.sqrt(2.0) - 1))  # beta 3 to start
    p[:, 4] = 3.0
    far = (1e6, 2e6) if annulus is None else annulus  # an annulus holding none of the star's light
    value, jac = _moffat_pixels(p, px, py, far)
    cost = np.sum(weight * (value - light) ** 2, axis=1)
    damping = np.full(len(stars), 1e-3)
    change = np.full(len(stars), np.inf)
    converged = np.zeros(len(stars), dtype=bool)
    active = np.arange(len(stars))  # the stars still being fitted: each fit stops when it converges
    for _ in range(PROFILE_ITERATIONS):
        jw = (jac[active] * weight[active, :, None]).transpose(0, 2, 1)
        normal = jw @ jac[active]
        grad = (jw @ (value[active] - light[active])[:, :, None])[:, :, 0]
        diagonal = normal[:, np.arange(5), np.arange(5)]
        system = normal + (damping[active, None] * diagonal + 1e-12)[:, :, None] * np.eye(5)
        trial = np.clip(p[active] - np.linalg.solve(system, grad[:, :, None])[:, :, 0], low, high)
        trial_value, trial_jac = _moffat_pixels(trial, px[active], py[active], far)
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
    betas[stars] = np.where(converged & ~at_bound, p[:, 4], np.nan)
    return betas


def profile_beta(betas: Sequence[np.ndarray]) -> tuple[float, float] | None:
    """One beta for several frames from their stars' :func:`profile_betas`, with its uncertainty.

    Each frame's beta is the median of its stars' (uncertainty
    1.2533 * 1.4826 MAD / sqrt(n), that of a median); the frames' are
    averaged with inverse-variance weights, the uncertainty widened by their
    reduced chi-square when they disagree more than it says. None when a
    frame has fewer than :data:`MIN_PROFILE_STARS` fitted stars.
    """
    values, variances = [], []
    for frame in betas:
        good = np.sort(np.asarray(frame, dtype=np.float64)[np.isfinite(frame)])
        if len(good) < MIN_PROFILE_STARS:
            return None
        median = float(np.median(good))
        spread = 1.2533 * 1.4826 * float(np.median(np.abs(good - median))) / np.sqrt(len(good))
        values.append(median)
        variances.append(max(spread, 1e-3) ** 2)
    weights = 1 / np.array(variances)
    mean = float(np.sum(weights * values) / np.sum(weights))
    chi2 = float(np.sum(weights * (np.array(values) - mean) ** 2)) / max(len(values) - 1, 1)
    return mean, float(np.sqrt(max(chi2, 1.0) / np.sum(weights)))


def _isolated(catalog: pd.DataFrame, index: np.ndarray, radius: float, contrast: float = 0.05) -> np.ndarray:
    """True for catalog rows with no neighbour brighter than ``contrast`` times theirs within ``radius``."""
    from scipy.spatial import cKDTree

    xy = catalog[["x", "y"]].to_numpy()
    flux = catalog["flux"].to_numpy()
    tree = cKDTree(xy)
    neighbours = tree.query_ball_point(xy[index], r=radius)
    return np.array(
        [
            all(j == i or flux[j] < contrast * flux[i] for j in near)
            for i, near in zip(index, neighbours, strict=True)
        ],
        dtype=bool,
    )


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
    growth_stars: int = 60,
    aperture_correction: bool = True,
    max_growth_err: float = 0.003,
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
    growth_stars : int, default 60
        Bright isolated stars used for each frame's growth curve.
    aperture_correction : bool, default True
        Apply the aperture correction (see module notes); when False the
        factor is 1.
    max_growth_err : float, default 0.003
        When the growth-curve fit (:func:`fit_growth_pair`) leaves the
        correction more uncertain than this (few or faint isolated stars;
        the fit's own uncertainty, before :data:`CORRECTION_SYSTEMATIC` is added),
        the correction is computed instead from the two frames' half-light
        radii for a Moffat profile of beta :data:`FALLBACK_BETA`, with an
        uncertainty of half its size plus 0.1 %.
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
            "growth_ref": None,
            "growth_target": None,
            "profile_beta": None,
            "profile_beta_err": None,
        }
        if aperture_correction:
            used = np.flatnonzero(status == "used")
            bright = used[np.argsort(-snr.to_numpy()[used])][: 4 * growth_stars]
            lonely = bright[
                _isolated(ref_catalog, ref_index[bright], annulus[1])
                & _isolated(target_catalog, target_index[bright], annulus[1])
            ][:growth_stars]
            lonely_ref = (reference, ref["x"].to_numpy()[lonely], ref["y"].to_numpy()[lonely], hlr_ref)
            lonely_tgt = (target, tgt["x"].to_numpy()[lonely], tgt["y"].to_numpy()[lonely], hlr_target)
            # beta from the profiles of the brightest stars, isolated or not (neighbours' pixels left out)
            radii = neighbour_radii(both, broad, PROFILE_MASK_SIGMA, noise)
            neighbours = np.concatenate([c[["x", "y"]].to_numpy() for c in (ref_catalog, target_catalog)])
            profiled = bright[:growth_stars]
            beta = profile_beta(
                [
                    profile_betas(
                        data,
                        cat["x"].to_numpy()[profiled],
                        cat["y"].to_numpy()[profiled],
                        measured["bkg"].to_numpy()[profiled],
                        radius,
                        broad,
                        neighbours,
                        np.concatenate(radii),
                        annulus,
                    )
                    for data, cat, measured in ((reference, ref, phot_ref), (target, tgt, phot_tgt))
                ]
            )
            if beta is not None:
                info.update(profile_beta=beta[0], profile_beta_err=beta[1])
            joint = fit_growth_pair([lonely_ref, lonely_tgt], radius, annulus, beta)
            ok = joint is not None and joint[2] <= max_growth_err
            if joint is not None:
                (fit_ref, fit_tgt), factor, factor_err = joint
                info.update(growth_ref=asdict(fit_ref), growth_target=asdict(fit_tgt))
            if ok:
                relative, floor = CORRECTION_SYSTEMATIC
                info.update(
                    aperture_correction=factor,
                    aperture_correction_err=float(np.hypot(factor_err, relative * abs(factor - 1) + floor)),
                    aperture_correction_method="Moffat growth-curve fits, one beta",
                )
            else:
                # too few or too noisy growth curves: a Moffat with each frame's half-light
                # radius, of the stars' profiles' beta if measured, else of a typical beta
                shape = FALLBACK_BETA if beta is None else beta[0]
                scale = 1 / np.sqrt(2 ** (1 / (shape - 1)) - 1)
                factor = float(
                    aperture_fraction(hlr_target * scale, shape, radius, annulus)
                    / aperture_fraction(hlr_ref * scale, shape, radius, annulus)
                )
                info.update(
                    aperture_correction=factor,
                    aperture_correction_err=0.5 * abs(factor - 1) + 0.001,
                    aperture_correction_method=(
                        f"half-light radii, Moffat beta {shape} assumed"
                        if beta is None
                        else f"half-light radii, Moffat beta {shape:.3f} of the stars' profiles"
                    ),
                )
    return table, info
