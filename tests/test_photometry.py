import numpy as np
import pandas as pd
import pytest
import sep
from scipy import integrate

from nsgflow import synthetic
from nsgflow.api import resolve_settings
from nsgflow.detect import detect_stars
from nsgflow.match import match_stars
from nsgflow.photometry import (
    annulus_background,
    aperture_fraction,
    aperture_photometry,
    frame_hlr,
    measure_photometry,
    moffat_enclosed,
    neighbour_mask,
    neighbour_radii,
    profile_fits,
    profile_fraction,
)
from nsgflow.scale import fit_scale
from nsgflow.stages import detect_frame, match_and_measure

from .conftest import moffat_star


def test_moffat_enclosed_matches_numerical_integral():
    alpha, beta, r = 2.5, 3.2, 6.0
    profile = lambda s: 2 * np.pi * s * (beta - 1) / (np.pi * alpha**2) * (1 + (s / alpha) ** 2) ** -beta  # noqa: E731
    assert moffat_enclosed(r, alpha, beta) == pytest.approx(integrate.quad(profile, 0, r)[0], rel=1e-10)


def test_aperture_measures_the_predicted_fraction():
    shape, fwhm, flux = (161, 161), 4.0, 1e6
    image = 200.0 + moffat_star(shape, 80.3, 80.6, flux, fwhm, beta=2.8)
    radius, annulus = 12.0, (18.0, 26.0)
    phot = aperture_photometry(image.astype(np.float32), np.array([80.3]), np.array([80.6]), radius, annulus)
    alpha = synthetic.moffat_alpha(fwhm, 2.8)
    expected = flux * aperture_fraction(alpha, 2.8, radius, annulus)
    # the annulus median of a wing differs slightly from its mean; well under 0.1 %
    assert phot["flux"].item() == pytest.approx(expected, rel=1e-3)
    assert not phot["nodata"].item()


def test_annulus_background_ignores_no_data_and_stars():
    rng = np.random.default_rng(0)
    image = (300.0 + rng.normal(0, 10, (100, 100))).astype(np.float32)
    image[:, :45] = 0.0  # half the annulus has no data
    image[50, 60] = 1e5  # a hot pixel in the annulus
    med, sigma, count = annulus_background(image, np.array([50.0]), np.array([50.0]), 8.0, 15.0)
    assert med.item() == pytest.approx(300.0, abs=2.0)
    assert sigma.item() == pytest.approx(10.0, rel=0.15)
    assert 0 < count.item() < np.pi * (15**2 - 8**2)


def test_masked_neighbours_leave_the_annulus_median_at_the_sky():
    """A broad neighbour in the annulus raises the median, masked it barely does; own pixels are kept."""
    rng = np.random.default_rng(1)
    sky, shape = 300.0, (120, 120)
    neighbour = moffat_star(shape, 75.0, 60.0, 4e5, fwhm=6.0)
    image = (sky + neighbour + rng.normal(0, 10, shape)).astype(np.float32)
    x, y, r_in, r_out = np.array([60.0]), np.array([60.0]), 10.0, 22.0
    plain, _, n_plain = annulus_background(image, x, y, r_in, r_out)
    assert plain.item() > sky + 3.0  # the neighbour's wing covers much of the annulus
    catalog = pd.DataFrame({"x": [60.0, 75.0], "y": [60.0, 60.0], "peak": [0.0, neighbour.max() + sky]})
    catalog["sky"] = sky
    mask, (radii,) = neighbour_mask([(image, catalog)], hlr=0.63 * 6.0, mask_sigma=2.0)
    assert radii[0] == pytest.approx(2 * 0.63 * 6.0)  # no light: the least radius, 2 half-light radii
    masked, _, n_masked = annulus_background(image, x, y, r_in, r_out, mask=mask)
    # the wing fainter than 2 sigmas stays: 2.6 ADU above the sky, against 9.2 unmasked
    assert abs(masked.item() - sky) < 0.3 * (plain.item() - sky)
    assert 0.25 * n_plain.item() < n_masked.item() < n_plain.item()
    # the star's own mask reaching into its annulus is not left out
    own, _, n_own = annulus_background(image, x, y, r_in, r_out, mask=mask, own_radius=np.array([r_out + 1]))
    assert n_own.item() == n_plain.item() and own.item() == plain.item()
    # a mask that leaves under a quarter of the annulus is not used: the median of all its pixels
    everything = np.ones(shape, bool)
    assert annulus_background(image, x, y, r_in, r_out, mask=everything)[2].item() == n_plain.item()


