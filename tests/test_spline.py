import numpy as np
import pytest

from nsgflow.spline import fit_gradient, merge_samples


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


def test_large_smoothness_gives_a_plane(samples):
    x, y, _, weight, shape = samples
    plane_values = 3.0 + 0.02 * x - 0.01 * y + 40 * np.sin(x / 50.0)
    model = fit_gradient(x, y, plane_values, weight, shape, smoothness=6.0)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    a, *_ = np.linalg.lstsq(np.column_stack([np.ones_like(x), x, y]), plane_values, rcond=None)
    np.testing.assert_allclose(model, a[0] + a[1] * xx + a[2] * yy, atol=0.5)


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
