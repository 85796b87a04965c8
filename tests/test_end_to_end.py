"""The whole workflow through Snakemake on a small synthetic set with known truth."""

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits

from nsgflow import synthetic
from nsgflow.cli import main

STAGES = {
    "catalogs": "{}.csv",
    "photometry": "{}.csv",
    "scale": "{}.json",
    "samples": "{}.csv",
    "gradient": "{}.fits",
    "normalized": "{}_nsg.fits",
}


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def run(frame_set, tmp_path_factory):
    inputs = {name: Path(f["path"]) for name, f in frame_set["frames"].items()}
    before = {name: _digest(p) for name, p in inputs.items()}
    workdir = tmp_path_factory.mktemp("run")
    results = workdir / "results"
    folder = next(iter(inputs.values())).parent
    cwd = os.getcwd()
    os.chdir(workdir)  # Snakemake keeps its metadata (.snakemake/) in the working directory
    try:
        args = ["run", str(folder / "*.fits"), "--reference", str(inputs["frame_01"])]
        assert main([*args, "--results", str(results), "--cores", "2", "--quiet"]) == 0
        yield {"results": results, "inputs": inputs, "before": before, "truth": frame_set}
    finally:
        os.chdir(cwd)


def test_every_stage_writes_one_file_per_frame(run):
    for stage, pattern in STAGES.items():
        for name in run["inputs"]:
            assert (run["results"] / stage / pattern.format(name)).is_file(), (stage, name)


def test_scale_within_half_a_percent_and_background_matches(run):
    rows = [r for r in synthetic.evaluate(run["results"], run["truth"]) if r["frame"] != "frame_01"]
    for row in rows:
        assert abs(row["scale_error"]) < 0.005, row
        assert abs(row["scale_error"]) < 4 * row["m_err"] / row["m"] + 0.001, row
        # residual background: medians over 64x64 boxes, in units of the reference's sky noise
        assert row["residual_rms"] < 0.2, row
        assert row["residual_worst"] < 0.6, row


def test_reference_is_unchanged_except_header(run):
    results = run["results"]
    scale = json.loads((results / "scale" / "frame_01.json").read_text())
    assert (scale["scale"], scale["scale_err"]) == (1.0, 0.0)
    assert not fits.getdata(results / "gradient" / "frame_01.fits").any()
    np.testing.assert_array_equal(
        fits.getdata(results / "normalized" / "frame_01_nsg.fits"), fits.getdata(run["inputs"]["frame_01"])
    )


def test_normalized_header_and_data(run):
    results = run["results"]
    with fits.open(results / "normalized" / "frame_02_nsg.fits") as hdul:
        header, data = hdul[0].header, hdul[0].data
    scale = json.loads((results / "scale" / "frame_02.json").read_text())
    assert data.dtype == np.dtype(">f4")
    assert header["NSGSCALE"] == pytest.approx(scale["scale"])
    assert header["NSGSERR"] == pytest.approx(scale["scale_err"])
    assert header["NSGREF"] == "frame_01.fits"
    assert header["EXPTIME"] == 120.0  # input header kept
    history = str(header["HISTORY"])
    assert "nsgflow" in history and "smoothness" in history
    original = fits.getdata(run["inputs"]["frame_02"])
    assert ((data == 0) == (original == 0)).all()  # no-data pixels stay 0, nothing else becomes 0


def test_photometry_and_samples_tables_explain_rejections(run):
    phot = pd.read_csv(run["results"] / "photometry" / "frame_02.csv")
    assert {"flux_ref", "flux_target", "bkg_ref", "bkg_target", "x_ref", "x_target", "status"} <= set(phot)
    assert set(phot["status"]) <= {
        "used",
        "saturated",
        "near_border",
        "blended",
        "frames_disagree",
        "no_data_in_aperture",
        "non_positive_flux",
        "low_snr",
    }
    scale = json.loads((run["results"] / "scale" / "frame_02.json").read_text())
    assert scale["stars_used"] > 50
    assert sum(scale["stars_rejected"].values()) == len(scale["rejected"])
    samples = pd.read_csv(run["results"] / "samples" / "frame_02.csv")
    assert set(samples["status"]) <= {"used", "no_data", "too_few_pixels"}
    assert (samples["status"] == "used").mean() > 0.8


def test_inputs_are_not_modified(run):
    assert {name: _digest(p) for name, p in run["inputs"].items()} == run["before"]


