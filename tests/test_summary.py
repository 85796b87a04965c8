"""The set-wide graph: transmission and weight of every frame against time, rejected frames marked."""

import numpy as np
import pandas as pd
import pytest

from nsgflow.summary import summary_graph


@pytest.fixture
def table() -> pd.DataFrame:
    """A summary as summary.csv has it: five frames, one rejected, one failed, out of time order."""
    return pd.DataFrame(
        {
            "frame": ["a", "b", "c", "d", "e"],
            "status": ["ok", "ok", "ok", "failed", "ok"],
            "accepted": [True, True, False, False, True],
            "scale": [1.25, 1.0, 2.5, np.nan, 1.6],
            "transmission": [0.8, 1.0, 0.4, np.nan, 0.625],
            "weight": [0.7, 1.0, 0.15, np.nan, 0.4],
            "date_obs": [
                "2024-03-01T21:10:00",
                "2024-03-01T20:40:00.5",
                "2024-03-01T22:05:00",
                None,
                "2024-03-01T23:30:00",
            ],
        }
    )


def _points(ax) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """x and y of each labelled group of dots, by label."""
    return {
        line.get_label(): (np.asarray(line.get_xdata()), np.asarray(line.get_ydata(), float))
        for line in ax.lines
        if not line.get_label().startswith("_")
    }


def test_transmission_and_weight_against_date_obs(table, tmp_path):
    fig = summary_graph(table, tmp_path / "summary.png", reference="b")
    assert (tmp_path / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    transmission, weight = (_points(ax) for ax in fig.axes)
    assert set(transmission) == {"accepted (2)", "rejected (1)", "reference (1)"}
    when = pd.to_datetime(table["date_obs"], format="ISO8601").to_numpy()
    x, y = transmission["accepted (2)"]
    np.testing.assert_array_equal(x, when[[0, 4]])
    np.testing.assert_allclose(y, 1 / table["scale"][[0, 4]])
    x, y = transmission["rejected (1)"]
    np.testing.assert_array_equal(x, when[[2]])
    np.testing.assert_allclose(y, [0.4])
    np.testing.assert_allclose(transmission["reference (1)"][1], [1.0])
    np.testing.assert_allclose(weight["accepted (2)"][1], [0.7, 0.4])
    np.testing.assert_allclose(weight["rejected (1)"][1], [0.15])
    assert fig.axes[0].get_xlabel() == "DATE-OBS (UTC)"
    assert fig._suptitle.get_text() == "5 frames: 1 rejected, 1 failed (reasons in summary.csv)"


def test_frame_order_without_date_obs(table, tmp_path):
    table.loc[4, "date_obs"] = None  # one frame with a scale but no DATE-OBS: every frame by its order
    fig = summary_graph(table, tmp_path / "summary.png", reference="b")
    transmission = _points(fig.axes[0])
    np.testing.assert_array_equal(transmission["accepted (2)"][0], [1, 5])
    np.testing.assert_array_equal(transmission["rejected (1)"][0], [3])
    np.testing.assert_array_equal(transmission["reference (1)"][0], [2])
    assert fig.axes[0].get_xlabel().startswith("frame (order in summary.csv")
