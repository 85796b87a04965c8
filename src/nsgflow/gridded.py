"""A smooth surface over a frame from its values on a coarse grid, interpolated bicubically.

:class:`GriddedSurface` evaluates a surface (the gradient model's spline,
:class:`nsgflow.spline.ThinPlateSpline`) on a grid over the frame and
interpolates it with scipy's bicubic ``RectBivariateSpline(..., s=0)``; at
every pixel of the frame it evaluates that interpolant's cubic B-splines
itself, in float32, a block of rows at a time.
"""

from __future__ import annotations

import numpy as np

__all__ = ["GriddedSurface"]


def _cubic_basis(knots: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 4 non-zero cubic B-splines at each ``u``: index of the first, and their values (len(u), 4)."""
    last = len(knots) - 5  # the last interval with length: [knots[last], knots[last + 1]]
    span = np.clip(np.searchsorted(knots, u, side="right") - 1, 3, last)
    values = np.zeros((len(u), 4))
    values[:, 0] = 1.0
    for degree in range(1, 4):  # Cox-de Boor, the values of degree d from those of degree d - 1
        new = np.zeros_like(values)
        for r in range(degree):
            left = knots[span + r + 1 - degree]
            right = knots[span + r + 1]
            term = values[:, r] / (right - left)
            new[:, r] += (right - u) * term
            new[:, r + 1] = (u - left) * term
        values = new
    return span - 3, values


def _cubic_matrix(knots: np.ndarray, u: np.ndarray, n_coef: int) -> np.ndarray:
    first, values = _cubic_basis(knots, u)
    matrix = np.zeros((len(u), n_coef))
    rows = np.arange(len(u))[:, None]
    matrix[rows, first[:, None] + np.arange(4)] = values
    return matrix


class GriddedSurface:
    """A surface's values on a grid over a frame, interpolated bicubically to any pixel.

    The grid has a spacing of at most ``grid_px`` and includes the frame's
    first and last rows and columns; the interpolant is scipy's
    ``RectBivariateSpline(gy, gx, values, s=0)`` (lower degrees across a
    frame with fewer than 4 pixels a side). A thin-plate spline through
    gradient samples is smooth on the scale of their spacing, so the grid
    costs far fewer kernel evaluations than every pixel or sample would, for
    an error far below the sample noise (:func:`nsgflow.spline.auto_grid_px`).

    Parameters
    ----------
    surface : object
        Has ``grid(g0, g1)``: values at every ``(g0[i], g1[j])``, positions in
        units of ``unit`` px (:meth:`nsgflow.spline.ThinPlateSpline.grid`).
    shape : tuple of int
        ``(ny, nx)`` of the frame.
    grid_px : int
        Largest grid spacing, px.
    unit : float
        The surface's unit of position, px.

    Examples
    --------
    >>> class Cubic:
    ...     def grid(self, g0, g1):
    ...         return 100.0 + 0.002 * g0[:, None] ** 3 - 0.01 * g1[None, :] ** 2
    >>> gridded = GriddedSurface(Cubic(), (50, 60), grid_px=10, unit=1.0)
    >>> yy, xx = np.mgrid[0:50, 0:60]
    >>> bool(np.allclose(gridded.full(), 100.0 + 0.002 * yy**3 - 0.01 * xx**2, rtol=1e-6))
    True
    >>> round(float(gridded.at(np.array([2.5]), np.array([3.0]))[0]), 6)
    99.94125
    """

    def __init__(self, surface: object, shape: tuple[int, int], grid_px: int, unit: float) -> None:
        from scipy.interpolate import RectBivariateSpline

        self.shape = shape
        #: each sample's leverage in the fit, when :func:`nsgflow.spline._gridded_surface` was asked for it
        self.leverage: np.ndarray | None = None
        gy, gx = (np.linspace(0, n - 1, max(int(np.ceil((n - 1) / grid_px)) + 1, min(n, 4))) for n in shape)
        degrees = {"kx": min(3, len(gy) - 1), "ky": min(3, len(gx) - 1)}
        self._spline = RectBivariateSpline(gy, gx, surface.grid(gy / unit, gx / unit), **degrees, s=0)
        self._bicubic = degrees == {"kx": 3, "ky": 3}
        self.ky, self.kx = self._spline.get_knots()
        self.coef = self._spline.get_coeffs().reshape(len(self.ky) - degrees["kx"] - 1, -1)

    def at(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Values at pixel positions ``(y, x)`` (arrays of one shape, 0-based px), float64."""
        return self._spline.ev(y, x)

    def full(self, chunk_rows: int = 256) -> np.ndarray:
        """Values at every pixel of the frame, float32.

        Along y for every grid column (small), then along x as a matrix
        product, a block of rows at a time, in float32 (the output's
        precision): the scipy spline's own evaluation at every pixel takes
        four times as long on a 24-megapixel frame and makes a float64 copy of it.
        """
        ny, nx = self.shape
        if not self._bicubic:
            return self._spline(np.arange(ny), np.arange(nx)).astype(np.float32)
        fy, wy = _cubic_basis(self.ky, np.arange(ny, dtype=np.float64))
        rows = sum(wy[:, r, None] * self.coef[fy + r] for r in range(4)).astype(np.float32)
        along_x = _cubic_matrix(self.kx, np.arange(nx, dtype=np.float64), self.coef.shape[1]).T
        along_x = along_x.astype(np.float32)
        out = np.empty(self.shape, dtype=np.float32)
        for start in range(0, ny, chunk_rows):
            np.matmul(rows[start : start + chunk_rows], along_x, out=out[start : start + chunk_rows])
        return out