def test_aperture_touching_no_data_is_flagged():
    image = np.full((50, 50), 100.0, np.float32)
    image[:, :5] = 0
    phot = aperture_photometry(image, np.array([8.0, 30.0]), np.array([25.0, 25.0]), 5.0, (7.0, 10.0))
    assert phot["nodata"].tolist() == [True, False]


def test_aperture_correction_removes_seeing_bias(pair):
    ref, tgt = pair["ref"], pair["tgt"]
    cat_r, cat_t = detect_stars(ref), detect_stars(tgt)
    table, info = measure_photometry(ref, tgt, cat_r, cat_t, match_stars(cat_r, cat_t))
    used = table[table["status"] == "used"]
    assert len(used) > 60
    for beta, spec in zip(info["profile_beta"], (pair["ref_spec"], pair["tgt_spec"]), strict=True):
        assert beta == pytest.approx(spec.beta, abs=0.3)
    # the broader target loses more light: the correction is below 1 and brings the scale to the truth
    assert info["aperture_correction"] < 0.999
    raw = fit_scale(used["flux_ref"], used["flux_target"], used["flux_err_ref"], used["flux_err_target"])
    m_true = pair["tgt_spec"].scale
    corrected = raw.scale * info["aperture_correction"]
    assert abs(corrected / m_true - 1) < 0.005
    assert abs(corrected / m_true - 1) < abs(raw.scale / m_true - 1)


