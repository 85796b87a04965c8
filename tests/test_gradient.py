import warnings

import numpy as np
import pytest

from nsgflow.gradient import background_noise, box_statistic, sample_background, star_mask, star_radius


def test_background_noise_ignores_smooth_signal_and_no_data():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:300, 0:400]
    image = (
        1000
        + 0.5 * xx
        + 200 * np.exp(-((xx - 200) ** 2 + (yy - 150) ** 2) / 5000)
        + rng.normal(0, 12, xx.shape)
    )
    image[:, :20] = 0
    assert background_noise(image.astype(np.float32)) == pytest.approx(12.0, rel=0.03)


def test_star_radius_grows_with_brightness():
    r = star_radius(np.array([0.0, 100.0, 1e4, 1e6]), hlr_px=2.0, noise=10.0)
    assert np.all(np.diff(r) >= 0)
    assert r[0] == pytest.approx(4.0)  # the minimum: two half-light radii
    # a Moffat(beta=2.5) star of amplitude 1e6 falls to 1 sigma (10) at alpha*sqrt(1e5**0.4 - 1)
    alpha = 2.0 / np.sqrt(2 ** (1 / 1.5) - 1)
    assert r[3] == pytest.approx(alpha * np.sqrt(1e5**0.4 - 1))


def test_star_radius_of_a_frame_without_noise_is_finite_and_silent():
    """Noise 0 (every pixel difference the same) used to give infinite radii, which star_mask skips."""
    alpha = 2.0 / np.sqrt(2 ** (1 / 1.5) - 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = star_radius(np.array([0.0, 50.0, 1e4]), hlr_px=2.0, noise=0.0)
    assert r[0] == pytest.approx(4.0)  # no light: the minimum
    # light followed down to a millionth of the peak, whatever the peak
    assert r[1] == pytest.approx(alpha * np.sqrt(1e6**0.4 - 1)) and r[2] == pytest.approx(r[1])


def test_star_mask_is_disc():
    mask = star_mask((21, 21), np.array([10.0]), np.array([10.0]), np.array([3.0]))
    assert mask.sum() == 29  # lattice points within radius 3
    assert mask[10, 13] and not mask[10, 14]


def test_samples_recover_a_plane_and_reject_sparse_boxes():
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:100, 0:130]
    truth = 5.0 + 0.1 * xx - 0.05 * yy
    difference = truth + rng.normal(0, 1.0, truth.shape)
    valid = np.ones(truth.shape, bool)
    valid[:32, :32] = False  # a box fully masked
    valid[40:64, 32:64] = False  # a box with 25 % of its pixels left
    valid[64:96, 64:80] = False  # a box with its left half masked
    samples = sample_background(difference, valid, box_px=32, min_valid_fraction=0.4)
    assert len(samples) == 4 * 5  # 100/32 -> 4 rows, 130/32 -> 5 columns (partial edges included)
    status = samples["status"]  # boxes row by row
    assert status[0] == "no_data"
    assert status[1 * 5 + 1] == "too_few_pixels"
    # a sample sits at the centroid of its box's valid pixels
    assert tuple(samples.loc[2 * 5 + 2, ["x", "y"]]) == (87.5, 79.5)
    used = samples[samples["status"] == "used"]
    expected = 5.0 + 0.1 * used["x"] - 0.05 * used["y"]
    # a clipped mean of >= 256 unit-noise pixels: error about 1/16
    np.testing.assert_allclose(used["value"], expected, atol=0.3)
    last = samples.iloc[-1]  # a 2 x 4 px sliver at the corner: too few pixels to use
    assert (last["x"], last["y"], last["status"]) == (128.5, 97.5, "too_few_pixels")
    assert samples.loc[samples["x"] == 128.5, "status"].eq("too_few_pixels").all()  # 2 px wide column


def test_box_statistic_ignores_outliers_but_not_faint_light():
    rng = np.random.default_rng(2)
    rows = rng.normal(0.0, 1.0, (200, 1024))
    rows[:, :20] += 500.0  # hot pixels and a trail core: clipped
    rows[:, 20:220] += 0.3  # faint light spread over many pixels: kept, as a median would not
    mean, count = box_statistic(rows)
    assert np.median(mean) == pytest.approx(0.3 * 200 / 1004, abs=0.01)
    assert (count == 1024).all()
