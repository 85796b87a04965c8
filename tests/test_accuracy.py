"""Accuracy on the hard synthetic conditions of issue #4, at small sizes, against its targets.

Targets (median over the target frames, and worst frame): scale error
|m/m_true - 1| median <= 0.3 %, worst <= 0.6 %; residual background (output
minus ideal output, medians in 64x64 boxes, in reference sky sigmas): RMS
<= 0.05 (median frame), worst box <= 0.3; the true scale within 3 reported
sigmas. ``benchmarks/accuracy.py`` measures the same at full size, with
baselines and many seeds.
"""

from __future__ import annotations

import numpy as np
import pytest

import nsgflow
from nsgflow import synthetic, synthetic_conditions
from nsgflow.defects import find_defects
from nsgflow.detect import detect_stars
from nsgflow.trails import find_trails

TARGETS = {"scale_median": 0.003, "scale_worst": 0.006, "rms": 0.05, "worst_box": 0.3}


def _normalize_set(conditions, shape, n_frames, seed):
    """Render a condition set in memory and normalize every target; per-frame errors."""
    scene, specs, reference = synthetic_conditions.condition_specs(conditions, shape, n_frames, seed)
    frames = {spec.name: synthetic.render_frame(scene, spec) for spec in specs}
    ref_spec = next(s for s in specs if s.name == reference)
    noise = synthetic.sky_noise(ref_spec)
    rows = []
    for spec in specs:
        if spec.name == reference:
            continue
        target = frames[spec.name]
        result = nsgflow.normalize(target, frames[reference])
        residual = synthetic.residual(result.normalized, target, spec, ref_spec)
        boxes = synthetic.box_medians(residual, 64) / noise
        # the same, where the reference has data too (elsewhere the model can only extrapolate)
        both = synthetic.box_medians(np.where(frames[reference] == 0, np.nan, residual), 64) / noise
        rows.append(
            {
                "frame": spec.name,
                "error": result.scale / spec.scale - 1,
                "sigma": result.scale_err / result.scale,
                "rms": float(np.sqrt(np.mean(boxes**2))),
                "worst_box": float(np.max(np.abs(boxes))),
                "worst_box_both": float(np.max(np.abs(both))),
            }
        )
    return rows


def _summary(rows):
    errors = np.abs([r["error"] for r in rows])
    return {
        "scale_median": float(np.median(errors)),
        "scale_worst": float(errors.max()),
        "rms": float(np.median([r["rms"] for r in rows])),
        "worst_box": max(r["worst_box"] for r in rows),
        "worst_box_both": max(r["worst_box_both"] for r in rows),
        "within_3_sigma": float(np.mean(errors <= 3 * np.array([r["sigma"] for r in rows]))),
    }


SINGLE = ["seeing", "artifacts", "extended", "borders", "trails", "sky", "cloud"]


@pytest.mark.parametrize("condition", SINGLE)
def test_each_hard_condition_meets_the_targets(condition):
    """One condition at a time, 400x600 px, 4 frames: every target, the residuals with room to spare.

    With each frame's own profile the scale of these 3 targets is within 1 of
    its reported sigmas (about 0.3 %), so its median only meets the target.
    """
    summary = _summary(_normalize_set([condition], (400, 600), 4, seed=0))
    for key, limit in TARGETS.items():
        assert summary[key] <= (1.0 if key.startswith("scale") else 0.8) * limit, (condition, key, summary)
    assert summary["within_3_sigma"] == 1.0, summary


@pytest.fixture(scope="module")
def hard_set():
    """All conditions at once, as the benchmark's hard set: 600x900 px, 6 frames, seed 0."""
    return _normalize_set(synthetic_conditions.CONDITIONS, (600, 900), 6, seed=0)


def test_hard_set_scale(hard_set):
    summary = _summary(hard_set)
    assert summary["scale_median"] <= 0.8 * TARGETS["scale_median"], summary  # 0.11 %
    assert summary["scale_worst"] <= 0.9 * TARGETS["scale_worst"], summary  # 0.48 %
    assert summary["within_3_sigma"] == 1.0, summary


def test_hard_set_background(hard_set):
    summary = _summary(hard_set)
    assert summary["rms"] <= 0.8 * TARGETS["rms"], summary  # 0.031
    # where both frames have data the worst box is 0.18; next to borders only the target covers,
    # the model extrapolates a steep glow (0.47 with a plane for the spline's polynomial, 0.24 with a cubic)
    assert summary["worst_box_both"] <= 0.8 * TARGETS["worst_box"], summary
    assert summary["worst_box"] <= 0.9 * TARGETS["worst_box"], summary


def _true_trails(spec, shape):
    """The trails :func:`nsgflow.synthetic.render_frame` draws: a point on each and its direction."""
    rng = np.random.default_rng([spec.seed, 3])
    ny, nx = shape
    return [(rng.uniform(0, nx), rng.uniform(0, ny), rng.uniform(0, np.pi)) for _ in range(spec.trails)]


