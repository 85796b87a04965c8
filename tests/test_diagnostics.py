"""The diagnostic graphs draw the numbers they are given: fitted lines, profiles and sample boxes."""

import numpy as np
import pandas as pd
import pytest
from matplotlib.patches import PathPatch

from nsgflow.diagnostics import COLOURS, gradient_graph, photometry_graph, sample_map

PNG = b"\x89PNG\r\n\x1a\n"


def _lines(ax) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """x and y of each labelled line (a fitted line, a profile, a group of dots), by label."""
    return {
        line.get_label(): (np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float))
        for line in ax.lines
        if not line.get_label().startswith("_")
    }


def _photometry(slope: float, intercept: float = 0.0, channel: int | None = None) -> pd.DataFrame:
    """Ten stars on the line ref = slope * target + intercept; star 3 20 % off it, star 7 saturated."""
    flux_target = np.geomspace(1e3, 1e6, 10)
    flux_ref = slope * flux_target + intercept
    flux_ref[3] *= 1.2
    status = np.array(["used"] * 10, dtype=object)
    status[7] = "saturated"
    table = pd.DataFrame(
        {"ref_id": np.arange(10), "flux_target": flux_target, "flux_ref": flux_ref, "status": status}
    )
    if channel is not None:
        table["channel"] = channel
    return table


def _fit(slope: float, intercept: float = 0.0) -> dict:
    """A scale record as fit_scale writes it: star 3 rejected as a ratio outlier."""
    return {
        "scale": slope,
        "scale_err": 0.004,
        "intercept": intercept,
        "stars_used": 8,
        "rejected": [{"ref_id": 3, "reason": "ratio_outlier"}],
    }


@pytest.mark.parametrize("intercept", [0.0, 250.0])
def test_photometry_graph_draws_the_fitted_line_and_each_stars_ratio(tmp_path, intercept):
    table = _photometry(1.37, intercept)
    fig = photometry_graph(table, _fit(1.37, intercept), tmp_path / "phot.png", title="f")
    assert (tmp_path / "phot.png").read_bytes()[:8] == PNG
    left, right = (_lines(ax) for ax in fig.axes)
    assert set(left) == {
        "used (8)",
        "ratio_outlier (1)",
        "saturated (1)",
        f"line 1.37000 x + {intercept:.4g}",
    }
    flux, line = left[f"line 1.37000 x + {intercept:.4g}"]
    # from the faintest to the brightest star, on the fitted line
    assert (flux[0], flux[-1]) == pytest.approx((1e3, 1e6))
    np.testing.assert_allclose(line, 1.37 * flux + intercept, rtol=1e-12)
    np.testing.assert_allclose(left["used (8)"][0], table["flux_target"].drop([3, 7]))
    np.testing.assert_allclose(left["ratio_outlier (1)"], [[table["flux_target"][3]], [table["flux_ref"][3]]])
    assert [line.get_color() for line in fig.axes[0].lines[:3]] == ["tab:red", "0.6", COLOURS["used"]]
    # each star's (reference flux - intercept) / target flux, drawn in the order outlier, saturated, used:
    # 1.37 on the line; star 3 (target flux 1e4): (1.2 * (1.37e4 + c) - c) / 1e4 = 1.644 + 2e-5 c
    outlier, saturated, used = (line.get_ydata() for line in fig.axes[1].lines[:3])
    assert outlier == pytest.approx([1.644 + 2e-5 * intercept])
    np.testing.assert_allclose(np.concatenate([saturated, used]), np.full(9, 1.37), rtol=1e-12)
    np.testing.assert_allclose(right["m = 1.37000 ± 0.00400"][1], [1.37, 1.37])
    band = fig.axes[1].patches[0].get_bbox()  # the 1-sigma band, in data units along y
    assert (band.y0, band.y1) == pytest.approx((1.366, 1.374))
    assert fig._suptitle.get_text() == "f photometry: m = 1.37000 ± 0.00400 from 8 stars"


