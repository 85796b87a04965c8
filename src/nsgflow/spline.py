"""Gradient model: a smoothing thin-plate spline through the gradient samples.

The spline is what scipy's ``RBFInterpolator(kernel="thin_plate_spline",
degree=..., smoothing=...)`` fits (a cubic polynomial by default, see
:data:`DEGREE`), computed here with numpy to the same numbers
(:class:`ThinPlateSpline` says why); the full-size model is its values on a
coarse grid interpolated by scipy's bicubic ``RectBivariateSpline(..., s=0)``
(:class:`nsgflow.gridded.GriddedSurface`).
"""

from __future__ import annotations

import numpy as np

from nsgflow.errors import FrameError
from nsgflow.gridded import GriddedSurface
from nsgflow.robust import mad_sigma

__all__ = [
    "DEGREE",
    "ThinPlateSpline",
    "auto_grid_px",
    "curvature",
    "fit_gradient",
    "gcv_smoothness",
    "merge_samples",
    "reject_outlier_samples",
    "sample_leverage",
]


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


#: Degree of the spline's polynomial part, fitted without smoothing. A smooth sky glow that
#: enters from an edge bends most at the edge, where the samples end; the thin-plate part,
#: smoothed, follows that bend only roughly and continues it as a straight line into the
#: strips only the target covers. A cubic takes the bend; of degrees 1 to 4 it leaves the
#: smallest worst box on the accuracy benchmark's hard set.
DEGREE = 3

#: Samples needed per term of the polynomial part: fewer samples get a lower degree.
SAMPLES_PER_TERM = 5


def polynomial_degree(n_points: int, degree: int = DEGREE) -> int:
    """The polynomial degree that ``n_points`` samples support: at most ``degree``, at least 1.

    Each of the ``(d + 1)(d + 2) / 2`` terms of degree ``d`` needs
    :data:`SAMPLES_PER_TERM` samples, or the unsmoothed polynomial would follow their noise.

    Examples
    --------
    >>> polynomial_degree(500), polynomial_degree(40), polynomial_degree(4), polynomial_degree(500, 1)
    (3, 2, 1, 1)
    """
    while degree > 1 and SAMPLES_PER_TERM * (degree + 1) * (degree + 2) // 2 > n_points:
        degree -= 1
    return max(degree, 1)


def _powers(degree: int) -> list[tuple[int, int]]:
    """Exponents ``(i, j)`` of the monomials ``u**i * v**j`` of total degree at most ``degree``."""
    return [(d - j, j) for d in range(degree + 1) for j in range(d + 1)]


def _monomials(u: np.ndarray, powers: list[tuple[int, int]]) -> np.ndarray:
    """Monomials ``u[:, 0]**i * u[:, 1]**j`` of ``powers`` (:func:`_powers`) at ``u``, a column each."""
    return np.column_stack([u[:, 0] ** i * u[:, 1] ** j for i, j in powers])


#: The smallest positive float, added to squared distances: d2 * log(d2) is then 0 at d2 = 0.
_TINY = np.finfo(np.float64).tiny
#: r**2 log(r) = d2 * log2(d2) * _HALF_LN2 with d2 = r**2 (numpy's log2 is several times faster than log).
_HALF_LN2 = 0.5 * np.log(2.0)


def _thin_plate(d2: np.ndarray) -> np.ndarray:
    """The thin-plate kernel r**2 log(r) from squared distances ``d2`` (0 at 0), a new array."""
    out = d2 + _TINY
    np.log2(out, out=out)
    out *= d2
    out *= _HALF_LN2
    return out


