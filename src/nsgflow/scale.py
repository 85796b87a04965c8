"""Robust fit of the photometric scale m: reference flux = m * target flux + c."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq

from nsgflow.errors import FrameError
from nsgflow.robust import MAD_TO_SIGMA

__all__ = ["ScaleFit", "fit_scale"]

#: Median of the chi-square distribution with one degree of freedom.
CHI2_1_MEDIAN = 0.454936423119572


@dataclass(frozen=True)
class ScaleFit:
    """Result of :func:`fit_scale`."""

    #: The scale m (reference = m * target + c) and its 1-sigma uncertainty.
    scale: float
    scale_err: float
    #: Intercept c (reference flux units); 0 for a fit through the origin.
    intercept: float
    #: Boolean mask over the input stars: True for those the fit kept.
    used: np.ndarray
    #: Scatter of the stars' reference fluxes beyond their measurement errors (flux units).
    intrinsic_scatter: float
    method: str


def _solve(x: np.ndarray, y: np.ndarray, var: np.ndarray, intercept: bool) -> tuple[np.ndarray, np.ndarray]:
    design = np.stack([x, np.ones_like(x)], axis=1) if intercept else x[:, None]
    normal = design.T @ (design / var[:, None])
    cov = np.linalg.inv(normal)
    return cov @ (design.T @ (y / var)), cov


def _fit_line(
    x: np.ndarray, y: np.ndarray, var: np.ndarray, intercept: bool
) -> tuple[np.ndarray, np.ndarray, float]:
    """Weighted line, with a variance s**2 added so that the normalized residuals have unit variance.

    The variance is judged robustly, by the median squared normalized residual
    (for Gaussian residuals :data:`CHI2_1_MEDIAN`, scaled by n/dof), so a few
    stars hit by a cosmic ray, a hot pixel or a satellite trail do not inflate
    everyone's scatter; they stand out instead, and are clipped. The
    covariance is then widened by the mean reduced chi-square when that
    exceeds 1 (tails the median does not see).

    Returns ``[slope, intercept]`` (intercept 0 without one), their covariance and s.
    """
    dof = len(x) - (2 if intercept else 1)

    def excess(s: float) -> float:
        params, _ = _solve(x, y, var + s**2, intercept)
        resid = y - x * params[0] - (params[1] if intercept else 0.0)
        return float(np.median(resid**2 / (var + s**2))) * len(x) / dof - CHI2_1_MEDIAN

    scatter = brentq(excess, 0.0, float(np.ptp(y)) + 1.0) if dof > 0 and excess(0.0) > 0 else 0.0
    params, cov = _solve(x, y, var + scatter**2, intercept)
    if dof > 0:
        resid = y - x * params[0] - (params[1] if intercept else 0.0)
        cov = cov * max(float(np.sum(resid**2 / (var + scatter**2))) / dof, 1.0)
    full = np.zeros((2, 2))
    full[: len(params), : len(params)] = cov
    return np.append(params, 0.0)[:2], full, float(scatter)


#: Fewest stars for a line with an intercept (:func:`fit_scale`).
MIN_STARS_FOR_INTERCEPT = 6


def fit_scale(
    flux_target: np.ndarray,
    flux_ref: np.ndarray,
    err_target: np.ndarray,
    err_ref: np.ndarray,
    *,
    clip_sigma: float = 4.0,
    intercept: bool = False,
    max_iterations: int = 20,
) -> ScaleFit:
    """Fit ``flux_ref = m * flux_target`` (or ``+ c``) robustly, with an honest uncertainty.

    A weighted straight line through the origin: fluxes measured alike on
    both frames (:func:`nsgflow.photometry.psf_matched_photometry`) share no
    offset. With ``intercept``, as NormalizeScaleGradient fits, an intercept
    absorbs flux offsets shared by all stars (a background level that crowded
    annuli bias the same way; it costs precision), and only the slope m is
    used; with fewer than :data:`MIN_STARS_FOR_INTERCEPT` stars the line goes
    through the origin all the same. Each star's
    variance is its measurement error on both axes plus an intrinsic
    scatter, the same for all stars (crowding and background errors do not
    grow with a star's flux), solved for so that the median normalized
    residual is that of a unit Gaussian: a scatter larger than the errors say
    widens the uncertainty instead of hiding, and a few stars spoiled by a
    cosmic ray, a hot pixel or a satellite trail are rejected rather than
    widening everyone's. Stars beyond ``clip_sigma`` are rejected iteratively, starting
    from the median ratio.

    Parameters
    ----------
    flux_target, flux_ref : numpy.ndarray, shape (n,)
        Fluxes of the same stars on both frames.
    err_target, err_ref : numpy.ndarray, shape (n,)
        Their 1-sigma errors.
    clip_sigma : float, default 4.0
        Rejection threshold on normalized residuals.
    intercept : bool, default False
        Fit an intercept too.
    max_iterations : int, default 20
        Clipping passes at most.

    Returns
    -------
    ScaleFit

    Raises
    ------
    FrameError
        Fewer than 2 stars with positive, finite fluxes on both frames.

    Examples
    --------
    >>> import numpy as np
    >>> f = np.array([1e4, 2e4, 5e4, 1e5, 3e5, 6e5, 1e6])
    >>> fit = fit_scale(f, 1.25 * f + 50.0, np.sqrt(f), np.sqrt(f), intercept=True)
    >>> round(fit.scale, 6), round(fit.intercept, 3), int(fit.used.sum())
    (1.25, 50.0, 7)
    """
    x, y = np.asarray(flux_target, float), np.asarray(flux_ref, float)
    ex, ey = np.asarray(err_target, float), np.asarray(err_ref, float)
    good = (x > 0) & (y > 0) & np.isfinite(x) & np.isfinite(y) & np.isfinite(ex) & np.isfinite(ey)
    if good.sum() < 2:
        raise FrameError(f"{int(good.sum())} star(s) with positive flux on both frames; need 2")
    intercept = intercept and good.sum() >= MIN_STARS_FOR_INTERCEPT
    n_params = 2 if intercept else 1
    m = float(np.median(y[good] / x[good]))
    ratio_dev = np.abs(y / np.where(good, x, 1.0) - m)
    used = good & (ratio_dev <= clip_sigma * MAD_TO_SIGMA * np.median(ratio_dev[good]) + 1e-12)
    if used.sum() < n_params + 1:
        used = good.copy()
    params, cov, scatter = np.array([m, 0.0]), np.zeros((2, 2)), 0.0
    for _ in range(max_iterations):
        params, cov, scatter = _fit_line(x[used], y[used], ey[used] ** 2 + m**2 * ex[used] ** 2, intercept)
        m = float(params[0])
        resid = y - (m * x + params[1])
        keep = good & (np.abs(resid) <= clip_sigma * np.sqrt(ey**2 + m**2 * ex**2 + scatter**2))
        if np.array_equal(keep, used) or keep.sum() < n_params + 1:
            break
        used = keep
    method = "weighted line with intercept" if intercept else "weighted line through the origin"
    return ScaleFit(
        scale=m,
        scale_err=float(np.sqrt(cov[0, 0])),
        intercept=float(params[1]),
        used=used,
        intrinsic_scatter=float(scatter),
        method=method + ", intrinsic scatter, sigma clipping",
    )
