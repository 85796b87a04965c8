"""Saturated cores rebuilt from a frame's profile, against stars of known light."""

import numpy as np
import pandas as pd
import pytest

from nsgflow.cores import saturated_cores, saturated_positions
from nsgflow.differences import REACH_SIGMA, REBUILT_CORE_ERROR, rebuilt_cores_reach
from nsgflow.gradient import matched_difference
from nsgflow.profiles import profile_pixels, psf_image

SHAPE = (200, 240)
LEVEL = 60000.0  # the camera's saturation level, ADU
SKY = 500.0


def _star(profile, x0, y0, peak):
    """A star of the elliptical Moffat ``profile`` (pixel-averaged) at ``x0, y0`` with peak ``peak``."""
    yy, xx = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]]
    return peak * profile_pixels(np.asarray(profile), xx - x0, yy - y0)


def test_a_clipped_core_is_rebuilt_to_the_light_it_lost():
    rng = np.random.default_rng(1)
    profile = [3.0, 2.5, 0.15, -0.1]  # alpha, beta, g1, g2
    truth = SKY + _star(profile, 120.3, 95.6, 40 * LEVEL) + _star(profile, 129.0, 100.0, 2e4)  # + a neighbour
    frame = np.minimum(truth + rng.normal(0, 20, SHAPE), LEVEL)
    clipped = truth >= 0.9 * LEVEL
    lost = (truth - frame)[clipped].sum()
    cores = saturated_cores(frame, np.array([120.3]), np.array([95.6]), np.array(profile), 2.5, 0.9 * LEVEL)
    assert set(zip(cores.rows, cores.cols, strict=True)) == set(zip(*np.nonzero(clipped), strict=True))
    rebuilt = cores.values.astype(float) - frame[cores.rows, cores.cols]
    assert rebuilt.sum() == pytest.approx(lost, rel=0.01)  # 1.3e8 ADU lost to the clipping
    np.testing.assert_allclose(cores.values, truth[cores.rows, cores.cols], rtol=0.02)


@pytest.mark.parametrize("fragment_first", [False, True])
def test_a_star_listed_twice_has_its_core_rebuilt_once_from_its_centre(fragment_first):
    """Deblending may split a saturated plateau: a second position 4 px off the star, on its core."""
    profile = [4.0, 2.0, 0.0, 0.0]
    truth = SKY + _star(profile, 120.3, 95.6, 60 * LEVEL)
    frame = np.minimum(truth, LEVEL)
    x, y = np.array([120.3, 116.3]), np.array([95.6, 95.6])
    order = slice(None, None, -1 if fragment_first else 1)
    cores = saturated_cores(frame, x[order], y[order], np.array(profile), 4.0, 0.9 * LEVEL)
    pixels = cores.rows * SHAPE[1] + cores.cols
    assert len(np.unique(pixels)) == len(pixels)  # each pixel replaced once
    np.testing.assert_allclose(cores.values, truth[cores.rows, cores.cols], rtol=0.01)


def test_a_star_cut_by_a_border_is_rebuilt_from_its_own_centre():
    """Half the star lies in a no-data border: catalogued 3 px off its centre, on its visible side."""
    profile = [2.5, 4.5, 0.0, 0.0]
    truth = SKY + _star(profile, 120.3, 95.6, 80 * LEVEL)
    frame = np.minimum(truth, LEVEL)
    frame[97:] = 0.0  # the border
    cores = saturated_cores(frame, np.array([120.3]), np.array([92.6]), np.array(profile), 1.6, 0.9 * LEVEL)
    assert cores.rows.size > 0
    np.testing.assert_allclose(cores.values, truth[cores.rows, cores.cols], rtol=0.05)


def test_stars_without_a_clipped_core_are_left_as_they_are():
    profile = np.array([2.0, 3.0, 0.0, 0.0])
    frame = SKY + _star(profile, 60.0, 60.0, 0.5 * LEVEL)
    x = y = np.array([60.0, 150.0])  # a star below the clipping, and no star
    cores = saturated_cores(frame, x, y, profile, 1.3, 0.9 * LEVEL)
    assert cores.rows.size == 0


