"""Each frame's star profile: a Moffat fitted to its bright stars.

Frames of one night differ in their stars' width, wings and elongation. Each
frame's brightest stars are fitted pixel by pixel, their neighbours' pixels
left out, with an elliptical Moffat averaged over each pixel
(:func:`profile_fits`): each star on its own, then all of them with one shared
profile, the frame's, fitted again without the stars it fits worse than their
noise allows (:func:`frame_profile`; assumed from the star size where
too few stars are fitted). :func:`frame_profile_fits` fits the same stars on
two frames, within a radius that leaves enough of them clear of neighbours
(:mod:`nsgflow.neighbours`). :func:`psf_image` draws a profile as the kernel of
the PSF-matched photometry (:func:`nsgflow.photometry.psf_matched_photometry`),
and :func:`profile_error` gives the scale's uncertainty from the two frames'
profiles' own (:func:`profile_covariance`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import sep

from nsgflow.gradient import alpha_from_hlr, moffat_radius
from nsgflow.neighbours import annulus_background
from nsgflow.robust import MAD_TO_SIGMA, mad_sigma

__all__ = [
    "frame_profile",
    "frame_profile_fits",
    "matched_fraction",
    "on_smooth_sky",
    "profile_covariance",
    "profile_error",
    "profile_fits",
    "profile_pixels",
    "psf_image",
]

#: Moffat beta assumed for a frame whose star profiles cannot be fitted (typical of real seeing).
FALLBACK_BETA = 3.0

#: Fewest stars whose own fits succeeded for a joint profile fit and its covariance (else assumed).
MIN_PROFILE_STARS = 5

#: Half-light radius per FWHM of a typical star (a Moffat of beta 3).
HLR_PER_FWHM = 0.63

#: Most Levenberg-Marquardt iterations of a star's profile fit (:func:`profile_fits`).
PROFILE_ITERATIONS = 60
#: Bound of the profile fits' elongation parameters g1, g2 (1: axis ratio 0.41).
MAX_SHEAR = 1.0


def _quadratic_form(
    g1: np.ndarray, g2: np.ndarray, dx: np.ndarray, dy: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """An elliptical profile's ``Q = (c + g1) dx**2 + 2 g2 dx dy + (c - g1) dy**2`` and ``c``.

    ``c = sqrt(1 + g1**2 + g2**2)`` makes the form's determinant 1, so the
    elongation ``g1, g2`` leaves the profile's area unchanged.
    """
    c = np.sqrt(1 + g1**2 + g2**2)
    return (c + g1) * dx**2 + 2 * g2 * dx * dy + (c - g1) * dy**2, c


def _moffat_pixels(p: np.ndarray, px: np.ndarray, py: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Elliptical Moffat values on a local background at pixel offsets, and their derivatives.

    ``p`` holds, per star (rows), ``dx, dy, log amplitude, log alpha, beta,
    g1, g2, background``: the value is ``amplitude * (1 + Q / alpha**2) ** -beta
    + background`` with the quadratic form ``Q = (c + g1) ex**2 + 2 g2 ex ey +
    (c - g1) ey**2``, ``c = sqrt(1 + g1**2 + g2**2)`` (determinant 1: alpha
    sets the area, g1 and g2 the elongation). ``px, py`` are the pixels'
    offsets from each star's catalog position (rows). Returns the values,
    shape (n, k), and the Jacobian, shape (n, k, 8).
    """
    ex, ey = px - p[:, :1], py - p[:, 1:2]
    g1, g2 = p[:, 5:6], p[:, 6:7]
    form, c = _quadratic_form(g1, g2, ex, ey)
    inv_a2 = np.exp(-2 * p[:, 3:4])
    xx, yy, xy = ex**2, ey**2, ex * ey
    u = form * inv_a2
    log1u = np.log1p(u)
    profile = np.exp(p[:, 2:3] - p[:, 4:5] * log1u)
    slope = -p[:, 4:5] * profile / (1 + u)  # d profile / d u
    jac = np.empty((*profile.shape, 8))  # filled in place: stacking copies of broadcast arrays cost more
    jac[..., 0] = -2 * ((c + g1) * ex + g2 * ey) * inv_a2 * slope
    jac[..., 1] = -2 * (g2 * ex + (c - g1) * ey) * inv_a2 * slope
    jac[..., 2] = profile
    jac[..., 3] = -2 * u * slope
    jac[..., 4] = -log1u * profile
    jac[..., 5] = ((g1 / c + 1) * xx + (g1 / c - 1) * yy) * inv_a2 * slope
    jac[..., 6] = (g2 / c * (xx + yy) + 2 * xy) * inv_a2 * slope
    jac[..., 7] = 1.0
    return profile + p[:, 7:8], jac


