import numpy as np
import pytest

from nsgflow.gridded import GriddedSurface
from nsgflow.spline import (
    ThinPlateSpline,
    fit_gradient,
    gcv_smoothness,
    merge_samples,
    polynomial_degree,
    reject_outlier_samples,
    sample_leverage,
)


def _surface(x, y, nx, ny):
    return 40 * (x / nx) - 25 * (y / ny) + 60 * np.exp(-x / (0.25 * nx))


@pytest.fixture
def samples():
    rng = np.random.default_rng(0)
    ny, nx, box = 600, 900, 32
    y, x = np.mgrid[box / 2 : ny : box, box / 2 : nx : box]
    x, y = x.ravel(), y.ravel()
    values = _surface(x, y, nx, ny) + rng.normal(0, 0.5, x.shape)
    return x, y, values, np.ones_like(x), (ny, nx)


def test_fit_recovers_smooth_surface_at_full_resolution(samples):
    x, y, values, weight, shape = samples
    model = fit_gradient(x, y, values, weight, shape, smoothness=-2.0)
    assert model.shape == shape and model.dtype == np.float32
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    error = model - _surface(xx, yy, shape[1], shape[0])
    # sample noise 0.5 averaged over hundreds of samples; the edges (and corners) are hardest
    assert np.sqrt(np.mean(error**2)) < 0.25
    assert np.abs(error[16:-16, 16:-16]).max() < 0.8


@pytest.mark.parametrize("degree", [1, 3])
def test_large_smoothness_gives_the_polynomial(samples, degree):
    """Smoothed as much as it can be, the model is the least-squares polynomial (degree 1: a plane)."""
    x, y, _, weight, shape = samples
    values = 3.0 + 0.02 * x - 0.01 * y + 40 * np.sin(x / 50.0) + 30 * (x / shape[1]) ** 3
    model = fit_gradient(x, y, values, weight, shape, smoothness=6.0, degree=degree)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]

    def monomials(u, v):
        powers = [(d - j, j) for d in range(degree + 1) for j in range(d + 1)]
        return np.stack([u**i * v**j for i, j in powers], axis=-1)

    a, *_ = np.linalg.lstsq(monomials(x / shape[1], y / shape[0]), values, rcond=None)
    np.testing.assert_allclose(model, monomials(xx / shape[1], yy / shape[0]) @ a, atol=0.5)


def test_few_samples_lower_the_degree():
    assert [polynomial_degree(n) for n in (3, 15, 30, 50, 5000)] == [1, 1, 2, 3, 3]
    assert polynomial_degree(5000, 1) == 1


def test_the_cubic_follows_a_glow_into_a_border_without_samples():
    """A steep glow from the left edge, samples only from x = 48 on (a border only the target covers)."""
    rng = np.random.default_rng(2)
    ny, nx = 600, 900
    y, x = (v.ravel() for v in np.mgrid[16:ny:32, 48:nx:32].astype(float))
    glow = 300 * np.exp(-x / 150.0)
    errors = {}
    for degree in (1, 3):
        noisy = glow + rng.normal(0, 1.0, x.size)
        model = fit_gradient(x, y, noisy, np.ones_like(x), (ny, nx), degree=degree)
        errors[degree] = np.abs(model[:, :32] - 300 * np.exp(-np.arange(32) / 150.0)).mean()
    assert errors[3] < 0.6 * errors[1], errors  # 7.0 against 14.7


def test_merge_bounds_count_and_keeps_weighted_mean():
    rng = np.random.default_rng(1)
    x, y = rng.uniform(0, 1000, 5000), rng.uniform(0, 700, 5000)
    v, w = rng.normal(size=5000), rng.uniform(0.5, 1, 5000)
    mx, _, mv, mw = merge_samples(x, y, v, w, max_points=400)
    assert len(mx) <= 400
    assert mw.sum() == pytest.approx(w.sum())
    assert np.sum(mw * mv) == pytest.approx(np.sum(w * v))
    assert np.sum(mw * mx) == pytest.approx(np.sum(w * x))


def test_too_few_samples():
    with pytest.raises(ValueError, match="need at least 3"):
        fit_gradient(np.ones(2), np.ones(2), np.ones(2), np.ones(2), (10, 10))


def test_zero_samples_give_zero_model():
    x = np.array([5.0, 50.0, 90.0, 20.0])
    model = fit_gradient(x, x[::-1], np.zeros(4), np.ones(4), (100, 100))
    assert not model.any()