def test_rerun_does_nothing(run, capfd):
    folder = run["inputs"]["frame_01"].parent
    status = main(
        [
            "run",
            str(folder / "*.fits"),
            "--reference",
            str(run["inputs"]["frame_01"]),
            "--results",
            str(run["results"]),
            "--cores",
            "1",
            "--dry-run",
        ]
    )
    assert status == 0
    assert "Nothing to be done" in "".join(capfd.readouterr())


def test_public_api_gives_the_workflows_numbers(run):
    """A notebook user, with only the public API, gets what the workflow wrote."""
    import nsgflow

    target, header = fits.getdata(run["inputs"]["frame_02"], header=True)
    reference = fits.getdata(run["inputs"]["frame_01"])
    result = nsgflow.normalize(target, reference, target_header=header)
    scale = json.loads((run["results"] / "scale" / "frame_02.json").read_text())
    # the workflow reads catalogs back from CSV (10 significant digits): equal to far below the errors
    assert result.scale == pytest.approx(scale["scale"], rel=1e-8)
    assert result.scale_err == pytest.approx(scale["scale_err"], rel=1e-6)
    written = fits.getdata(run["results"] / "normalized" / "frame_02_nsg.fits")
    np.testing.assert_allclose(result.normalized, written, atol=1e-3)
    assert result.weight == pytest.approx(
        fits.getheader(run["results"] / "normalized" / "frame_02_nsg.fits")["WEIGHT"], rel=1e-6
    )
    assert (result.photometry["status"] == "used").sum() >= scale["stars_used"]


#: The set's truth (demo_specs(4, seed=3)): scale m, sky (ADU) and so NSG's weight
#: (noise_ref / (m noise))**2, the noise sqrt(read noise 5**2 + sky) with a gain of 1
#: (the reference frame_01: m 1, sky 400, noise 20.616):
#: frame_00: m 0.90653, sky 893.62, noise 30.309: (20.616 / (0.90653 x 30.309))**2 = 0.5630
#: frame_02: m 1.47737, sky 468.84, noise 22.223: (20.616 / (1.47737 x 22.223))**2 = 0.3943
#: frame_03: m 1.61280, sky 1464.14, noise 38.589: (20.616 / (1.61280 x 38.589))**2 = 0.1097
TRUE_WEIGHTS = {"frame_00": 0.5630, "frame_01": 1.0, "frame_02": 0.3943, "frame_03": 0.1097}
#: Transmission 1/m of each frame, and per second of its 120 s exposure.
TRUE_TRANSMISSION = {"frame_00": 1.10310, "frame_01": 1.0, "frame_02": 0.67688, "frame_03": 0.62004}
TRUE_TRANSMISSION_PER_S = {
    "frame_00": 0.0091925,
    "frame_01": 0.0083333,
    "frame_02": 0.0056406,
    "frame_03": 0.0051670,
}


def test_weights_rank_frames_as_the_truth_does(run):
    summary = pd.read_csv(run["results"] / "summary.csv").set_index("frame")
    assert list(summary["weight"].sort_values().index) == ["frame_03", "frame_02", "frame_00", "frame_01"]
    for name, weight in TRUE_WEIGHTS.items():
        # the noise above is the constant sky's; gradients and glows add a little
        assert summary.loc[name, "weight"] == pytest.approx(weight, rel=0.1), name
        header = fits.getheader(run["results"] / "normalized" / f"{name}_nsg.fits")
        assert header["WEIGHT"] == pytest.approx(summary.loc[name, "weight"])
        # the scale is within 0.5 % of the truth (test_scale_within_half_a_percent_and_background_matches)
        assert header["NSGTRANS"] == pytest.approx(TRUE_TRANSMISSION[name], rel=0.005), name
        assert header["NSGTREXP"] == pytest.approx(TRUE_TRANSMISSION_PER_S[name], rel=0.005), name
    weights = pd.read_csv(run["results"] / "weights.csv")
    assert list(weights.columns) == ["file", "weight", "frame"]
    accepted = (run["results"] / "accepted.txt").read_text().split()
    assert len(accepted) == len(TRUE_WEIGHTS) and all(Path(p).is_file() for p in accepted)