def test_saturated_positions_take_each_star_once_from_the_first_catalog():
    flag = 4
    reference = pd.DataFrame({"x": [10.0, 50.0], "y": [10.0, 50.0], "flags": [flag, 0]})
    target = pd.DataFrame({"x": [11.0, 80.0, 50.5], "y": [10.5, 20.0, 50.0], "flags": [flag, flag | 1, 0]})
    x, y = saturated_positions([reference, target], flag)
    np.testing.assert_array_equal(x, [10.0, 80.0])
    np.testing.assert_array_equal(y, [10.0, 20.0])


@pytest.mark.parametrize("strip_rows", [512, 37])  # the whole frame at once, or in strips
def test_rebuilt_cores_keep_a_saturated_star_out_of_the_matched_difference(strip_rows, monkeypatch):
    """A broad beta-2 target and a sharp beta-4.5 reference clip one star's core to different depths."""
    monkeypatch.setattr("nsgflow.gradient.MATCHED_STRIP_ROWS", strip_rows)
    m, x0, y0, light = 1.25, 118.4, 101.7, 3e7
    profiles = {"target": np.array([4.0, 2.0, 0.1, 0.0]), "reference": np.array([2.2, 4.5, 0.0, 0.05])}
    frames, cores = {}, {}
    for name, scale in (("target", m), ("reference", 1.0)):
        profile = profiles[name]
        peak = light / scale * (profile[1] - 1) / (np.pi * profile[0] ** 2)  # the profile's whole light
        frames[name] = np.minimum(SKY + _star(profile, x0, y0, peak), LEVEL).astype(np.float32)
        cores[name] = saturated_cores(frames[name], np.array([x0]), np.array([y0]), profile, 2.0, 0.9 * LEVEL)
    half = 60
    kernels = [psf_image(profiles[name], half) for name in ("target", "reference")]
    valid = np.ones(SHAPE, bool)
    args = (frames["target"], frames["reference"], m, *kernels, (valid, valid))
    clipped, _ = matched_difference(*args)
    rebuilt, _ = matched_difference(*args, (cores["target"], cores["reference"]))
    yy, xx = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]]
    outside = (np.hypot(xx - x0, yy - y0) > 25) & (np.hypot(xx - x0, yy - y0) < 60)
    expected = (m - 1) * SKY
    # the sky's noise is 22 ADU: the clipped light spread by the kernels is 18 sigma at 25 px; rebuilt,
    # what is left (0.1 sigma) is mostly the beta-2 kernel's light beyond its 60 px
    assert np.abs(clipped[outside] - expected).max() > 300
    assert np.abs(rebuilt[outside] - expected).max() < 3


def test_the_error_of_a_rebuilt_core_is_left_out_as_far_as_it_reaches():
    """A sharp target's core rebuilt 10 % too bright, spread by a broad beta-2 reference's kernel."""
    m, x0, y0, noise = 1.25, 118.4, 101.7, 5.0
    profiles = {"target": np.array([2.2, 4.5, 0.0, 0.05]), "reference": np.array([4.0, 2.0, 0.1, 0.0])}
    peak = 3e7 / m * (4.5 - 1) / (np.pi * 2.2**2)
    target = np.minimum(SKY + _star(profiles["target"], x0, y0, peak), LEVEL).astype(np.float32)
    core = saturated_cores(target, np.array([x0]), np.array([y0]), profiles["target"], 1.6, 0.9 * LEVEL)
    added = core.values - target[core.rows, core.cols]
    wrong = core._replace(values=target[core.rows, core.cols] + (1 + REBUILT_CORE_ERROR) * added)
    reference = np.full(SHAPE, SKY, np.float32)  # its own light plays no part in what the error adds
    kernels = [psf_image(profiles[name], 60) for name in ("target", "reference")]
    valid = np.ones(SHAPE, bool)
    right, _ = matched_difference(target, reference, m, *kernels, (valid, valid), (core, None))
    spoilt, _ = matched_difference(target, reference, m, *kernels, (valid, valid), (wrong, None))
    error = np.abs(spoilt - right) / noise  # in the reference's noise sigmas
    record = {"profile": [list(profiles["reference"]), list(profiles["target"])]}
    reach = rebuilt_cores_reach((target, reference), (wrong, None), record, (m, noise))
    yy, xx = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]]
    distance = np.hypot(xx - x0, yy - y0)
    assert error.max() > 1000  # 3e6 ADU of error in the core
    assert error[~reach].max() < 1.1 * REACH_SIGMA  # as far as it reaches
    assert distance[reach].max() < 1.2 * distance[error >= REACH_SIGMA].max()  # and not much further
