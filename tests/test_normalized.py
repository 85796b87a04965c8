import numpy as np
from astropy.io import fits

from nsgflow.normalized import normalize_frame, normalized_header


def test_scale_and_subtract_without_clipping():
    data = np.array([[0.0, 1.0], [2.0, 70000.0]], np.float32)
    gradient = np.array([[5.0, 5.0], [10.0, -3.0]], np.float32)
    out = normalize_frame(data, 1.5, gradient)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [[0.0, -3.5], [-7.0, 105003.0]])


def test_header_keeps_input_and_adds_keywords():
    header = fits.Header({"OBJECT": "M31", "EXPTIME": 120.0})
    out = normalized_header(
        header, scale=1.2345, scale_err=0.001, reference="ref.fits", history=["nsgflow 0.1: settings"]
    )
    assert out["OBJECT"] == "M31" and out["NSGSCALE"] == 1.2345 and out["NSGSERR"] == 0.001
    assert out["NSGREF"] == "ref.fits"
    assert "nsgflow 0.1: settings" in str(out["HISTORY"])
    assert "NSGSCALE" not in header