def test_summary_graph_shows_every_frames_transmission_and_weight(run, tmp_path):
    from nsgflow.summary import summary_graph

    assert (run["results"] / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = pd.read_csv(run["results"] / "summary.csv")
    assert summary["date_obs"].isna().all()  # the synthetic frames have no DATE-OBS: drawn in order
    fig = summary_graph(summary, tmp_path / "summary.png", reference="frame_01")
    for ax, column in zip(fig.axes, ["transmission", "weight"], strict=True):
        drawn = {
            int(x): y
            for line in ax.lines
            if not line.get_label().startswith("_")
            for x, y in zip(line.get_xdata(), line.get_ydata(), strict=True)
        }
        expected = 1 / summary["scale"] if column == "transmission" else summary["weight"]
        assert sorted(drawn) == list(range(1, len(summary) + 1))
        np.testing.assert_allclose([drawn[k] for k in sorted(drawn)], expected)


def test_rejection_follows_the_settings(run):
    from nsgflow.summary import summarize
    from nsgflow.workflow import load_config, workflow_dir

    reject = load_config(workflow_dir() / "config.yaml")["reject"] | {"min_weight": 0.5}
    frames = {name: f["path"] for name, f in run["truth"]["frames"].items()}
    table = summarize(run["results"], frames, "frame_01", reject).set_index("frame")
    # true weights 0.563, 1, 0.394 and 0.110 (TRUE_WEIGHTS): frames 02 and 03 fall below 0.5
    assert table["accepted"].to_dict() == {
        "frame_00": True,
        "frame_01": True,
        "frame_02": False,
        "frame_03": False,
    }
    assert table.loc[["frame_02", "frame_03"], "reason"].str.startswith("weight ").all()


def test_auto_reference_picks_the_highest_altitude(run):
    from nsgflow.reference import rank_references

    stats = [json.loads(p.read_text()) for p in sorted((run["results"] / "catalogs").glob("*.json"))]
    assert rank_references(stats)["frame"].iloc[0] == "frame_01"  # CENTALT 70, the others 30-65
    for row in stats:
        row["altitude"] = None
    ranked = rank_references(stats)
    assert ranked["method"].iloc[0] == "lowest and flattest background"
    # skies of 400 (frame_01, tilted by only 20 ADU), 469, 894 and 1464 ADU: lowest and flattest alike,
    # each frame of the same rank in both (a score of twice its rank)
    assert ranked["frame"].tolist() == ["frame_01", "frame_02", "frame_00", "frame_03"]
    assert ranked["score"].tolist() == [2.0, 4.0, 6.0, 8.0]


def test_diagnostics_and_curvature(run, tmp_path):
    for name in run["inputs"]:
        for graph in ("photometry", "gradient", "samples"):
            png = run["results"] / "diagnostics" / f"{name}_{graph}.png"
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the graphs drawn from the run's tables: the fitted line and the stars the scale used, G's profile
    from nsgflow.diagnostics import gradient_graph, photometry_graph

    results = run["results"]
    scale = json.loads((results / "scale" / "frame_02.json").read_text())
    table = pd.read_csv(results / "photometry" / "frame_02.csv")
    lines = {
        line.get_label(): line for line in photometry_graph(table, scale, tmp_path / "p.png").axes[0].lines
    }
    fitted = lines[f"line {scale['scale']:.5f} x + 0"]
    np.testing.assert_allclose(fitted.get_ydata(), scale["scale"] * fitted.get_xdata(), rtol=1e-12)
    assert len(lines[f"used ({scale['stars_used']})"].get_xdata()) == scale["stars_used"]
    model = fits.getdata(results / "gradient" / "frame_02.fits")
    samples = pd.read_csv(results / "samples" / "frame_02.csv")
    row = gradient_graph(model, samples, tmp_path / "g.png").axes[0].lines[0]
    np.testing.assert_array_equal(row.get_ydata(), model[model.shape[0] // 2])
    gradient = fits.getdata(results / "gradient" / "frame_02.fits").astype(np.float64)
    curv, header = fits.getdata(run["results"] / "gradient" / "frame_02_curvature.fits", header=True)
    # the curvature image is G averaged over 8 x 8 px blocks less a plane, with the blocks' frame coordinates
    size = header["NSGCBIN"]
    assert size == 8 and curv.shape == (50, 75)  # 400 x 600 px in blocks of 8 x 8
    blocks = gradient[: curv.shape[0] * size - size, : curv.shape[1] * size - size]  # the whole blocks
    means = blocks.reshape(curv.shape[0] - 1, size, curv.shape[1] - 1, size).mean(axis=(1, 3))
    plane = means - curv[:-1, :-1]
    yy, xx = np.mgrid[0 : plane.shape[0], 0 : plane.shape[1]]
    coef = np.linalg.lstsq(
        np.column_stack([np.ones(xx.size), xx.ravel(), yy.ravel()]), plane.ravel(), rcond=None
    )[0]
    np.testing.assert_allclose(plane, coef[0] + coef[1] * xx + coef[2] * yy, atol=1e-3)
    assert abs(curv.mean()) < 0.05 * np.ptp(gradient)
    # the frame pixel under block (1, 1)'s centre, in IRAF physical coordinates (1-based): pixels 1-8, 4.5
    for axis in (1, 2):
        assert (1 - header[f"LTV{axis}"]) / header[f"LTM{axis}_{axis}"] == pytest.approx(4.5)


def test_stack_of_the_normalized_frames(run):
    folder = run["inputs"]["frame_01"].parent
    args = ["run", str(folder / "*.fits"), "--reference", str(run["inputs"]["frame_01"])]
    assert main([*args, "--results", str(run["results"]), "--cores", "2", "stack", "--quiet"]) == 0
    stack = fits.getdata(run["results"] / "stack" / "stack.fits")
    reference = fits.getdata(run["inputs"]["frame_01"])
    specs = {name: synthetic.spec_from_truth(f) for name, f in run["truth"]["frames"].items()}
    both = (stack != 0) & (reference != 0)
    # same background and brightness as the reference, with less noise
    assert abs(np.median((stack - reference)[both])) < 0.1 * synthetic.sky_noise(specs["frame_01"])
    assert fits.getheader(run["results"] / "stack" / "stack.fits")["NCOMBINE"] == 4
    assert fits.getdata(run["results"] / "stack" / "rejected.fits").max() <= 4


def test_blink_shows_inputs_differ_and_outputs_match(run):
    from PIL import Image

    means = {}
    for name in ("inputs", "normalized"):
        gif = Image.open(run["results"] / "blink" / f"{name}.gif")
        assert gif.n_frames == len(run["inputs"])
        frames = []
        for k in range(gif.n_frames):
            gif.seek(k)
            frames.append(np.asarray(gif.convert("L"), dtype=float)[20:, :])  # below the label
        means[name] = [np.median(f) for f in frames]
    # one shared stretch: the inputs' sky levels differ, the normalized frames' do not
    assert np.ptp(means["normalized"]) < 0.2 * np.ptp(means["inputs"])
    page = (run["results"] / "blink" / "index.html").read_text()
    assert page.count("data:image/png;base64,") == 3 * len(run["inputs"])  # inputs, normalized, difference
    assert all(name in page for name in run["inputs"])


def test_automatic_sample_size_is_recorded(run):
    """box_px: auto follows the star size; the value used is in the samples and the provenance."""
    record = json.loads((run["results"] / "provenance" / "frame_02.json").read_text())
    samples = pd.read_csv(run["results"] / "samples" / "frame_02.csv")
    # the broader of frame_02 (FWHM 2.63 px) and frame_01 (3.0 px; measured 3.06): 8 x 3.06 = 24.5 px,
    # rounded up to a multiple of 8
    assert record["resolved"]["star_fwhm_px"] == pytest.approx(3.0, rel=0.05)
    assert record["resolved"]["sample_box_px"] == samples["box_px"].iloc[0] == 32
    assert record["settings"]["samples"]["box_px"] == "auto"
    aperture = json.loads((run["results"] / "photometry" / "frame_02.json").read_text())
    # 4 half-light radii of the profiles convolved: 4 x 0.63 x hypot(3.0, 2.634) = 4 x 0.63 x 3.992 = 10.06 px
    assert aperture["aperture_radius_px"] == pytest.approx(10.06, rel=0.05)
    assert record["resolved"]["aperture_radius_px"] == aperture["aperture_radius_px"]
    assert "sample box" in (run["results"] / "logs" / "sample_gradient" / "frame_02.log").read_text()


def test_a_clean_run_logs_no_warnings(run):
    # a warning in a log should mean something about the data; astropy's "Card is too long"
    # (a header comment cut short) was in every frame's log
    logs = sorted((run["results"] / "logs").rglob("*.log"))
    assert logs
    warnings = [
        f"{path.name}: {line}" for path in logs for line in path.read_text().splitlines() if "WARNING" in line
    ]
    assert not warnings
