"""Colour (3-plane) frames through the whole workflow: scale, gradient and weight per channel."""

import json
import os

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits

from nsgflow import normalize, synthetic
from nsgflow.cli import main
from nsgflow.stack import stack_frames
from nsgflow.weight import frame_weight

SCENE = synthetic.SceneSpec(shape=(300, 450), n_stars=900, seed=11)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Three colour frames (frame_01 the reference), normalized with the stack and the graphs."""
    workdir = tmp_path_factory.mktemp("colour")
    truth = synthetic.make_frame_set(
        workdir / "data", SCENE, synthetic.demo_specs(3, seed=5), "frame_01", colour=True
    )
    results = workdir / "results"
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        args = [
            "run",
            str(workdir / "data" / "*.fits"),
            "--reference",
            str(workdir / "data" / "frame_01.fits"),
        ]
        assert main([*args, "--results", str(results), "--cores", "2", "all", "stack", "--quiet"]) == 0
    finally:
        os.chdir(cwd)
    return {"results": results, "truth": truth}


def test_every_channel_gets_its_own_scale_and_gradient(run):
    rows = [r for r in synthetic.evaluate(run["results"], run["truth"]) if r["frame"] != "frame_01"]
    assert len(rows) == 2 * 3
    scales = {}
    for row in rows:  # few stars in so small a frame: m_err is 0.3-0.6 %
        assert abs(row["scale_error"]) < 0.008, row
        assert abs(row["scale_error"]) < 3 * row["m_err"] / row["m"] + 0.001, row
        assert row["residual_rms"] < 0.2, row
        assert row["residual_worst"] < 0.6, row
        scales.setdefault(row["frame"], []).append(row["m"])
    # the channels' true scales differ by 3.5 % or more: one scale for all would fail the checks above
    for name, found in scales.items():
        true = [c["scale"] for c in run["truth"]["frames"][name]["channels"]]
        assert abs(true[2] / true[0] - 1) > 0.035, true
        np.testing.assert_allclose(found, true, rtol=0.008)


def test_normalized_frame_is_colour_with_channel_keywords_and_weight(run):
    results = run["results"]
    scale = json.loads((results / "scale" / "frame_02.json").read_text())
    stats = [json.loads((results / "catalogs" / f"{n}.json").read_text()) for n in ("frame_01", "frame_02")]
    with fits.open(results / "normalized" / "frame_02_nsg.fits") as hdul:
        header, data = hdul[0].header, hdul[0].data
    assert data.shape == (3, *SCENE.shape) and data.dtype == np.dtype(">f4")
    channels = scale["channels"]
    for c, fit in enumerate(channels):
        assert header[f"NSGSCL{c}"] == pytest.approx(fit["scale"])
        assert header[f"NSGSER{c}"] == pytest.approx(fit["scale_err"])
    assert header["NSGSCALE"] == pytest.approx(np.mean([f["scale"] for f in channels]))
    # NSG's weight, averaged over the channels, from each channel's noise and scale
    expected = np.mean(
        [
            (r["noise"] / (fit["scale"] * t["noise"])) ** 2
            for r, t, fit in zip(stats[0]["channels"], stats[1]["channels"], channels, strict=True)
        ]
    )
    assert header["WEIGHT"] == pytest.approx(expected)
    assert fits.getdata(results / "gradient" / "frame_02.fits").shape == (3, *SCENE.shape)
    curvature = fits.getdata(results / "gradient" / "frame_02_curvature.fits")
    assert curvature.shape == (3, *(-(-n // 8) for n in SCENE.shape))


def test_tables_carry_the_channel_and_set_outputs_are_made(run):
    results = run["results"]
    for table in ("photometry", "samples"):
        assert sorted(pd.read_csv(results / table / "frame_00.csv")["channel"].unique()) == [0, 1, 2]
    summary = pd.read_csv(results / "summary.csv").set_index("frame")
    assert len(summary.loc["frame_00", "channel_scales"].split()) == 3
    assert summary["accepted"].all()
    assert fits.getdata(results / "stack" / "stack.fits").shape == (3, *SCENE.shape)
    for graph in ("photometry", "gradient", "samples"):
        assert (results / "diagnostics" / f"frame_00_{graph}.png").stat().st_size > 10_000
    assert (results / "blink" / "normalized.gif").is_file()


def test_api_normalizes_colour_arrays_per_channel():
    scene = synthetic.SceneSpec(shape=(240, 320), n_stars=700, seed=3)
    ref_channels = synthetic.channel_specs(synthetic.FrameSpec("ref", fwhm_px=3.0, seed=1))
    tgt_channels = synthetic.channel_specs(
        synthetic.FrameSpec("t", scale=1.6, fwhm_px=3.5, sky_adu=800, slope_y_adu=90, seed=2)
    )
    ref = np.stack([synthetic.render_frame(scene, c) for c in ref_channels])
    tgt = np.stack([synthetic.render_frame(scene, c) for c in tgt_channels])
    result = normalize(tgt, ref)
    np.testing.assert_allclose(result.scales, [c.scale for c in tgt_channels], rtol=0.008)
    assert result.normalized.shape == result.gradient.shape == result.curvature().shape == tgt.shape
    assert result.scale == pytest.approx(np.mean(result.scales))


def test_colour_weight_and_stack_helpers():
    assert frame_weight([2.0, 4.0, 4.0], [4.0, 4.0, 4.0], [1.0, 1.0, 2.0]) == pytest.approx(
        (4 + 1 + 0.25) / 3
    )
    a = np.full((3, 2, 2), 10.0)
    b = a * [[[1.0]], [[2.0]], [[3.0]]]
    stack, rejected = stack_frames([a, b], [1.0, 3.0])
    np.testing.assert_allclose(stack[:, 0, 0], [10.0, 17.5, 25.0])
    assert stack.shape == rejected.shape == (3, 2, 2)


def test_mean_difference_is_the_channels_mean_of_m_t_minus_r():
    """Trail detection's m*T - R, read in slices, is the mean over the channels."""
    from nsgflow.differences import MeanDifference

    target, reference = np.random.default_rng(0).normal(100.0, 5.0, (2, 3, 40, 50)).astype(np.float32)
    scales = np.array([1.2, 0.9, 1.5], np.float32)
    difference = MeanDifference(target, reference, scales)
    full = np.mean([m * t - r for m, t, r in zip(scales, target, reference, strict=True)], axis=0)
    assert difference.shape == (40, 50)
    np.testing.assert_allclose(difference[10:20, 5:45], full[10:20, 5:45], rtol=1e-5)
    mono = MeanDifference(target[0], reference[0], scales[:1])
    np.testing.assert_allclose(mono[:, :], 1.2 * target[0] - reference[0], rtol=1e-5)