def test_trails_of_both_frames_are_found_and_nothing_else():
    shape = (400, 600)
    scene, specs, reference = synthetic_conditions.condition_specs(["trails", "artifacts"], shape, 4, seed=1)
    ref_spec = next(s for s in specs if s.name == reference)
    ref = synthetic.render_frame(scene, ref_spec)
    for spec in specs:
        if spec is ref_spec:
            continue
        target = synthetic.render_frame(scene, spec)
        difference = np.float32(spec.scale) * target - ref
        valid = (target != 0) & (ref != 0)
        found = find_trails(difference, valid)
        expected = _true_trails(spec, shape) + _true_trails(ref_spec, shape)
        assert len(found) == len(expected), (spec.name, found)
        for x0, y0, direction in expected:
            # the same line: directions within 0.5 deg, and the true line's point within 2 px of it
            delta = (found["angle"] + np.pi / 2 - direction + np.pi / 2) % np.pi - np.pi / 2
            distance = np.abs(x0 * np.cos(found["angle"]) + y0 * np.sin(found["angle"]) - found["rho_px"])
            assert ((np.abs(delta) < np.radians(0.5)) & (distance < 2.0)).any(), (spec.name, found)


def test_a_trail_along_an_edge_is_found_but_a_glow_entering_there_is_not():
    rng = np.random.default_rng(2)
    yy, xx = np.mgrid[0:400, 0:600]
    noise = rng.normal(0.0, 10.0, yy.shape).astype(np.float32)
    valid = np.ones(yy.shape, dtype=bool)
    # 1 deg off the x axis, 30-40 px from the bottom edge: where the glow test below looks
    tilt = np.radians(1.0)
    trail = noise + 60.0 * np.exp(-0.5 * (((yy - 30) * np.cos(tilt) - xx * np.sin(tilt)) / 1.5) ** 2)
    found = find_trails(trail, valid)
    assert len(found) == 1, found
    assert found["angle"].iloc[0] == pytest.approx(np.pi / 2 + tilt, abs=np.radians(0.5))
    assert found["rho_px"].iloc[0] == pytest.approx(30.0, abs=2.0)
    # a glow rising steeply towards the same edge leaves a ramp, not a ridge: no trail (three lines
    # along it without the test that a line near an edge stands out on both of its sides)
    assert find_trails(noise + 100.0 * np.exp(-yy / 15.0), valid).empty


def test_a_trail_beside_a_steep_glow_gets_a_narrow_mask_and_the_glow_no_trail():
    # a glow of 30 noise sigmas entering from the bottom edge (e-folding 100 px) and a 1-px trail
    # 3 deg off the x axis in it: the smooth background misses the glow's bend by a band along
    # the edge, which was taken for a dark trail with a 100-px mask
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:600, 0:900]
    tilt = np.radians(3.0)
    image = rng.normal(0.0, 10.0, yy.shape) + 300.0 * np.exp(-yy / 100.0)
    image += 60.0 * np.exp(-0.5 * ((yy - 40) * np.cos(tilt) - xx * np.sin(tilt)) ** 2)
    found = find_trails(image.astype(np.float32), np.ones(yy.shape, dtype=bool))
    assert len(found) == 1, found
    assert found["sign"].iloc[0] == 1 and found["rho_px"].iloc[0] == pytest.approx(40.0, abs=2.0)
    assert 3.0 <= found["half_width_px"].iloc[0] <= 10.0, found


def _cleaned(frame):
    """A copy of ``frame`` with its defects replaced."""
    rows, cols, values = find_defects(frame)
    cleaned = frame.copy()
    cleaned[rows, cols] = values
    return cleaned


def test_defects_are_cleaned_but_sharp_stars_are_not():
    scene = synthetic.SceneSpec(shape=(300, 400), n_stars=800, seed=3)
    spec = synthetic.FrameSpec("t", fwhm_px=2.0, sky_adu=600, hot_pixels=60, cosmic_rays=10, seed=4)
    frame = synthetic.render_frame(scene, spec)
    clean = synthetic.render_frame(scene, synthetic.FrameSpec("t", fwhm_px=2.0, sky_adu=600, seed=4))
    hits = frame != clean  # the hot pixels and cosmic-ray pixels
    cleaned = _cleaned(frame)
    replaced = cleaned != frame
    assert (replaced & hits).sum() >= 0.6 * hits.sum()  # 68 %: inner pixels of tracks are left
    assert np.abs(cleaned - clean)[hits].sum() <= 0.3 * np.abs(frame - clean)[hits].sum()  # 23 % left
    assert (replaced & ~hits).sum() <= 5  # noise spikes on bright wings, at most
    # no star's peak is touched: the frame without defects keeps every detected star's peak
    stars = detect_stars(clean)
    cleaned_clean = _cleaned(clean)
    peaks = (stars["y"].round().astype(int), stars["x"].round().astype(int))
    assert np.array_equal(cleaned_clean[peaks], clean[peaks])