@pytest.mark.parametrize("smoothness", [-2.0, "auto"])
def test_the_grid_costs_next_to_nothing(samples, smoothness):
    """The model interpolated from the automatic grid is the spline at every pixel, far below the noise."""
    x, y, values, weight, shape = samples
    exact = fit_gradient(x, y, values, weight, shape, smoothness=smoothness, grid_px=1)
    model = fit_gradient(x, y, values, weight, shape, smoothness=smoothness)
    error = np.abs(model - exact)
    # sample noise 0.5; -2 follows the samples most closely, the hardest case (0.012 and 0.002 measured)
    assert error.max() < 0.05 * 0.5
    assert np.sqrt(np.mean(error**2)) < 0.005 * 0.5
    # twice as coarse as automatic is measurably worse: the test can see the grid
    coarse = fit_gradient(x, y, values, weight, shape, smoothness=smoothness, grid_px=32)
    assert np.abs(coarse - exact).max() > 3 * error.max()


def test_a_frame_too_thin_for_bicubic_gets_a_lower_degree():
    """Fewer than 4 rows: scipy's spline, cubic along the long side, of the degree the 3 rows allow across."""

    class Tilt:
        def grid(self, g0, g1):
            return 1.0 + 0.5 * g0[:, None] + 0.01 * g1[None, :] ** 2

    model = GriddedSurface(Tilt(), (3, 100), grid_px=10, unit=1.0).full()
    yy, xx = np.mgrid[0:3, 0:100]
    np.testing.assert_allclose(model, 1.0 + 0.5 * yy + 0.01 * xx**2, rtol=1e-5)


def test_leverage_is_the_pull_of_a_sample_on_its_own_fit(samples):
    """Residual from the fit = (1 - leverage) x residual from the fit without the sample (an identity)."""
    x, y, values, _, (_, nx) = samples
    weight = np.random.default_rng(1).uniform(0.3, 1.0, x.size)
    points = np.column_stack([y, x]) / nx
    smoothing = 1e-2 / weight
    full = ThinPlateSpline(points, values, smoothing, degree=3, leverage=True)
    for i in (0, x.size // 2 + 7, x.size - 1):  # a corner, the middle, the opposite corner
        others = np.arange(x.size) != i
        without = ThinPlateSpline(points[others], values[others], smoothing[others], degree=3)
        at = points[i : i + 1]
        fitted, predicted = (s.grid(at[:, 0], at[:, 1])[0, 0] for s in (full, without))
        assert values[i] - fitted == pytest.approx((1 - full.leverage[i]) * (values[i] - predicted), rel=1e-6)
    corner, middle = full.leverage[0], full.leverage[x.size // 2 + 7]
    assert 0 < middle < corner < 1


def test_edge_samples_follow_a_glow_but_not_a_halo():
    """Near the edge a sample is dropped only 1.5 times further out: a glow stays, a spoiled sample goes."""
    rng = np.random.default_rng(2)
    shape = (600, 900)
    y, x = (v.ravel() for v in np.mgrid[16:600:32, 16:900:32].astype(float))
    values = 300 * np.exp(-x / 100.0) + 0.01 * y + rng.normal(0, 1.0, x.size)  # a glow from the left edge
    weight = np.ones_like(x)
    smoothness = gcv_smoothness(x, y, values, weight, shape)
    keep = reject_outlier_samples(x, y, values, weight, shape, edge_px=48, smoothness=smoothness)
    assert keep[x < 48].all()  # without the edge's allowance 3 of these 19 go
    spoiled = values.copy()
    halo = np.flatnonzero((x == 16) & (y == 304))
    spoiled[halo] += 6.0  # 6 sigmas of the samples' noise: within 3 times the limit, beyond 1.5 times
    keep = reject_outlier_samples(x, y, spoiled, weight, shape, edge_px=48, smoothness=smoothness)
    assert not keep[halo].any() and keep[x < 48].sum() == 18


def test_merged_samples_are_taken_to_pull_their_fit_by_nothing(samples):
    x, y, _, weight, shape = samples
    assert sample_leverage(x, y, weight, shape, smoothness=-2.0, max_points=x.size).min() > 0
    assert not sample_leverage(x, y, weight, shape, smoothness=-2.0, max_points=x.size - 1).any()


def test_an_outlier_in_a_corner_is_judged_without_its_own_pull(samples):
    x, y, values, weight, shape = samples
    spoiled = values.copy()
    spoiled[0] += 2.0  # 4 sigmas of the samples' noise, in the corner the model follows most
    keep = reject_outlier_samples(x, y, spoiled, weight, shape, smoothness=-2.0)
    assert not keep[0]
    assert keep[1:].mean() > 0.98