@pytest.mark.parametrize(("beta", "ellipticity"), [(2.5, 0.0), (4.5, 0.0), (3.0, 0.3)])
def test_profile_fits_find_the_moffat_profile_in_a_crowded_field(beta, ellipticity):
    """Fits of the brightest stars' pixels, neighbours left out, recover beta and the light fraction."""
    scene = synthetic.SceneSpec(shape=(300, 400), n_stars=1500, seed=3)
    spec = synthetic.FrameSpec(
        "f",
        fwhm_px=4.0,
        beta=beta,
        ellipticity=ellipticity,
        psf_angle_deg=30,
        psf_radius_fwhm=8,
        sky_adu=800,
        seed=5,
    )
    frame = synthetic.render_frame(scene, spec)
    catalog = detect_stars(frame)
    bright = catalog[catalog["flags"] == 0].head(60)
    hlr = frame_hlr(catalog)
    radius = 4 * hlr
    annulus = (1.5 * radius, 2.2 * radius)
    x, y = bright["x"].to_numpy(), bright["y"].to_numpy()
    background = aperture_photometry(frame, x, y, radius, annulus)["bkg"].to_numpy()
    (radii,) = neighbour_radii([(frame, catalog)], hlr, 2.0)
    fits = profile_fits(frame, x, y, background, radius, hlr, catalog[["x", "y"]].to_numpy(), radii, annulus)
    good = np.isfinite(fits).all(axis=1)
    assert good.sum() >= 30
    assert np.median(fits[good, 1]) == pytest.approx(beta, abs=0.3)
    # axis ratio from the fitted quadratic form's eigenvalues (determinant 1)
    g = np.hypot(fits[good, 2], fits[good, 3])
    assert np.median(1 - (np.sqrt(1 + g**2) - g)) == pytest.approx(ellipticity, abs=0.05)
    # the fraction the aperture measures, against the rendered profile's own (its stamps sum to 1):
    # the light in the aperture less the aperture's area times the annulus's mean (in noise its median)
    stamp = synthetic.psf_stamps(spec)[4, 4]
    centre = np.array([stamp.shape[0] // 2 + 1 / 16])
    image = np.pad(stamp, 80)
    centre += 80
    inside = sep.sum_circle(image, centre, centre, radius, subpix=0)[0].item()
    ring = sep.sum_circann(image, centre, centre, *annulus, subpix=0)[0].item()
    truth = inside - ring * radius**2 / (annulus[1] ** 2 - annulus[0] ** 2)
    fraction, sigma = profile_fraction(fits, radius, annulus)
    assert fraction == pytest.approx(truth, abs=max(3 * sigma, 5e-4))
    assert 0 < sigma < 0.005
    assert profile_fraction(fits[np.flatnonzero(good)[:4]], radius, annulus) is None  # too few stars


def test_at_most_max_stars_are_measured_the_brightest(pair):
    ref, tgt = pair["ref"], pair["tgt"]
    cat_r, cat_t = detect_stars(ref), detect_stars(tgt)
    pairs = match_stars(cat_r, cat_t)
    assert len(pairs) > 50
    table, _ = measure_photometry(ref, tgt, cat_r, cat_t, pairs, max_stars=50)
    assert len(table) == 50
    brightest = cat_r.iloc[np.sort(pairs["ref_index"].to_numpy())[:50]]
    assert table["ref_id"].tolist() == brightest["id"].tolist()


@pytest.mark.parametrize("colour", [False, True], ids=["mono", "colour"])
def test_defects_found_at_detection_give_the_same_photometry(colour, monkeypatch):
    """The workflow finds each frame's defects once, at detection: photometry then equals a fresh search."""
    scene = synthetic.SceneSpec(shape=(200, 300), n_stars=400, seed=4)
    specs = [
        synthetic.FrameSpec("ref", fwhm_px=2.6, hot_pixels=40, cosmic_rays=6, seed=1),
        synthetic.FrameSpec("tgt", scale=1.3, fwhm_px=3.4, hot_pixels=40, cosmic_rays=6, seed=2),
    ]
    frames = [
        np.stack([synthetic.render_frame(scene, c) for c in synthetic.channel_specs(s)])
        if colour
        else synthetic.render_frame(scene, s)
        for s in specs
    ]
    settings = resolve_settings()
    (cat_r, _, defects_r), (cat_t, _, defects_t) = (detect_frame(f, None, settings["detect"]) for f in frames)
    # every channel's defects: the hot pixels stand out in each channel
    assert sorted(set(defects_t["channel"])) == ([0, 1, 2] if colour else [0])
    assert (defects_t.groupby("channel").size() >= 40).all()
    searched = match_and_measure(*frames, cat_r, cat_t, settings["match"], settings["photometry"])

    def no_search(data):
        raise AssertionError("defects searched again")

    monkeypatch.setattr("nsgflow.defects.find_defects", no_search)
    known = match_and_measure(
        *frames, cat_r, cat_t, settings["match"], settings["photometry"], defects=[defects_r, defects_t]
    )
    pd.testing.assert_frame_equal(known[0], searched[0])
    assert known[1] == searched[1]


PROFILES = {  # reference and target profiles: (FWHM px, beta, ellipticity)
    "beta 2 against 4.5": ((2.5, 2.0, 0.0), (3.5, 4.5, 0.0)),
    "beta 4.5 against 2": ((2.5, 4.5, 0.0), (3.5, 2.0, 0.0)),
    "elongated": ((2.5, 3.0, 0.05), (3.5, 3.0, 0.3)),
    "undersampled": ((2.5, 3.5, 0.0), (1.5, 2.5, 0.1)),
}


@pytest.mark.parametrize("case", list(PROFILES))
def test_scale_holds_when_the_frames_star_profiles_differ(case):
    """Each frame's own profile: the scale within 0.3 % of the truth and within 3 of its reported sigmas."""
    import nsgflow

    scene = synthetic.SceneSpec(shape=(400, 600), n_stars=1500, seed=11)
    frames = [
        synthetic.render_frame(
            scene,
            synthetic.FrameSpec(
                name,
                scale=scale,
                fwhm_px=fwhm,
                beta=beta,
                ellipticity=ellipticity,
                psf_angle_deg=40.0,
                psf_radius_fwhm=30.0,
                sky_adu=600.0,
                seed=seed,
            ),
        )
        for name, scale, seed, (fwhm, beta, ellipticity) in zip(
            ("ref", "tgt"), (1.0, 1.3), (1, 2), PROFILES[case], strict=True
        )
    ]
    result = nsgflow.normalize(frames[1], frames[0])
    error = result.scale / 1.3 - 1
    assert abs(error) < 0.003
    assert abs(error) < 3 * result.scale_err / result.scale
