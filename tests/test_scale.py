import numpy as np
import pytest

from nsgflow.scale import fit_scale


def _stars(rng, n, m, noise=30.0, offset=0.0, scatter=0.0):
    flux_t = 10 ** rng.uniform(3.5, 6, n)
    err_t = np.sqrt(noise**2 * 100 + flux_t)
    err_r = np.sqrt(noise**2 * 100 + m * flux_t)
    obs_t = flux_t + rng.normal(0, err_t)
    obs_r = m * flux_t + offset + rng.normal(0, err_r) + rng.normal(0, scatter, n)
    return obs_t, obs_r, err_t, err_r


def test_recovers_scale_and_intercept():
    rng = np.random.default_rng(0)
    fit = fit_scale(*_stars(rng, 300, 1.37, offset=400.0), intercept=True)
    assert fit.scale == pytest.approx(1.37, abs=3 * fit.scale_err)
    assert fit.scale_err < 0.002
    assert fit.intercept == pytest.approx(400.0, abs=150)


def test_fits_through_the_origin_by_default():
    rng = np.random.default_rng(0)
    stars = _stars(rng, 300, 1.37)
    fit = fit_scale(*stars)
    assert fit.intercept == 0.0 and "origin" in fit.method
    assert fit.scale == pytest.approx(1.37, abs=3 * fit.scale_err)
    # no offset to fit: the intercept costs precision
    assert fit.scale_err < 0.95 * fit_scale(*stars, intercept=True).scale_err


def test_outliers_are_rejected():
    rng = np.random.default_rng(1)
    tgt, ref, et, er = _stars(rng, 200, 0.8)
    ref[:10] *= 1.5  # variable stars, blends, cosmic rays
    fit = fit_scale(tgt, ref, et, er)
    # every outlier beyond 5 sigmas of its errors is rejected (a 4-sigma clip may keep a faint one)
    significance = 0.5 * 0.8 * tgt[:10] / np.hypot(er[:10], 0.8 * et[:10])
    assert not fit.used[:10][significance > 5].any()
    assert fit.used[10:].mean() > 0.97
    assert fit.scale == pytest.approx(0.8, abs=3 * fit.scale_err)


def test_few_stars_fit_through_the_origin():
    fit = fit_scale(
        np.array([100.0, 200.0, 300.0]),
        np.array([200.0, 410.0, 590.0]),
        np.ones(3),
        np.ones(3),
        intercept=True,
    )
    assert fit.intercept == 0.0
    assert "origin" in fit.method
    assert fit.scale == pytest.approx(2.0, abs=0.02)


def test_uncertainty_is_honest():
    """The true scale lies within 3 reported sigmas in at least 95 % of trials, even with extra scatter."""
    rng = np.random.default_rng(2)
    pulls = []
    for _ in range(200):
        fit = fit_scale(*_stars(rng, 80, 1.2, scatter=300.0))
        pulls.append((fit.scale - 1.2) / fit.scale_err)
    pulls = np.abs(pulls)
    assert np.mean(pulls < 3) >= 0.95
    assert np.mean(pulls < 1) == pytest.approx(0.68, abs=0.12)  # neither over- nor under-confident


def test_no_usable_star():
    with pytest.raises(ValueError, match="need 2"):
        fit_scale(np.array([-1.0, 5.0]), np.array([1.0, 0.0]), np.ones(2), np.ones(2))