class ThinPlateSpline:
    """Smoothing thin-plate spline with a polynomial of ``degree`` (at least 1) through 2-D points.

    The system and its solution are those of scipy's ``RBFInterpolator`` with
    ``kernel="thin_plate_spline"`` and the same ``degree`` (polynomial on coordinates
    shifted and scaled to [-1, 1]); :meth:`grid` evaluates it on a rectangular grid with
    one addition per grid point and centre for the distances
    (:class:`nsgflow.gridded.GriddedSurface` interpolates between the grid points). Kept
    rather than scipy's ``RBFInterpolator``, which fits the same spline: the leverage needs
    the system's inverse, which it does not expose, and it evaluates the grid five times
    slower.

    With ``leverage``, :attr:`leverage` holds each point's leverage: how much
    its fitted value moves with its own value (the diagonal of the influence
    matrix), from the inverse of the system rather than a solve of it.

    Raises
    ------
    numpy.linalg.LinAlgError
        The system is singular (e.g. every point on one line).
    """

    def __init__(
        self,
        points: np.ndarray,
        values: np.ndarray,
        smoothing: np.ndarray | float,
        degree: int = 1,
        *,
        leverage: bool = False,
    ) -> None:
        points = np.asarray(points, dtype=np.float64)
        n = len(points)
        low, high = points.min(axis=0), points.max(axis=0)
        self.shift = (high + low) / 2
        scale = (high - low) / 2
        self.scale = np.where(scale == 0.0, 1.0, scale)
        self.centres = points
        self.powers = _powers(degree)
        k = len(self.powers)
        lhs = np.zeros((n + k, n + k))
        d2 = (points[:, None, 0] - points[None, :, 0]) ** 2 + (points[:, None, 1] - points[None, :, 1]) ** 2
        lhs[:n, :n] = _thin_plate(d2)
        lhs[:n, :n][np.diag_indices(n)] += smoothing
        poly = self._poly(points)
        lhs[:n, n:] = poly
        lhs[n:, :n] = poly.T
        rhs = np.concatenate([np.asarray(values, dtype=np.float64), np.zeros(k)])
        self.leverage: np.ndarray | None = None
        if leverage:
            # fitted = values - smoothing * weights and weights = inverse[:n, :n] @ values
            inverse = np.linalg.inv(lhs)
            coef = inverse @ rhs
            self.leverage = 1.0 - np.broadcast_to(smoothing, (n,)) * np.diag(inverse)[:n]
        else:
            coef = np.linalg.solve(lhs, rhs)
        self.weights, self.affine = coef[:n], coef[n:]

    def _poly(self, points: np.ndarray) -> np.ndarray:
        return _monomials((points - self.shift) / self.scale, self.powers)

    def grid(self, g0: np.ndarray, g1: np.ndarray, block: int = 1 << 16) -> np.ndarray:
        """Values at every ``(g0[i], g1[j])``, shape (len(g0), len(g1)); ``block`` bounds the temporaries."""
        g0, g1 = np.asarray(g0, dtype=np.float64), np.asarray(g1, dtype=np.float64)
        d0 = (g0[:, None] - self.centres[None, :, 0]) ** 2 + _TINY
        d1 = (g1[:, None] - self.centres[None, :, 1]) ** 2
        weights = self.weights * _HALF_LN2
        out = np.empty((len(g0), len(g1)))
        # d2 * log2(d2) for a block of one grid row at a time, small enough to stay in the CPU's cache
        step = max(1, block // len(self.centres))
        d2, kernel = np.empty((step, len(self.centres))), np.empty((step, len(self.centres)))
        for i in range(len(g0)):
            for j in range(0, len(g1), step):
                cols = slice(j, j + step)
                n = len(d1[cols])
                np.add(d1[cols], d0[i], out=d2[:n])
                np.log2(d2[:n], out=kernel[:n])
                kernel[:n] *= d2[:n]
                np.matmul(kernel[:n], weights, out=out[i, cols])
        u0, u1 = (g0 - self.shift[0]) / self.scale[0], (g1 - self.shift[1]) / self.scale[1]
        for c, (i, j) in zip(self.affine, self.powers, strict=True):
            out += c * np.outer(u0**i, u1**j)
        return out


class _Plane:
    """The weighted least-squares plane through points: the model when no spline can be fitted."""

    def __init__(self, points: np.ndarray, values: np.ndarray, weight: np.ndarray) -> None:
        plane = np.column_stack([np.ones(len(points)), points]) * np.sqrt(weight)[:, None]
        self.coef = np.linalg.lstsq(plane, values * np.sqrt(weight), rcond=None)[0]

    def grid(self, g0: np.ndarray, g1: np.ndarray) -> np.ndarray:
        return self.coef[0] + self.coef[1] * g0[:, None] + self.coef[2] * g1[None, :]


def auto_grid_px(shape: tuple[int, int], n_points: int) -> int:
    """Grid spacing for a spline through ``n_points`` spread over a frame of ``shape``: half their spacing.

    The smoothing spline has no structure much finer than the distance
    between its centres, so a grid twice as fine is interpolated bicubically
    to far below the sample noise (``tests/test_spline.py`` checks it against
    the spline at every pixel), while its cost falls with the square of the
    spacing: on a 24-megapixel frame, 2000 merged samples, the grid is 54 px.

    Examples
    --------
    >>> auto_grid_px((600, 900), 527), auto_grid_px((6000, 4000), 2000), auto_grid_px((10, 10), 1000)
    (16, 54, 1)
    """
    return max(1, int(np.sqrt(shape[0] * shape[1] / max(n_points, 1)) / 2))


def _gridded_surface(
    x: np.ndarray,
    y: np.ndarray,
    value: np.ndarray,
    weight: np.ndarray,
    shape: tuple[int, int],
    smoothness: float,
    max_points: int,
    degree: int,
    grid_px: int | str,
    *,
    leverage: bool = False,
) -> GriddedSurface:
    """The smoothing spline through (merged) samples, on the frame's grid (a GriddedSurface).

    Positions are in units of the frame's larger side; the polynomial has
    ``degree`` or the lower one the merged samples support
    (:func:`polynomial_degree`). ``grid_px`` "auto" is half the mean spacing
    of the merged samples, the spline's centres (:func:`auto_grid_px`). With
    ``leverage``, the result's ``leverage`` holds each sample's
    (:func:`sample_leverage`), from the same system.

    The last result is kept: the workflow fits the samples kept by
    :func:`reject_outlier_samples` again in :func:`fit_gradient`, usually the
    very samples of its last fit (a solve of a 2000-point system and the grid saved).
    """
    key = [np.asarray(v, np.float64).tobytes() for v in (x, y, value, weight)]
    key += [tuple(shape), smoothness, max_points, degree, grid_px]
    if _LAST_SURFACE and _LAST_SURFACE[0] == key and (not leverage or _LAST_SURFACE[1].leverage is not None):
        return _LAST_SURFACE[1]
    unit = float(max(shape))
    n_samples = len(x)
    merged = n_samples > max_points
    x, y, value, weight = merge_samples(x, y, value, weight, max_points)
    points = np.column_stack([y, x]) / unit
    weight = weight / weight.mean()
    surface: ThinPlateSpline | _Plane
    try:
        surface = ThinPlateSpline(
            points,
            value,
            smoothing=10.0**smoothness / weight,
            degree=polynomial_degree(len(points), degree),
            leverage=leverage and not merged,
        )
    except np.linalg.LinAlgError:
        # samples on one line (a very narrow frame) define no surface: use the
        # least-squares plane of smallest slope through them instead
        surface = _Plane(points, value, weight)
    if grid_px == "auto":
        grid_px = auto_grid_px(shape, len(points))
    gridded = GriddedSurface(surface, shape, int(grid_px), unit)
    if leverage:
        found = getattr(surface, "leverage", None)
        gridded.leverage = np.zeros(n_samples) if found is None else found
    _LAST_SURFACE[:] = [key, gridded]
    return gridded


#: The inputs and result of the last :func:`_gridded_surface` call.
_LAST_SURFACE: list = []


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
    degree: int = DEGREE,
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
    degree : int, default :data:`DEGREE`
        Degree of the spline's polynomial, as for :func:`fit_gradient`.

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
    powers = _powers(polynomial_degree(len(x), degree))
    # the score of a spread subset, each sample as noisy as in the fit, costs far less (n**3);
    # its data term holds fewer samples, so the same fit needs a smoothing smaller by that ratio
    chosen = np.unique(np.linspace(0, len(x) - 1, min(len(x), gcv_points)).round().astype(np.int64))
    shift = float(np.log10(len(x) / len(chosen)))
    x, y, value, weight = x[chosen], y[chosen], value[chosen], weight[chosen]
    n = len(x)
    points = np.column_stack([y, x]) / unit
    w = weight / weight.mean()
    root = np.sqrt(w)
    d2 = (points[:, None, 0] - points[None, :, 0]) ** 2 + (points[:, None, 1] - points[None, :, 1]) ** 2
    kernel = root[:, None] * _thin_plate(d2) * root[None, :]
    # the kernel on the complement of the (weighted) polynomials, P K P with P = I - Q Q^T: its
    # eigenvalues are those of the complement and a zero for each polynomial term, in their directions
    q = np.linalg.qr(root[:, None] * _monomials(points - points.mean(axis=0), powers))[0]
    kq = kernel @ q
    projected = kernel - q @ kq.T - kq @ q.T + q @ (q.T @ kq) @ q.T
    eigen, vectors = np.linalg.eigh(projected)
    signal = root * value
    z = vectors.T @ (signal - q @ (q.T @ signal))
    logs = np.arange(limits[0], limits[1] + 1e-9, 0.05)
    lam = 10.0 ** (logs[:, None] - shift)
    shrink = lam / (np.maximum(eigen, 0.0)[None, :] + lam)
    rss = ((shrink * z[None, :]) ** 2).sum(axis=1)
    # trace(I - A) over the complement: the zero eigenvalues (the polynomials, fitted exactly) left out
    score = n * rss / (shrink.sum(axis=1) - len(powers)) ** 2
    return float(logs[np.argmin(score)])


#: Least ``1 - leverage`` a residual is divided by (:func:`reject_outlier_samples`): a sample
#: the model follows almost wholly, alone in a corner, is judged at most 20 times its residual.
MIN_FREEDOM = 0.05


def sample_leverage(
    x: np.ndarray,
    y: np.ndarray,
    weight: np.ndarray,
    shape: tuple[int, int],
    smoothness: float,
    max_points: int = 2000,
    degree: int = DEGREE,
) -> np.ndarray:
    """Each sample's leverage in the spline :func:`fit_gradient` fits: how far it pulls the model to itself.

    The leverage ``h`` is the diagonal of the fit's influence matrix: a
    sample's residual from the model is ``1 - h`` times its residual from
    the model fitted without it. It is largest where the model is least
    constrained, at the frame's edges and corners and beside a hole in the
    samples. Samples merged into super-samples (more than ``max_points``,
    :func:`merge_samples`) would share their super-sample's leverage, ``k``
    samples a ``k``-th of it each (``k`` about 10 on a 24-megapixel frame);
    then every leverage is taken as 0, and the system's inverse, which costs
    several times its solution, is not computed. So is that of the
    polynomial-only fallback for samples on one line.

    Examples
    --------
    >>> yy, xx = np.mgrid[16:600:32, 16:900:32]
    >>> x, y = xx.ravel().astype(float), yy.ravel().astype(float)
    >>> h = sample_leverage(x, y, np.ones_like(x), (600, 900), smoothness=-2.0)
    >>> corner, middle = h[0], h[(y == 304) & (x == 464)][0]
    >>> bool(0 < middle < corner < 1)
    True
    """
    zeros = np.zeros(len(x))  # the leverage does not depend on the values
    return _gridded_surface(
        x, y, zeros, weight, shape, smoothness, max_points, degree, "auto", leverage=True
    ).leverage


def reject_outlier_samples(
    x: np.ndarray,
    y: np.ndarray,
    value: np.ndarray,
    weight: np.ndarray,
    shape: tuple[int, int],
    *,
    clip_sigma: float = 3.0,
    edge_px: float = 0.0,
    edge_factor: float = 1.5,
    smoothness: float = -2.0,
    max_points: int = 2000,
    iterations: int = 3,
    degree: int = DEGREE,
    grid_px: int | str = "auto",
) -> np.ndarray:
    """Samples that agree with the smooth model of the others: True to keep.

    The spline is fitted, samples further than ``clip_sigma`` robust standard
    deviations (1.4826 MAD) from it are dropped, and the fit is repeated, at
    most ``iterations`` times. A satellite trail or a halo that leaks into a
    row of samples is narrower than anything the smooth model follows, so it
    stands out; a real gradient, which the model follows, does not. Samples
    within ``edge_px`` of the frame's edge are dropped only beyond
    ``edge_factor`` times ``clip_sigma``: there the model is least
    constrained, and a steep glow entering from the edge would look like
    outliers; they are not all kept, though: a trail or a halo in an edge
    sample would pull the model in that corner and get the good samples
    next to it dropped instead.

    A sample is judged by its residual from the model of the others: its
    residual from the model of all divided by ``1 - h``, ``h`` its leverage
    (:func:`sample_leverage`, of the first fit; ``1 - h`` at least
    :data:`MIN_FREEDOM`). Where the model is least constrained, in a corner or beside a
    hole the star masks leave, it follows a spoiled sample most, so the
    plain residual would hide one that the others do not agree with, and
    good samples beside it would be dropped instead.

    The model is the one :func:`fit_gradient` makes, on the grid of
    ``grid_px``, the same setting.

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
    limit = clip_sigma * np.where(edge, edge_factor, 1.0)
    leverage = None
    for _ in range(iterations):
        if keep.sum() < 4:
            break
        # the leverage is that of the fit to all samples: a few dropped change the others' little
        first = leverage is None
        model = _gridded_surface(
            x[keep],
            y[keep],
            value[keep],
            weight[keep],
            shape,
            smoothness,
            max_points,
            degree,
            grid_px,
            leverage=first,
        )
        if first:
            leverage = model.leverage
        resid = value - model.at(y, x)
        # a kept sample is judged by its residual from the model of the others
        resid[keep] /= np.maximum(1.0 - leverage[keep], MIN_FREEDOM)
        centre = np.median(resid[keep])
        spread = mad_sigma(resid[keep], centre)
        new = np.abs(resid - centre) <= limit * max(spread, 1e-12)
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
    grid_px: int | str = "auto",
    degree: int = DEGREE,
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
        around 4 the model is its polynomial (a plane with ``degree`` 1).
        ``"auto"``: :func:`gcv_smoothness`.
    max_points : int, default 2000
        Samples are merged into at most this many super-samples
        (:func:`merge_samples`), which bounds the cost of the fit.
    grid_px : int or "auto", default "auto"
        The spline is evaluated on a grid with at most this spacing
        (:class:`nsgflow.gridded.GriddedSurface`) and interpolated bicubically;
        "auto": half the mean spacing of the merged samples (:func:`auto_grid_px`).
    degree : int, default :data:`DEGREE`
        Degree of the spline's polynomial part, which is not smoothed; lower
        when the samples are few (:func:`polynomial_degree`).

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
    if smoothness == "auto":
        smoothness = gcv_smoothness(x, y, value, weight, shape, max_points=max_points, degree=degree)
    return _gridded_surface(x, y, value, weight, shape, float(smoothness), max_points, degree, grid_px).full()


def curvature(model: np.ndarray, step: int = 8, bin_px: int = 1) -> np.ndarray:
    """The gradient model minus its least-squares plane: how lumpy the correction is.

    The plane is fitted on every ``step``-th pixel in each direction; a
    colour model, shape (channels, ny, nx), gets one plane per channel. With
    ``bin_px`` > 1 the model is first averaged over blocks of that many
    pixels a side (those at the far edges may be smaller) and the plane is
    fitted to every block, at its centre: an image ``bin_px`` times smaller
    each way, for a model that is smooth on that scale anyway.

    Examples
    --------
    >>> yy, xx = np.mgrid[0:50, 0:60]
    >>> float(np.abs(curvature(3.0 + 0.2 * xx - 0.1 * yy)).max()) < 1e-4
    True
    >>> binned = curvature(3.0 + 0.2 * xx - 0.1 * yy + 0.01 * (xx - 30.0) ** 2, bin_px=8)
    >>> binned.shape, bool(binned[3, 3] < 0 < binned[3, 0])
    ((7, 8), True)
    """
    if model.ndim == 3:
        return np.stack([curvature(plane, step, bin_px) for plane in model])
    ny, nx = model.shape
    y, x = np.arange(ny, dtype=np.float64), np.arange(nx, dtype=np.float64)
    if bin_px > 1:
        rows, cols = np.arange(0, ny, bin_px), np.arange(0, nx, bin_px)
        height, width = np.diff(np.append(rows, ny)), np.diff(np.append(cols, nx))
        # along x first: contiguous runs, faster than along y first
        sums = np.add.reduceat(np.add.reduceat(model, cols, axis=1), rows, axis=0, dtype=np.float64)
        model = sums / np.outer(height, width)
        y, x, step = rows + (height - 1) / 2, cols + (width - 1) / 2, 1
    yy, xx = np.meshgrid(y[::step], x[::step], indexing="ij")
    design = np.column_stack([np.ones(xx.size), xx.ravel(), yy.ravel()])
    coef = np.linalg.lstsq(design, model[::step, ::step].ravel().astype(np.float64), rcond=None)[0]
    along_x = (coef[0] + coef[1] * x).astype(np.float32)
    along_y = (coef[2] * y).astype(np.float32)
    out = np.subtract(model, along_x[None, :], dtype=np.float32)
    out -= along_y[:, None]
    return out
