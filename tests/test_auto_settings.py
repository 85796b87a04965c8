"""Automatic settings (aperture, sample box, star-mask radius) from star sizes and FOCALLEN/XPIXSZ."""

import numpy as np
import pandas as pd
import pytest

from nsgflow import normalize
from nsgflow.api import default_settings
from nsgflow.sample_settings import image_scale, resolved_settings, star_fwhm, star_mask_radii

SAMPLES = {**default_settings()["samples"], "star_mask_sigma": 1.0}  # faint stars above the minimum
OPTICS = {"hlr_px": None, "focallen": 1000.0, "xpixsz": 4.0, "noise": 10.0}


def _stars(n=5, hlr=2.0, saturated=()):
    flags = np.zeros(n, int)
    flags[list(saturated)] = 1
    return pd.DataFrame(
        {
            "x": np.arange(n) * 30.0,
            "y": np.full(n, 50.0),
            "flux": np.geomspace(1e3, 1e6, n),
            "peak": np.geomspace(1e2, 1e5, n) + 500,
            "sky": np.full(n, 500.0),
            "hlr_px": np.full(n, hlr),
            "flags": flags,
        }
    )


def test_image_scale_sets_the_star_size_when_no_star_is_measured():
    # 4 um pixels at 1000 mm: 4e-3 mm / 1000 mm = 4e-6 rad, x 206264.8 arcsec/rad = 0.825059 arcsec/px
    assert image_scale(OPTICS) == pytest.approx(0.825059, rel=1e-6)
    # 2.5 arcsec of typical seeing / 0.825059 arcsec/px = 3.030086 px
    assert star_fwhm([OPTICS]) == (pytest.approx(3.030086, rel=1e-6), "2.5 arcsec seeing at 0.83 arcsec/px")
    # measured star sizes win over the optics: half-light radius 1.26 px / 0.63 = FWHM 2.0 px
    assert star_fwhm([{**OPTICS, "hlr_px": 1.26}]) == (pytest.approx(2.0), "measured star size")
    assert star_fwhm([{"hlr_px": None}])[0] is None


def test_star_mask_radius_auto_grows_with_peak_and_can_be_set_by_hand():
    stars = _stars(saturated=[4])
    auto = star_mask_radii(stars, {"noise": 10.0}, SAMPLES)
    assert np.all(np.diff(auto[:4]) > 0)  # brighter stars are masked further out
    assert auto.min() >= 2 * 2.0  # at least two half-light radii
    by_hand = star_mask_radii(stars, {"noise": 10.0}, {**SAMPLES, "star_radius_px": 7.0})
    np.testing.assert_array_equal(by_hand, [7.0, 7.0, 7.0, 7.0, 14.0])  # saturated_growth 2 for the saturated
    # no measurable star size: the image scale gives it
    no_size = _stars(hlr=np.nan)
    # (growth 1: the faintest star's radius is then the floor of two half-light radii)
    from_optics = star_mask_radii(no_size, OPTICS, {**SAMPLES, "star_growth": 1.0})
    assert np.all(np.isfinite(from_optics))
    # FWHM 3.030086 px (2.5 arcsec at 0.825059 arcsec/px) x 0.63 = half-light radius 1.908954 px,
    # x 2 = 3.817908
    assert from_optics.min() == pytest.approx(3.817908, rel=1e-6)


def test_resolved_settings_record_every_automatic_value():
    stats = [{"hlr_px": 2.0, "noise": 10.0, "focallen": 1000.0, "xpixsz": 4.0}, {"hlr_px": 1.5, "noise": 8.0}]
    resolved = resolved_settings([_stars(), _stars(hlr=1.5)], stats, SAMPLES)
    # 206264.8 arcsec/rad x 4e-3 mm / 1000 mm
    assert resolved["image_scale_arcsec_per_px"] == pytest.approx(0.825059, rel=1e-6)
    # the broader frame's half-light radius 2.0 px / 0.63 = FWHM 3.1746 px, measured: the optics are not used
    assert resolved["star_fwhm_px"] == pytest.approx(3.1746, rel=1e-4)
    assert resolved["star_fwhm_from"] == "measured star size"
    # 8 FWHMs = 25.4 px, rounded up to a multiple of 8 px
    assert resolved["sample_box_px"] == 32
    radius = resolved["star_mask_radius_px"]
    assert radius["min"] <= radius["median"] <= radius["max"] and radius["from"].startswith("auto")


def test_settings_by_hand_are_used(pair):
    auto = normalize(pair["tgt"], pair["ref"])
    # photometry.aperture_hlr (4) half-light radii of the two frames' profiles convolved with each other:
    # FWHMs 2.8 and 4.2 px, half-light radii 0.63 x FWHM (Moffat beta 3) added in quadrature,
    # 4 x 0.63 x hypot(2.8, 4.2) = 4 x 0.63 x 5.0478 = 12.72 px (12.64 from the fitted profiles)
    assert auto.aperture["aperture_radius_px"] == pytest.approx(12.72, rel=0.02)
    by_hand = normalize(
        pair["tgt"],
        pair["ref"],
        photometry={"aperture_px": 14.0},
        samples={"box_px": 40, "star_radius_px": 9.0},
    )
    assert by_hand.aperture["aperture_radius_px"] == 14.0
    assert (by_hand.samples["box_px"] == 40).all()
    assert abs(by_hand.scale / pair["tgt_spec"].scale - 1) < 0.005
