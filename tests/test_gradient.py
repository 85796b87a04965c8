import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.signal import fftconvolve

import nsgflow
from nsgflow import synthetic
from nsgflow.differences import stars_held_once
from nsgflow.gradient import (
    background_noise,
    box_statistic,
    matched_difference,
    sample_background,
    star_mask,
    star_radius,
)
from nsgflow.profiles import psf_image


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


def _matched_frames(rng: np.random.Generator, shape=(160, 200), half=20):
    """Frames of the same point sources with different star profiles and planes, and their kernels."""
    points = np.zeros(shape)
    iy, ix = rng.integers(0, shape[0], 150), rng.integers(0, shape[1], 150)
    points[iy, ix] = rng.uniform(1e3, 1e5, 150)
    kernels = [psf_image(np.array(p), half) for p in ([2.0, 4.5, 0.0, 0.0], [4.0, 2.0, 0.2, -0.1])]
    kernels = [k / k.sum() for k in kernels]  # as matched_difference normalizes them
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    m = 1.3
    reference = fftconvolve(points, kernels[0], mode="same") + 50 + 0.1 * yy
    target = fftconvolve(points, kernels[1], mode="same") / m + 100 + 0.2 * xx
    return target, reference, m, kernels, m * (100 + 0.2 * xx) - (50 + 0.1 * yy)


@pytest.mark.parametrize("strip_rows", [512, 37])  # the whole frame at once, or in strips
def test_matched_difference_cancels_stars_of_different_profiles(strip_rows, monkeypatch):
    monkeypatch.setattr("nsgflow.gradient.MATCHED_STRIP_ROWS", strip_rows)
    rng = np.random.default_rng(3)
    target, reference, m, (ref_kernel, target_kernel), truth = _matched_frames(rng)
    valid = np.ones(target.shape, bool)
    difference, defined = matched_difference(target, reference, m, target_kernel, ref_kernel, (valid, valid))
    inner = np.s_[25:-25, 25:-25]  # where the fftconvolve'd frames hold every star's whole profile
    plain = m * target - reference - truth
    assert np.abs(plain[inner]).max() > 100  # the stars' different profiles, unmatched
    np.testing.assert_allclose(difference[inner], truth[inner], atol=0.02)
    assert defined[2:-2, 2:-2].all()  # the frame's edge is a border too: its corners are left out
    assert not defined[0, 0]


@pytest.mark.parametrize("strip_rows", [512, 37, 15])  # 15 rows: less than the kernel's margin of 20
def test_matched_difference_written_into_the_target_is_the_same(strip_rows, monkeypatch):
    """The rows of the target still to be read are not overwritten: the same difference as in new memory."""
    monkeypatch.setattr("nsgflow.gradient.MATCHED_STRIP_ROWS", strip_rows)
    target, reference, m, (ref_kernel, target_kernel), _ = _matched_frames(np.random.default_rng(5))
    target, reference = target.astype(np.float32), reference.astype(np.float32)
    valid = np.ones(target.shape, bool)
    valid[:, :15] = False
    expected, expected_defined = matched_difference(
        target, reference, m, target_kernel, ref_kernel, (valid, valid)
    )
    assert np.abs(expected).max() > 1  # m*T - R is not the target itself
    difference, defined = matched_difference(
        target, reference, m, target_kernel, ref_kernel, (valid, valid), out=target
    )
    assert difference is target
    np.testing.assert_array_equal(difference, expected)
    np.testing.assert_array_equal(defined, expected_defined)


@pytest.mark.parametrize("strip_rows", [512, 37])
def test_matched_difference_leaves_out_pixels_without_data(strip_rows, monkeypatch):
    monkeypatch.setattr("nsgflow.gradient.MATCHED_STRIP_ROWS", strip_rows)
    rng = np.random.default_rng(4)
    shape, level = (120, 150), 1.3 * 100 - 50
    kernel = np.ones((9, 9))
    target, reference = np.full(shape, 100.0), np.full(shape, 50.0)
    target[:, :30] = 0.0  # a border without data
    valid = target != 0
    valid[60, 80] = False  # a hot pixel, left out
    target[60, 80] = 1e6
    target += rng.normal(0, 1e-9, shape)  # no exact zeros left by the FFT
    difference, defined = matched_difference(target, reference, 1.3, kernel, kernel, (valid, reference != 0))
    # normalized convolution: a constant stays constant up to the border and around the hot pixel
    np.testing.assert_allclose(difference[defined], level, rtol=1e-5)
    assert not defined[:, :30].any() and not defined[60, 80]
    inner = np.s_[4:-4, 30:-4]  # a 9 x 9 box kernel keeps 5/9 of its light at the border column
    assert defined[inner].sum() == valid[inner].sum()
    assert (difference[~defined] == 0).all()