def _pixel_rule(points: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``points`` x ``points`` Gauss-Legendre rule over a pixel: node offsets x, y (px) and weights."""
    nodes, weights = np.polynomial.legendre.leggauss(points)
    x, y = np.meshgrid(nodes / 2, nodes / 2)
    return x.ravel(), y.ravel(), np.outer(weights, weights).ravel() / 4


#: Gauss-Legendre rules over a pixel in a star's wings (2 x 2: exact for cubics) and within
#: :data:`CORE_RADIUS` px of its centre (3 x 3), where a narrow star's core curves too fast for
#: 2 x 2 (beta 1 % low at FWHM 2.5 px, 5 % at 1.4 px).
WING_RULE, CORE_RULE = _pixel_rule(2), _pixel_rule(3)
#: Radius (px) about a star's position within which its pixels are averaged with :data:`CORE_RULE`.
CORE_RADIUS = 3.0


def _pixel_integrated(
    p: np.ndarray, px: np.ndarray, py: np.ndarray, core: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_moffat_pixels` averaged over each pixel (Gauss-Legendre), as pixels record light.

    The first ``core`` pixels of each star take :data:`CORE_RULE`, the others
    :data:`WING_RULE`. Sampled at pixel centres, a model takes the pixels'
    blur of a star's core for a broader core and steeper wings (beta 3.24 for
    3 at 4 px FWHM).
    """
    n, k = px.shape
    value, jac = np.zeros((n, k)), np.zeros((n, k, 8))
    for first, last, (nodes_x, nodes_y, weights) in (
        (0, min(core, k), CORE_RULE),
        (min(core, k), k, WING_RULE),
    ):
        columns, width = slice(first, last), last - first
        if not width:
            continue
        node_value, node_jac = _moffat_pixels(  # node by node, so that each node's values lie together
            p,
            (px[:, None, columns] + nodes_x[:, None]).reshape(n, -1),
            (py[:, None, columns] + nodes_y[:, None]).reshape(n, -1),
        )
        node_value, node_jac = node_value.reshape(n, -1, width), node_jac.reshape(n, -1, width, 8)
        value[:, columns] = np.einsum("q,nqk->nk", weights, node_value)
        jac[:, columns] = np.einsum("q,nqkj->nkj", weights, node_jac)
    return value, jac


def profile_pixels(profile: np.ndarray, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """A star profile ``alpha, beta, g1, g2`` of peak 1, averaged over the pixels at offsets ``dx, dy``.

    The model of :func:`profile_fits` (:func:`_pixel_integrated`), for pixels
    whose centres are ``dx, dy`` from the star's centre (arrays of one shape).
    """
    alpha, beta, g1, g2 = profile
    p = np.array([[0.0, 0.0, 0.0, np.log(alpha), beta, g1, g2, 0.0]])
    flat_dx, flat_dy = (np.asarray(d, float).reshape(1, -1) for d in np.broadcast_arrays(dx, dy))
    value, _ = _pixel_integrated(p, flat_dx, flat_dy, core=flat_dx.shape[1])
    return value.reshape(np.shape(dx))


def _cost(weight: np.ndarray, value: np.ndarray, light: np.ndarray) -> np.ndarray:
    """Each star's weighted sum of squared residuals; infinite where a trial step overflowed."""
    with np.errstate(over="ignore", invalid="ignore"):
        cost = np.sum(np.where(weight > 0, weight * (value - light) ** 2, 0.0), axis=1)
    return np.where(np.isfinite(cost), cost, np.inf)


def profile_fits(
    data: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    bkg: np.ndarray,
    radius: float,
    hlr: float,
    neighbours: np.ndarray,
    neighbour_radii: np.ndarray,
    *,
    joint: bool = False,
    clear_fraction: float = 0.5,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Each star's elliptical Moffat profile, from a least-squares fit of its pixels within ``radius``.

    Each star's pixels, less its background ``bkg``, are fitted with an
    elliptical Moffat profile averaged over each pixel (free centre,
    amplitude, local background, alpha, beta and elongation; equal weights; Levenberg-Marquardt,
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
        The stars' positions (px) and background levels (the fit adds a
        local level of its own: neighbours' faint wings and nebulosity
        differ from one star to the next).
    radius : float
        Radius (px) of the pixels fitted.
    hlr : float
        Half-light radius (px): the fits' start, and how near a catalog
        position must be to count as the star itself.
    neighbours : numpy.ndarray, shape (m, 2)
        x, y of every detected star.
    neighbour_radii : numpy.ndarray, shape (m,)
        Their mask radii (:func:`nsgflow.neighbours.neighbour_radii`).
    joint : bool, default False
        Also fit one profile to all the stars (see Returns).
    clear_fraction : float, default 0.5
        Least share of a star's pixels within ``radius`` that must be clear of
        neighbours for it to be fitted.

    Returns
    -------
    numpy.ndarray, shape (n, 4)
        Per star ``alpha`` (px), ``beta``, ``g1``, ``g2`` of the elliptical
        Moffat (:func:`_moffat_pixels`); NaN where the star's pixels reach the
        frame's edge or no data, its core (2 px) or more than ``1 - clear_fraction``
        of its pixels are a neighbour's, or the fit does not converge or ends at a bound (beta 1.05
        or 20, centre 2 px off, g1 or g2 at :data:`MAX_SHEAR`).
    shared : numpy.ndarray, shape (4,)
        With ``joint`` only: ``alpha, beta, g1, g2`` of one profile fitted to
        all the stars whose own fits succeeded and are typical (:func:`_joint_fit`;
        each keeps its own centre, amplitude and background), then again
        without those it fits worse than their noise allows (:func:`_misfits`,
        :data:`MAX_MISFIT_SIGMAS`); NaN with fewer than :data:`MIN_PROFILE_STARS`.
    """
    fits = np.full((len(x), 4), np.nan)
    shared = np.full(4, np.nan)
    stars, px, py, light, weight, core = _star_pixels(
        data, x, y, bkg, radius, hlr, neighbours, neighbour_radii, clear_fraction
    )
    if not len(stars):
        return (fits, shared) if joint else fits
    low = np.array([-2.0, -2.0, -np.inf, np.log(0.1 * hlr), 1.05, -MAX_SHEAR, -MAX_SHEAR, -np.inf])
    high = np.array([2.0, 2.0, np.inf, np.log(20 * hlr), 20.0, MAX_SHEAR, MAX_SHEAR, np.inf])
    p = np.zeros((len(stars), 8))
    p[:, 2] = np.log(np.maximum(light.max(axis=1), 1.0))
    p[:, 3] = np.log(hlr / np.sqrt(np.sqrt(2.0) - 1))  # beta 3 to start
    p[:, 4] = 3.0
    p, converged = _levenberg_marquardt(p, (px, py, core), light, weight, (low, high))
    at_bound = ((p <= low + 1e-3) | (p >= high - 1e-3)).any(axis=1)
    fitted = np.column_stack([np.exp(p[:, 3]), p[:, 4], p[:, 5], p[:, 6]])
    good = converged & ~at_bound
    fits[stars] = np.where(good[:, None], fitted, np.nan)
    if not joint:
        return fits
    good[good] = _typical(p[good][:, SHARED])  # a star on a trail or a halo would pull the joint fit
    if good.sum() >= MIN_PROFILE_STARS:
        start = p[good].copy()
        start[:, SHARED] = np.median(p[good][:, SHARED], axis=0)
        fitted, model = _joint_fit(start, (px[good], py[good], core), light[good], weight[good], (low, high))
        misfit = _misfits(fitted, model, (px[good], py[good]), light[good], weight[good])
        consistent = misfit <= np.median(misfit) + MAX_MISFIT_SIGMAS * mad_sigma(misfit)
        if not consistent.all() and consistent.sum() >= MIN_PROFILE_STARS:  # unresolved pairs, mostly
            good[good] = consistent
            pixels = (px[good], py[good], core)
            fitted, _ = _joint_fit(fitted[consistent], pixels, light[good], weight[good], (low, high))
        shared = fitted[0, SHARED].copy()
        shared[0] = np.exp(shared[0])
    return fits, shared


def _star_pixels(
    data: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    bkg: np.ndarray,
    radius: float,
    hlr: float,
    neighbours: np.ndarray,
    neighbour_radii: np.ndarray,
    clear_fraction: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """The pixels :func:`profile_fits` fits: the usable stars and, per star, each pixel's offsets and light.

    Returns the indices of the usable stars (whole disc of ``radius`` on the
    frame with data, at least ``clear_fraction`` of it and all of its central 2 px free of
    neighbours), the pixels' offsets ``px, py`` from each star's position,
    their light less ``bkg`` (0 where left out) and their weights (1 kept, 0
    a neighbour's or outside the disc); shapes (n,) and (n, pixels), each
    star's kept pixels first, nearest first, and only as many pixels as the
    star keeping most has: the fits' time goes with the pixels, kept or not.
    Last, the number of leading pixels that hold every star's kept pixels
    within :data:`CORE_RADIUS`, which :func:`_pixel_integrated` averages finer.
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
    if not len(stars):
        empty = np.zeros((0, len(ox)))
        return stars, empty, empty, empty, empty, 0
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
    clear = keep.sum(axis=1) >= clear_fraction * disc.sum(axis=1)
    usable = complete & clear & ~(disc & (r2 <= 4.0) & ~keep).any(axis=1)
    stars, keep, r2 = stars[usable], keep[usable], r2[usable]
    order = np.lexsort((r2, ~keep), axis=1)[:, : int(keep.sum(axis=1).max(initial=0))]
    core = int((keep & (r2 <= CORE_RADIUS**2)).sum(axis=1).max(initial=0))
    px, py, light = (np.take_along_axis(a[usable], order, axis=1) for a in (px, py, light))
    keep = np.take_along_axis(keep, order, axis=1)
    light = (light - bkg[stars, None]) * keep
    return stars, px, py, light, keep.astype(np.float64), core


def _levenberg_marquardt(
    p: np.ndarray,
    pixels: tuple[np.ndarray, np.ndarray, int],
    light: np.ndarray,
    weight: np.ndarray,
    bounds: tuple[np.ndarray, np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """Each star's :func:`_pixel_integrated` profile fitted to its ``light`` from the start ``p``.

    ``pixels`` holds the pixels' offsets ``px, py`` from each star's position
    and how many of each star's first pixels are its core's (:func:`_star_pixels`).

    Levenberg-Marquardt on all stars at once, each until its own fit
    converges (steps no longer gain, or all fail), at most
    :data:`PROFILE_ITERATIONS` steps, parameters kept within ``bounds``.
    Returns the parameters and which stars converged.
    """
    low, high = bounds
    px, py, core = pixels
    value, jac = _pixel_integrated(p, px, py, core)
    cost = _cost(weight, value, light)
    damping = np.full(len(p), 1e-3)
    change = np.full(len(p), np.inf)
    converged = np.zeros(len(p), dtype=bool)
    active = np.arange(len(p))  # the stars still being fitted: each fit stops when it converges
    for _ in range(PROFILE_ITERATIONS):
        jw = (jac[active] * weight[active, :, None]).transpose(0, 2, 1)
        normal = jw @ jac[active]
        grad = (jw @ (value[active] - light[active])[:, :, None])[:, :, 0]
        diagonal = normal[:, np.arange(8), np.arange(8)]
        system = normal + (damping[active, None] * diagonal + 1e-12)[:, :, None] * np.eye(8)
        trial = np.clip(p[active] - np.linalg.solve(system, grad[:, :, None])[:, :, 0], low, high)
        trial_value, trial_jac = _pixel_integrated(trial, px[active], py[active], core)
        trial_cost = _cost(weight[active], trial_value, light[active])
        better = trial_cost < cost[active]
        gained = (cost[active] - trial_cost) / np.maximum(cost[active], 1e-300)
        change[active] = np.where(better, gained, change[active])
        taken = active[better]
        p[taken], value[taken] = trial[better], trial_value[better]
        jac[taken], cost[taken] = trial_jac[better], trial_cost[better]
        damping[active] = np.clip(np.where(better, damping[active] / 3, damping[active] * 4), 1e-9, 1e9)
        converged[active] = (change[active] < 1e-8) | (damping[active] > 1e4)
        active = active[~converged[active]]
        if not len(active):
            break
    return p, converged


#: Robust sigmas from the median beyond which a star's own profile fit is left out of the joint one.
TYPICAL_SIGMAS = 3.0


def _typical(params: np.ndarray) -> np.ndarray:
    """Rows within :data:`TYPICAL_SIGMAS` robust sigmas (MAD_TO_SIGMA MADs) of the median in every column."""
    if not len(params):
        return np.zeros(0, bool)
    offset = np.abs(params - np.median(params, axis=0))
    return np.all(offset <= TYPICAL_SIGMAS * MAD_TO_SIGMA * np.median(offset, axis=0) + 1e-12, axis=1)


#: Columns of a profile fit's parameters (:func:`_moffat_pixels`) that :func:`_joint_fit` shares:
#: log alpha, beta, g1, g2; the others (centre, log amplitude, background) are each star's own.
SHARED, OWN = np.array([3, 4, 5, 6]), np.array([0, 1, 2, 7])


def _joint_fit(
    p: np.ndarray,
    pixels: tuple[np.ndarray, np.ndarray, int],
    light: np.ndarray,
    weight: np.ndarray,
    bounds: tuple[np.ndarray, np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """One profile (the :data:`SHARED` parameters) fitted to several stars' pixels at once.

    Levenberg-Marquardt on all parameters, the stars' own ones eliminated
    from each step's normal equations (a Schur complement), so a step costs
    little more than the stars' separate fits. ``p`` holds the start (the
    shared columns equal in every row), the rest as :func:`_levenberg_marquardt`.
    Returns every star's parameters, the shared ones equal in all rows, and
    the model's pixel values with them.
    """
    px, py, core = pixels
    value, jac = _pixel_integrated(p, px, py, core)
    cost = _cost(weight, value, light).sum()
    damping = 1e-3
    for _ in range(PROFILE_ITERATIONS):
        jw = jac * weight[:, :, None]
        own, common = jac[:, :, OWN], jac[:, :, SHARED]
        residual = (value - light)[:, :, None]
        h_oo = jw[:, :, OWN].transpose(0, 2, 1) @ own
        h_oc = jw[:, :, OWN].transpose(0, 2, 1) @ common
        h_cc = np.sum(jw[:, :, SHARED].transpose(0, 2, 1) @ common, axis=0)
        g_o = (jw[:, :, OWN].transpose(0, 2, 1) @ residual)[:, :, 0]
        g_c = np.sum(jw[:, :, SHARED].transpose(0, 2, 1) @ residual, axis=0)[:, 0]
        h_oo = h_oo + (damping * np.diagonal(h_oo, axis1=1, axis2=2) + 1e-12)[:, :, None] * np.eye(4)
        h_cc = h_cc + (damping * np.diag(h_cc) + 1e-12) * np.eye(4)
        solved = np.linalg.solve(h_oo, np.concatenate([h_oc, g_o[:, :, None]], axis=2))
        schur = h_cc - np.sum(h_oc.transpose(0, 2, 1) @ solved[:, :, :4], axis=0)
        step_c = np.linalg.solve(
            schur, g_c - np.sum(h_oc.transpose(0, 2, 1) @ solved[:, :, 4:], axis=0)[:, 0]
        )
        step_o = solved[:, :, 4] - solved[:, :, :4] @ step_c
        trial = p.copy()
        trial[:, OWN] -= step_o
        trial[:, SHARED] -= step_c
        trial = np.clip(trial, *bounds)
        trial_value, trial_jac = _pixel_integrated(trial, px, py, core)
        trial_cost = _cost(weight, trial_value, light).sum()
        if trial_cost < cost:
            gained = (cost - trial_cost) / max(cost, 1e-300)
            p, value, jac, cost, damping = trial, trial_value, trial_jac, trial_cost, max(damping / 3, 1e-9)
            if gained < 1e-8:
                break
        else:
            damping *= 4
            if damping > 1e4:
                break
    return p, value


#: Robust sigmas above the median star's misfit (:func:`_misfits`) beyond which a star is left out of
#: its frame's joint profile fit: mostly pairs too close to resolve, which the brightest stars of a
#: crowded field often are (a pair is brighter), and whose wings look broad.
MAX_MISFIT_SIGMAS = 5.0
#: Radius, in FWHM of the joint profile, of the pixels whose residuals make a star's misfit.
MISFIT_RADIUS_FWHM = 2.0
#: Median of the square of a standard normal variable.
NORMAL_SQUARE_MEDIAN = 0.4549


def _misfits(
    p: np.ndarray,
    value: np.ndarray,
    offsets: tuple[np.ndarray, np.ndarray],
    light: np.ndarray,
    weight: np.ndarray,
) -> np.ndarray:
    """Each star's mean squared residual from the joint model ``p``, in units of its pixels' variance.

    ``value`` is the model at the pixels' ``offsets`` (:func:`_joint_fit`).

    Over the kept pixels within :data:`MISFIT_RADIUS_FWHM` of each star's
    fitted centre. A pixel's variance is ``a + b * star``, the star's
    modelled light there: ``a`` from the residuals of the pixels beyond that
    radius (their robust sigma, squared), ``b`` (the light's Poisson part, 1
    / gain) such that the median squared residual of the pixels where the
    star is brighter than 10 sqrt(a) is a normal variable's
    (:data:`NORMAL_SQUARE_MEDIAN` of its variance).
    """
    from scipy.optimize import brentq

    px, py = offsets
    star, residual = value - p[:, 7:8], light - value
    kept = weight > 0
    fwhm = 2 * moffat_radius(2.0, np.exp(p[0, 3]), p[0, 4])
    near = (px - p[:, :1]) ** 2 + (py - p[:, 1:2]) ** 2 <= (MISFIT_RADIUS_FWHM * fwhm) ** 2
    a = mad_sigma(residual[kept & ~near]) ** 2 if (kept & ~near).any() else np.median(residual[kept] ** 2)
    bright = kept & (star > 10 * np.sqrt(a))
    squares, light_there = residual[bright] ** 2, star[bright]

    def excess(b: float) -> float:
        return float(np.median(squares / (a + b * light_there))) - NORMAL_SQUARE_MEDIAN

    b = 0.0
    if len(squares) and excess(0.0) > 0 and excess(1e6) < 0:
        b = brentq(excess, 0.0, 1e6)
    variance = a + b * np.maximum(star, 0.0)
    inner = kept & near
    return np.sum(np.where(inner, residual**2 / variance, 0.0), axis=1) / np.maximum(inner.sum(axis=1), 1)


#: The pixels a star's profile is fitted to, tried in turn (:func:`frame_profile_fits`): the radius, in
#: half-light radii of the broader frame, and the least share of them clear of neighbours. The wider
#: sees more of broad wings (beta 2), the narrower fits in among neighbours, and the last fits a few
#: more stars where neighbours crowd nearly every one.
PROFILE_FIT_STEPS = ((6.0, 0.5), (4.0, 0.5), (4.0, 0.25))
#: Fewest stars whose own fits succeed in a step of :data:`PROFILE_FIT_STEPS` for the frame's profile to
#: be fitted there rather than in the next.
MIN_PROFILE_FIT_STARS = 30


#: Annulus, in units of the wider profile fit's radius, whose scatter tells a star on smooth sky
#: from one on structured light (:func:`on_smooth_sky`).
SMOOTH_SKY_ANNULUS = (1.0, 1.5)
#: Largest scatter in that annulus, over the median star's, of a star on smooth sky.
MAX_SKY_SCATTER = 1.5


def on_smooth_sky(
    frames: Sequence[np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
    broad: float,
    mask: np.ndarray | None,
    own_radius: np.ndarray | None,
) -> np.ndarray:
    """Stars whose sky is as smooth as the median star's in every frame.

    Nebulosity or a galaxy under a star curves its sky, and a profile fit
    takes the curvature for wing: it moves beta. So each star's sky is the
    annulus :data:`SMOOTH_SKY_ANNULUS` beyond the pixels the wider profile fit
    sees (:data:`PROFILE_FIT_STEPS`, in half-light radii ``broad``), neighbours
    masked (``mask``, ``own_radius``: :func:`nsgflow.neighbours.annulus_background`);
    a star is on smooth sky where that annulus's scatter is at most
    :data:`MAX_SKY_SCATTER` times the median star's in each frame.
    """
    radius = PROFILE_FIT_STEPS[0][0] * broad
    smooth = np.ones(len(x), dtype=bool)
    for data in frames:
        _, scatter, _ = annulus_background(
            data, x, y, *(f * radius for f in SMOOTH_SKY_ANNULUS), mask=mask, own_radius=own_radius
        )
        with np.errstate(invalid="ignore"):
            smooth &= scatter <= MAX_SKY_SCATTER * np.nanmedian(scatter)
    return smooth


def frame_profile_fits(
    frames: Sequence[tuple[np.ndarray, pd.DataFrame]],
    stars: Sequence[pd.DataFrame],
    rows: Sequence[np.ndarray],
    broad: float,
    radii: Sequence[np.ndarray],
    mask: np.ndarray | None,
    own_radius: np.ndarray | None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """:func:`profile_fits` (joint) of each frame's stars ``rows`` of its ``stars``.

    The pixels within the first radius of :data:`PROFILE_FIT_STEPS` (half-light
    radii) of each star are fitted, or, where fewer than
    :data:`MIN_PROFILE_FIT_STARS` stars' own fits succeed there (neighbours
    in many of those pixels: a crowded field), as the next step says; less a first
    background, the median of an annulus beyond them, neighbours masked
    (``mask``, ``own_radius``: :func:`nsgflow.neighbours.annulus_background`).
    ``radii`` are each catalog's neighbour radii
    (:func:`nsgflow.neighbours.neighbour_radii`), whose pixels the fits leave
    out.
    """
    radii = np.concatenate(radii)
    neighbours = np.concatenate([c[["x", "y"]].to_numpy() for _, c in frames])
    fits = []
    for (data, _), measured, chosen in zip(frames, stars, rows, strict=True):
        x, y = measured["x"].to_numpy()[chosen], measured["y"].to_numpy()[chosen]
        own = None if own_radius is None else own_radius[chosen]
        backgrounds = {}  # steps of one radius share its background
        for factor, clear in PROFILE_FIT_STEPS:
            radius = factor * broad
            if factor not in backgrounds:
                annulus = (1.5 * radius, 2.2 * radius)
                backgrounds[factor] = annulus_background(data, x, y, *annulus, mask=mask, own_radius=own)[0]
            bkg = backgrounds[factor]
            fit = profile_fits(
                data, x, y, bkg, radius, broad, neighbours, radii, joint=True, clear_fraction=clear
            )
            if np.isfinite(fit[0]).all(axis=1).sum() >= MIN_PROFILE_FIT_STARS:
                break
        fits.append(fit)
    return fits


def frame_profile(shared: np.ndarray, hlr: float) -> tuple[np.ndarray, str]:
    """A frame's star profile ``alpha, beta, g1, g2``: its stars' joint fit, or one assumed from ``hlr``.

    ``shared`` is :func:`profile_fits`' joint profile; where it is NaN (too
    few fitted stars), a round Moffat of beta :data:`FALLBACK_BETA` and
    half-light radius ``hlr`` stands in. Returns the profile and which it is.
    """
    if np.all(np.isfinite(shared)):
        return np.asarray(shared, float), "elliptical Moffat fitted to its stars"
    alpha = alpha_from_hlr(hlr, FALLBACK_BETA)
    return np.array(
        [alpha, FALLBACK_BETA, 0.0, 0.0]
    ), f"half-light radius, Moffat beta {FALLBACK_BETA} assumed"


def psf_image(profile: np.ndarray, half: int, oversample: int = 5) -> np.ndarray:
    """A star profile ``alpha, beta, g1, g2`` as an image of (2 half + 1)**2 pixels, each its pixel's mean.

    The elliptical Moffat of :func:`_moffat_pixels`, normalized so the whole,
    untruncated profile holds 1.
    """
    alpha, beta, g1, g2 = profile
    offsets = np.arange(-half, half + 1)[:, None] + (np.arange(oversample) + 0.5) / oversample - 0.5
    fine = offsets.ravel()
    form, _ = _quadratic_form(g1, g2, fine[None, :], fine[:, None])
    density = (beta - 1) / (np.pi * alpha**2) * (1 + form / alpha**2) ** -beta
    n = 2 * half + 1
    return density.reshape(n, oversample, n, oversample).mean(axis=(1, 3))


def matched_fraction(
    profiles: Sequence[np.ndarray], radius: float, annulus: tuple[float, float], half: int
) -> float:
    """Fraction of a star's light that PSF-matched photometry measures, for two frames' profiles.

    The star's profile is the two profiles convolved (each frame's convolved
    with the other's: :func:`nsgflow.photometry.psf_matched_photometry`); the
    aperture of ``radius`` measures its light less the annulus's mean level (a
    plane through a round annulus's pixels is their mean there).
    """
    from scipy.signal import fftconvolve

    images = [psf_image(profile, half) for profile in profiles]
    star = np.ascontiguousarray(fftconvolve(images[0], images[1], mode="same"))
    centre = np.array([float(half)])
    inner, _, _ = sep.sum_circle(star, centre, centre, radius, subpix=5)
    ring, _, _ = sep.sum_circann(star, centre, centre, *annulus, subpix=5)
    level = ring[0] / (np.pi * (annulus[1] ** 2 - annulus[0] ** 2))
    return float(inner[0] - np.pi * radius**2 * level)


#: Steps of the profile parameters ``alpha`` (relative), ``beta``, ``g1``, ``g2`` for the derivatives
#: of :func:`profile_error`.
PROFILE_STEPS = np.array([1e-3, 1e-3, 1e-3, 1e-3])


def profile_error(
    profiles: Sequence[np.ndarray],
    covariances: Sequence[np.ndarray],
    radius: float,
    annulus: tuple[float, float],
    half: int,
) -> float:
    """Relative error of the scale from the two frames' fitted profiles' own uncertainties.

    A profile that is off makes one frame's convolved stars hold more or less
    of their light in the aperture than the other's: the scale is off by the
    change of :func:`matched_fraction`, which is linear in small parameter
    errors. Each frame's ``covariance`` of ``alpha, beta, g1, g2`` is that of
    its joint profile (:func:`profile_covariance`).
    """
    base = np.log(matched_fraction(profiles, radius, annulus, half))
    variance = 0.0
    for k, covariance in enumerate(covariances):
        gradient = np.empty(4)
        for j in range(4):
            step = PROFILE_STEPS[j] * (profiles[k][0] if j == 0 else 1.0)
            moved = [np.array(profile, float) for profile in profiles]
            moved[k][j] += step
            gradient[j] = (np.log(matched_fraction(moved, radius, annulus, half)) - base) / step
        variance += float(gradient @ covariance @ gradient)
    return float(np.sqrt(variance))


#: Systematic error of a frame's fitted profile, the same for all its stars: ``alpha`` (relative),
#: ``beta``, ``g1`` and ``g2``. Neighbours' faint light and nebulosity in the wings, and wings a
#: Moffat only nearly follows, move every star's fit alike, which the stars' scatter cannot show.
PROFILE_SYSTEMATIC = np.array([0.02, 0.05, 0.01, 0.01])

#: Error of a profile assumed (:func:`frame_profile`), as :data:`PROFILE_SYSTEMATIC`: real seeing
#: gives beta 2-5 and elongations up to about 0.35.
ASSUMED_PROFILE_ERROR = np.array([0.1, 1.0, 0.1, 0.1])


def profile_covariance(fits: np.ndarray, profile: np.ndarray) -> np.ndarray:
    """Covariance of a frame's joint ``profile`` (``alpha, beta, g1, g2``), from its stars' own fits.

    The covariance of the stars' :func:`profile_fits` over their number (the
    stars the joint fit leaves out left out, :func:`_typical`): the stars'
    scatter holds what each star's noise and neighbours do to its fit. To it
    is added :data:`PROFILE_SYSTEMATIC`. With fewer than
    :data:`MIN_PROFILE_STARS` stars the profile was assumed, and its
    error is :data:`ASSUMED_PROFILE_ERROR`.
    """
    good = fits[np.all(np.isfinite(fits), axis=1)]
    good = good[_typical(good)]
    units = np.array([profile[0], 1.0, 1.0, 1.0])  # alpha's errors are relative
    if len(good) < MIN_PROFILE_STARS:
        return np.diag((ASSUMED_PROFILE_ERROR * units) ** 2)
    return np.cov(good.T) / len(good) + np.diag((PROFILE_SYSTEMATIC * units) ** 2)
