"""Gradient model: a smoothing thin-plate spline through the gradient samples."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.interpolate import RBFInterpolator, RectBivariateSpline

from nsgflow.errors import FrameError

__all__ = ["curvature", "fit_gradient", "gcv_smoothness", "merge_samples", "reject_outlier_samples"]


def merge_samples(
    x: np.ndarray, y: np.ndarray, value: np.ndarray, weight: np.ndarray, max_points: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Merge samples into at most ``max_points`` weighted super-samples.

    Samples are binned on a square grid just coarse enough; each occupied cell
    becomes one sample at the weighted mean position and value, carrying the
    summed weight. Returns the inputs unchanged when they are few enough.
    """
    if len(x) <= max_points:
        return x, y, value, weight
    span = max(np.ptp(x), np.ptp(y), 1.0)
    cells = int(np.sqrt(max_points))
    while True:
        size = span / cells * (1 + 1e-9)
        key_x = ((x - x.min()) // size).astype(np.int64)
        key_y = ((y - y.min()) // size).astype(np.int64)
        keys, inverse = np.unique(key_y * (cells + 2) + key_x, return_inverse=True)
        if len(keys) <= max_points:
            break
        cells -= 1
    total = np.bincount(inverse, weight)

    def mean(v: np.ndarray) -> np.ndarray:
        return np.bincount(inverse, weight * v) / total

    return mean(x), mean(y), mean(value), total


def _surface(
    x: np.ndarray,
    y: np.ndarray,
    value: np.ndarray,
    weight: np.ndarray,
    unit: float,
    smoothness: float,
    max_points: int,
) -> Callable[[np.ndarray], np.ndarray]:
    """The smoothing spline through (merged) samples, as a function of ``[y, x] / unit`` positions."""
    x, y, value, weight = merge_samples(x, y, value, weight, max_points)
    points = np.column_stack([y, x]) / unit
    weight = weight / weight.mean()
    try:
        return RBFInterpolator(
            points, value, kernel="thin_plate_spline", degree=1, smoothing=10.0**smoothness / weight
        )
    except np.linalg.LinAlgError:
        # samples on one line (a very narrow frame) define no surface: use the
        # least-squares plane of smallest slope through them instead
        plane = np.column_stack([np.ones(len(points)), points]) * np.sqrt(weight)[:, None]
        coef = np.linalg.lstsq(plane, value * np.sqrt(weight), rcond=None)[0]
        return lambda p: coef[0] + p @ coef[1:]


def gcv_smoothness(
    x: np.ndarray,
    y: np.ndarray,
    value: np.ndarray,
    weight: np.ndarray,
    shape: tuple[int, int],
    *,
    max_points: int = 2000,
    gcv_points: int = 800,
    limits: tuple[float, float] = (-5.0, 5.0),
) -> float:
    """The smoothness (log10) that minimizes the generalized cross-validation score of the spline.

    Generalized cross-validation (Craven & Wahba 1979) estimates how well the
    smoothing spline would predict a sample left out of the fit, without
    refitting: ``n * RSS / trace(I - A)**2``, ``A`` the influence matrix. The
    spline then follows structure the samples resolve and averages over what
    their scatter cannot: noisy samples (a frame scaled up by cloud, a bright
    sky) get a smoother model, a glow measured by precise samples is followed.
    One eigendecomposition of the (merged) samples' kernel gives the score for
    every smoothness in ``limits`` (steps of 0.05) at once.

    Parameters
    ----------
    x, y, value, weight : numpy.ndarray, shape (n,)
        Samples, as for :func:`fit_gradient`.
    shape : tuple of int
        ``(ny, nx)`` of the frame (positions are in units of its larger side).
    max_points : int, default 2000
        Samples are merged as :func:`fit_gradient` merges them.
    gcv_points : int, default 800
        The score is computed on at most this many of those, evenly spread
        through them (the cost grows as the cube).
    limits : tuple of float, default (-5, 5)
        Range of smoothness searched.

    Returns
    -------
    float
        The smoothness for :func:`fit_gradient`; the upper limit with fewer than 5 samples.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> yy, xx = np.mgrid[16:600:32, 16:900:32]
    >>> x, y = xx.ravel().astype(float), yy.ravel().astype(float)
    >>> glow = 50.0 * np.exp(-x / 150.0)
    >>> noisy = gcv_smoothness(x, y, glow + rng.normal(0, 5.0, x.size), np.ones_like(x), (600, 900))
    >>> precise = gcv_smoothness(x, y, glow + rng.normal(0, 0.05, x.size), np.ones_like(x), (600, 900))
    >>> noisy > precise
    True
    """
    unit = float(max(shape))
    x, y, value, weight = merge_samples(x, y, value, weight, max_points)
    if len(x) < 5:
        return float(limits[1])
    # the score of a spread subset, each sample as noisy as in the fit, costs far less (n**3);
    # its data term holds fewer samples, so the same fit needs a smoothing smaller by that ratio
    chosen = np.unique(np.linspace(0, len(x) - 1, min(len(x), gcv_points)).round().astype(np.int64))
    shift = float(np.log10(len(x) / len(chosen)))
    x, y, value, weight = x[chosen], y[chosen], value[chosen], weight[chosen]
    n = len(x)
    points = np.column_stack([y, x]) / unit
    w = weight / weight.mean()
    root = np.sqrt(w)
    r = np.sqrt(((points[:, None, :] - points[None, :, :]) ** 2).sum(-1))
    with np.errstate(divide="ignore", invalid="ignore"):
        kernel = np.where(r > 0, r**2 * np.log(r), 0.0)
    kernel = root[:, None] * kernel * root[None, :]
    # the kernel on the complement of the (weighted) planes, P K P with P = I - Q Q^T: its
    # eigenvalues are those of the complement and 3 zeros, in the planes' directions
    q = np.linalg.qr(root[:, None] * np.column_stack([np.ones(n), points]))[0]
    kq = kernel @ q
    projected = kernel - q @ kq.T - kq @ q.T + q @ (q.T @ kq) @ q.T
    eigen, vectors = np.linalg.eigh(projected)
    signal = root * value
    z = vectors.T @ (signal - q @ (q.T @ signal))
    logs = np.arange(limits[0], limits[1] + 1e-9, 0.05)
    lam = 10.0 ** (logs[:, None] - shift)
    shrink = lam / (np.maximum(eigen, 0.0)[None, :] + lam)
    rss = ((shrink * z[None, :]) ** 2).sum(axis=1)
    # trace(I - A) over the complement: the 3 zero eigenvalues (the planes, fitted exactly) left out
    score = n * rss / (shrink.sum(axis=1) - 3.0) ** 2
    return float(logs[np.argmin(score)])


def reject_outlier_samples(
    x: np.ndarray,
    y: np.ndarray,
    value: np.ndarray,
    weight: np.ndarray,
    shape: tuple[int, int],
    *,
    clip_sigma: float = 3.0,
    edge_px: float = 0.0,
    smoothness: float = -2.0,
    max_points: int = 2000,
    iterations: int = 3,
) -> np.ndarray:
    """Samples that agree with the smooth model of the others: True to keep.

    The spline is fitted, samples further than ``clip_sigma`` robust standard
    deviations (1.4826 MAD) from it are dropped, and the fit is repeated, at
    most ``iterations`` times. A satellite trail or a halo that leaks into a
    row of samples is narrower than anything the smooth model follows, so it
    stands out; a real gradient, which the model follows, does not. Samples
    within ``edge_px`` of the frame's edge are always kept: there the model is
    least constrained, and a steep glow entering from the edge would look like
    outliers (measured on the accuracy benchmark's bright-sky set).

    Examples
    --------
    >>> yy, xx = np.mgrid[16:600:32, 16:900:32]
    >>> x, y = xx.ravel().astype(float), yy.ravel().astype(float)
    >>> value = 0.05 * x + np.random.default_rng(0).normal(0, 0.5, x.size)
    >>> value[y == 304] += 8.0  # a trail along one row of samples
    >>> keep = reject_outlier_samples(x, y, value, np.ones_like(x), (600, 900))
    >>> bool(keep[y == 304].any()), round(float(keep[y != 304].mean()), 2)
    (False, 0.99)
    """
    keep = np.ones(len(x), dtype=bool)
    edge = (np.minimum(x, shape[1] - 1 - x) < edge_px) | (np.minimum(y, shape[0] - 1 - y) < edge_px)
    unit = float(max(shape))
    for _ in range(iterations):
        if keep.sum() < 4:
            break
        model = _surface(x[keep], y[keep], value[keep], weight[keep], unit, smoothness, max_points)
        resid = value - model(np.column_stack([y, x]) / unit)
        centre = np.median(resid[keep])
        spread = 1.4826 * np.median(np.abs(resid[keep] - centre))
        new = (np.abs(resid - centre) <= clip_sigma * max(spread, 1e-12)) | edge
        if np.array_equal(new, keep):
            break
        keep = new
    return keep


def fit_gradient(
    x: np.ndarray,
    y: np.ndarray,
    value: np.ndarray,
    weight: np.ndarray,
    shape: tuple[int, int],
    *,
    smoothness: float | str = "auto",
    max_points: int = 2000,
    grid_px: int = 16,
) -> np.ndarray:
    """Fit a smoothing thin-plate spline to samples and evaluate it on the full frame.

    Parameters
    ----------
    x, y, value, weight : numpy.ndarray, shape (n,)
        Sample positions (0-based px), values and relative weights (> 0).
    shape : tuple of int
        ``(ny, nx)`` of the frame.
    smoothness : float or "auto", default "auto"
        log10 of the spline's smoothing, with positions in units of the frame's
        larger side and weights normalized to a mean of 1: larger is smoother;
        around 4 the model is a plane. ``"auto"``: :func:`gcv_smoothness`.
    max_points : int, default 2000
        Samples are merged into at most this many super-samples
        (:func:`merge_samples`), which bounds the cost of the fit.
    grid_px : int, default 16
        The spline is evaluated on a grid with this spacing, including the
        frame's first and last rows and columns, and interpolated bicubically
        at the grid's known coordinates.

    Returns
    -------
    numpy.ndarray, shape ``shape``, float32
        The gradient model G.

    Raises
    ------
    FrameError
        Fewer than 3 samples.
    """
    if len(x) < 3:
        raise FrameError(f"{len(x)} gradient sample(s); need at least 3")
    ny, nx = shape
    unit = float(max(ny, nx))
    if smoothness == "auto":
        smoothness = gcv_smoothness(x, y, value, weight, shape, max_points=max_points)
    spline = _surface(x, y, value, weight, unit, float(smoothness), max_points)
    gy = np.linspace(0, ny - 1, max(int(np.ceil((ny - 1) / grid_px)) + 1, 2))
    gx = np.linspace(0, nx - 1, max(int(np.ceil((nx - 1) / grid_px)) + 1, 2))
    grid = np.stack(np.meshgrid(gy, gx, indexing="ij"), axis=-1).reshape(-1, 2) / unit
    coarse = spline(grid).reshape(len(gy), len(gx))
    surface = RectBivariateSpline(gy, gx, coarse, kx=min(3, len(gy) - 1), ky=min(3, len(gx) - 1), s=0)
    return surface(np.arange(ny), np.arange(nx)).astype(np.float32)


def curvature(model: np.ndarray, step: int = 8) -> np.ndarray:
    """The gradient model minus its least-squares plane: how lumpy the correction is.

    The plane is fitted on every ``step``-th pixel in each direction.

    Examples
    --------
    >>> yy, xx = np.mgrid[0:50, 0:60]
    >>> float(np.abs(curvature(3.0 + 0.2 * xx - 0.1 * yy)).max()) < 1e-4
    True
    """
    ny, nx = model.shape
    yy, xx = np.mgrid[0:ny:step, 0:nx:step]
    design = np.column_stack([np.ones(xx.size), xx.ravel(), yy.ravel()])
    coef = np.linalg.lstsq(design, model[::step, ::step].ravel().astype(np.float64), rcond=None)[0]
    plane = coef[0] + coef[1] * np.arange(nx)[None, :] + coef[2] * np.arange(ny)[:, None]
    return (model - plane).astype(np.float32)