def test_photometry_graph_of_a_colour_frame_has_each_channels_line(tmp_path):
    slopes = [1.1, 1.3, 1.5]
    table = pd.concat([_photometry(m, channel=c) for c, m in enumerate(slopes)], ignore_index=True)
    record = {"scale": 1.3, "scale_err": 0.01, "stars_used": 24, "channels": [_fit(m) for m in slopes]}
    fig = photometry_graph(table, record, tmp_path / "phot.png")
    left, right = (_lines(ax) for ax in fig.axes)
    for channel, (slope, colour) in enumerate(zip(slopes, ["tab:red", "tab:green", "tab:blue"], strict=True)):
        flux, line = left[f"ch{channel} line {slope:.5f} x + 0"]
        np.testing.assert_allclose(line, slope * flux, rtol=1e-12)
        np.testing.assert_allclose(right[f"ch{channel} m = {slope:.5f} ± 0.00400"][1], [slope, slope])
        assert left[f"ch{channel} used (8)"][1] == pytest.approx(slope * left[f"ch{channel} used (8)"][0])
        drawn = {line.get_label(): line.get_color() for line in fig.axes[0].lines}
        assert drawn[f"ch{channel} used (8)"] == drawn[f"ch{channel} line {slope:.5f} x + 0"] == colour
    # rejections are labelled once, for channel 0
    assert {label for label in left if "used" not in label and "line" not in label} == {
        "ch0 ratio_outlier (1)",
        "ch0 saturated (1)",
    }


def _gradient_samples(channel: int | None = None) -> pd.DataFrame:
    """Samples of 16 px boxes on a 96 x 128 frame, their value the model's plus 1 (used) or 50 (outlier)."""
    y, x = (v.ravel().astype(float) for v in np.mgrid[8:96:16, 8:128:16])
    value = _model(x, y) + 1.0
    status = np.where(x == 40, "ratio_outlier", "used")
    value[status != "used"] += 49.0
    table = pd.DataFrame({"x": x, "y": y, "value": value, "box_px": 16, "status": status})
    if channel is not None:
        table["channel"] = channel
    return table


def _model(x: np.ndarray, y: np.ndarray, channel: int = 0) -> np.ndarray:
    return 10.0 * channel + 0.05 * x - 0.002 * (y - 30.0) ** 2


def test_gradient_graph_draws_the_models_centre_row_and_column_with_the_samples_beside_them(tmp_path):
    yy, xx = np.mgrid[0:96, 0:128].astype(float)
    model = _model(xx, yy).astype(np.float32)
    fig = gradient_graph(model, _gradient_samples(), tmp_path / "g.png", title="f", value_range=(-4.0, 6.0))
    assert (tmp_path / "g.png").read_bytes()[:8] == PNG
    row, column = (_lines(ax) for ax in fig.axes)
    # the centre row is y = 48, the centre column x = 64
    np.testing.assert_array_equal(row["G along row 48"][0], np.arange(128))
    np.testing.assert_allclose(row["G along row 48"][1], 0.05 * np.arange(128) - 0.002 * 18.0**2, rtol=1e-6)
    np.testing.assert_allclose(
        column["G along column 64"][1], 3.2 - 0.002 * (np.arange(96) - 30.0) ** 2, rtol=1e-6
    )
    # used samples within a box (16 px) of that row: y = 40 and 56, at their x; outliers (x = 40) left out
    x, value = row["samples within 16 px"]
    expected_x = np.array([8, 24, 56, 72, 88, 104, 120] * 2, dtype=float)
    expected_y = np.repeat([40.0, 56.0], 7)
    np.testing.assert_array_equal(x, expected_x)
    np.testing.assert_allclose(value, _model(expected_x, expected_y) + 1.0)
    y, value = column["samples within 16 px"]
    np.testing.assert_array_equal(y, np.repeat(np.arange(8.0, 96.0, 16.0), 2))  # x = 56 and 72 in each row
    assert fig._suptitle.get_text() == "f gradient: range -4 to 6"