def test_matched_difference_convolves_a_star_on_one_frames_border_whole():
    """A star whose core is in the target's border: its wings cancel in the reference's light."""
    shape, m = (120, 160), 1.3
    point = np.zeros(shape)
    point[60, 20] = 1e6  # in the target's border (columns < 30), its wings reaching beyond
    kernels = [psf_image(np.array(p), 40) for p in ([1.5, 4.0, 0.0, 0.0], [4.0, 2.0, 0.0, 0.0])]
    kernels = [k / k.sum() for k in kernels]
    reference = fftconvolve(point, kernels[0], mode="same") + 50.0
    target = fftconvolve(point, kernels[1], mode="same") / m + 100.0
    target[:, :30] = 0.0
    # 5-30 px from the star, 5 px in from the border (normalized convolution's own bias, steep wings)
    wing = np.s_[40:80, 35:50]
    assert np.abs(m * target - reference - (m * 100 - 50))[wing].max() > 80
    own = (target != 0, np.ones(shape, bool))
    difference, defined = matched_difference(target, reference, m, kernels[1], kernels[0], own)
    assert defined[wing].all()
    np.testing.assert_allclose(difference[wing], m * 100 - 50, atol=0.1)
    common, _ = matched_difference(target, reference, m, kernels[1], kernels[0], (own[0], own[0]))
    assert np.abs(common[wing] - (m * 100 - 50)).max() > 80  # the reference's core left out: unmatched


def test_the_light_of_a_star_only_one_frame_holds_is_left_out_as_far_as_it_reaches():
    """A star in the sharp reference's border, whole in the broad target: the reference lacks its light."""
    shape, m, noise = (160, 200), 1.3, 1.0
    point = np.zeros(shape)
    point[20, 100] = 1e6  # in the reference's border (rows < 30)
    profiles = [np.array([1.5, 4.0, 0.0, 0.0]), np.array([3.0, 2.0, 0.0, 0.0])]  # the reference's first
    kernels = [k / k.sum() for k in (psf_image(p, 60) for p in profiles)]
    whole = [fftconvolve(point, k, mode="same") for k in kernels[::-1]]  # the target's first
    whole = [whole[0] / m + 100.0, whole[1] + 50.0]
    target, reference = whole[0], np.where(np.arange(shape[0])[:, None] < 30, 0.0, whole[1])
    data = (np.ones(shape, bool), reference != 0)
    difference, defined = matched_difference(target, reference, m, kernels[1], kernels[0], data)
    error = np.abs(difference - (m * 100 - 50))
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    distance = np.hypot(xx - 100, yy - 20)
    assert error[defined & (distance > 30) & (distance < 50)].max() > 3  # the broad wings of what it lacks
    hlr = [p[0] * np.sqrt(2 ** (1 / (p[1] - 1)) - 1) for p in profiles]
    record = {"profile": [list(p) for p in profiles], "hlr_ref_px": hlr[0], "hlr_target_px": hlr[1]}
    stars = [pd.DataFrame({"x": [100.0], "y": [20.0]}), pd.DataFrame({"x": [], "y": []})]
    once = stars_held_once((target, reference), data, stars, record, (m, noise))
    assert error[defined & ~once].max() < 0.15  # 0.1 noise sigmas, where it is left out (0.103)
    assert distance[once].max() < 90  # not further (73 px)
    # held by the sharp frame only, its light spreads little: a small disc (the broad frame is convolved
    # with the sharp kernel, so the matched difference cancels it beyond)
    target, reference = np.where(reference == 0, 0.0, whole[0]), whole[1]
    stars = stars[::-1]
    swapped = stars_held_once((target, reference), data[::-1], stars, record, (m, noise))
    assert 5 < distance[swapped].max() < 20  # 10 px


@pytest.mark.parametrize(("match_profiles", "low", "high"), [(True, 0.0, 0.04), (False, 0.06, 1.0)])
def test_matched_samples_keep_the_wings_of_stars_out_of_the_gradient(match_profiles, low, high):
    """A broad beta-2 target against a sharp beta-4.5 reference: unmatched, the wings bend the gradient."""
    scene = synthetic.SceneSpec(shape=(400, 600), n_stars=1500, seed=11)
    common = {"psf_radius_fwhm": 30.0}
    specs = [
        synthetic.FrameSpec("ref", fwhm_px=2.5, beta=4.5, sky_adu=600.0, seed=1, **common),
        synthetic.FrameSpec(
            "tgt",
            scale=1.3,
            fwhm_px=4.0,
            beta=2.0,
            ellipticity=0.1,
            psf_angle_deg=40.0,
            sky_adu=900.0,
            slope_x_adu=60.0,
            seed=2,
            **common,
        ),
    ]
    reference, target = (synthetic.render_frame(scene, spec) for spec in specs)
    result = nsgflow.normalize(target, reference, samples={"match_profiles": match_profiles})
    boxes = synthetic.box_medians(synthetic.residual(result.normalized, target, *specs[::-1]), 64)
    rms = np.sqrt(np.mean(boxes**2)) / synthetic.sky_noise(specs[0])
    assert low < rms < high  # matched 0.025, unmatched 0.080 sky sigmas