def test_gradient_graph_of_a_colour_frame_draws_each_channels_profile(tmp_path):
    yy, xx = np.mgrid[0:96, 0:128].astype(float)
    model = np.stack([_model(xx, yy, c) for c in range(3)]).astype(np.float32)
    samples = pd.concat([_gradient_samples(c) for c in range(3)], ignore_index=True)
    fig = gradient_graph(model, samples, tmp_path / "g.png")
    row = _lines(fig.axes[0])
    for channel in range(3):
        np.testing.assert_allclose(row[f"ch{channel} G along row 48"][1], model[channel, 48], rtol=1e-6)
    # no range given: the model's own smallest and largest values
    assert fig._suptitle.get_text() == f" gradient: range {model.min():.4g} to {model.max():.4g}"


def _outlines(ax) -> dict[str, np.ndarray]:
    """The drawn boxes' corners by edge colour, (boxes, 4, 2) in pixels."""
    from matplotlib.colors import to_hex

    drawn = {}
    for patch in ax.patches:
        assert isinstance(patch, PathPatch)
        vertices = patch.get_path().vertices.reshape(-1, 5, 2)[:, :4]
        drawn[to_hex(patch.get_edgecolor())] = vertices
    return drawn


def test_sample_map_draws_every_box_in_its_statuss_colour(tmp_path):
    from matplotlib.colors import to_hex

    frame = np.tile(np.arange(1.0, 151.0), (100, 1)).astype(np.float32)
    frame[:, :10] = 0.0  # no data
    samples = pd.DataFrame(
        {
            "x": [20.0, 60.0, 100.0, 140.0, 5.0],
            "y": [50.0, 50.0, 50.0, 50.0, 50.0],
            "box_px": 20,
            "status": ["used", "used", "ratio_outlier", "too_few_pixels", "no_data"],
        }
    )
    fig = sample_map(frame, samples, tmp_path / "map.png", title="f")
    assert (tmp_path / "map.png").read_bytes()[:8] == PNG
    (ax,) = fig.axes
    boxes = _outlines(ax)
    assert set(boxes) == {to_hex(COLOURS[s]) for s in ("used", "ratio_outlier", "too_few_pixels", "no_data")}
    # corners: centre -+ 10 px
    np.testing.assert_allclose(boxes[to_hex("tab:blue")][:, :, 0].min(axis=1), [10.0, 50.0])
    np.testing.assert_allclose(boxes[to_hex("tab:blue")][0], [[10, 40], [30, 40], [30, 60], [10, 60]])
    np.testing.assert_allclose(boxes[to_hex("tab:red")][0], [[90, 40], [110, 40], [110, 60], [90, 60]])
    np.testing.assert_allclose(boxes[to_hex("black")][0], [[-5, 40], [15, 40], [15, 60], [-5, 60]])
    # the frame, arcsinh-stretched between its 1st and 99.5th percentiles of the pixels with data
    # pixel (x, y) at data coordinates (x, y), as the boxes are
    assert ax.images[0].origin == "lower" and ax.images[0].get_extent() == [-0.5, 149.5, -0.5, 99.5]
    image = np.asarray(ax.images[0].get_array())
    assert image.shape == frame.shape
    assert not image[:, :10].any()
    assert image[0, 10] == 0.0 and image[0, -1] == 1.0
    assert np.all(np.diff(image[0, 10:]) >= 0)
    assert ax.get_title() == "f samples: no_data 1, ratio_outlier 1, too_few_pixels 1, used 2"


def test_sample_map_draws_a_colour_frames_box_once_with_any_channels_reason(tmp_path):
    from matplotlib.colors import to_hex

    frame = np.ones((3, 100, 150), dtype=np.float32)
    one = pd.DataFrame({"x": [20.0, 60.0], "y": [50.0, 50.0], "box_px": 20, "status": ["used", "used"]})
    samples = pd.concat([one.assign(channel=c) for c in range(3)], ignore_index=True)
    samples.loc[5, "status"] = "ratio_outlier"  # the box at x = 60 in channel 2
    fig = sample_map(frame, samples, tmp_path / "map.png")
    boxes = _outlines(fig.axes[0])
    assert {colour: len(b) for colour, b in boxes.items()} == {to_hex("tab:blue"): 1, to_hex("tab:red"): 1}
    np.testing.assert_allclose(boxes[to_hex("tab:red")][0, 0], [50.0, 40.0])
