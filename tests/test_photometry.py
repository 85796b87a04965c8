import numpy as np
import pandas as pd
import pytest
from scipy import integrate

from nsgflow import synthetic
from nsgflow.api import resolve_settings
from nsgflow.detect import StarFlag, detect_stars
from nsgflow.errors import FrameError
from nsgflow.match import match_stars
from nsgflow.neighbours import annulus_background, neighbour_mask
from nsgflow.photometry import aperture_photometry, measure_photometry, psf_matched_photometry
from nsgflow.profiles import psf_image
from nsgflow.stages import detect_frame, match_and_measure

from .conftest import moffat_enclosed, moffat_star


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
    wing = moffat_enclosed(annulus[1], alpha, 2.8) - moffat_enclosed(annulus[0], alpha, 2.8)
    expected = flux * (
        moffat_enclosed(radius, alpha, 2.8) - radius**2 * wing / (annulus[1] ** 2 - annulus[0] ** 2)
    )
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


def test_a_plane_through_a_lopsided_annulus_finds_a_sloping_sky_at_the_centre():
    """Neighbours masked on one side: the annulus median misses a sloping sky at the centre, a plane not."""
    yy, xx = np.mgrid[0:80, 0:80].astype(float)
    image = (500.0 + 3.0 * (xx - 40.0) + 1.0 * (yy - 40.0)).astype(np.float64)
    mask = xx > 45  # neighbours' pixels on one side
    args = (image, np.array([40.3]), np.array([39.8]), 10.0, 20.0)
    median, _, _ = annulus_background(*args, mask=mask)
    plane, _, _ = annulus_background(*args, mask=mask, plane=True)
    truth = 500.0 + 3.0 * 0.3 - 1.0 * 0.2
    assert abs(median.item() - truth) > 10.0
    assert plane.item() == pytest.approx(truth, abs=1e-6)


def _moffat_frame(shape, stars, profile, sky, seed):
    """Stars of one elliptical Moffat ``profile`` (alpha, beta, g1, g2) on a sky with noise."""
    stamp = psf_image(profile, 30)
    frame = np.full(shape, sky)
    for x, y, flux in stars:
        ix, iy = round(x), round(y)
        frame[iy - 30 : iy + 31, ix - 30 : ix + 31] += flux * stamp
    return frame + np.random.default_rng(seed).normal(0, np.sqrt(sky), shape)


def test_psf_matched_photometry_measures_both_frames_alike():
    """A beta-2 profile against a sharper beta-4.5 one, stars blended in pairs: their ratio is the scale."""
    rng = np.random.default_rng(3)
    shape, m = (300, 400), 1.3
    xy = rng.uniform(60, [340, 240], (40, 2)).round()  # on pixel centres, as the profile images are
    neighbours = xy + rng.choice([-4.0, 4.0], (40, 2))  # each star blended with a neighbour
    flux = rng.uniform(2e4, 2e5, 40)
    stars = [
        (x, y, f)
        for (x, y), f in zip(np.vstack([xy, neighbours]), np.concatenate([flux, flux / 3]), strict=True)
    ]
    profiles = [np.array([2.0, 4.5, 0.0, 0.0]), np.array([3.5, 2.0, 0.2, -0.1])]
    ref = _moffat_frame(shape, stars, profiles[0], 300.0, 1)
    tgt = _moffat_frame(shape, [(x, y, f / m) for x, y, f in stars], profiles[1], 300.0, 2)
    kernels = [psf_image(profiles[1], 40), psf_image(profiles[0], 40)]
    measured, disagreement = psf_matched_photometry(
        (ref, tgt), xy[:, 0], xy[:, 1], kernels, 12.0, (18.0, 26.0), (17.3, 17.3)
    )
    assert np.nanmax(disagreement) < 2.0  # nothing but noise differs between the convolved frames
    ratio = measured[0]["flux"] / measured[1]["flux"]
    assert np.median(ratio) == pytest.approx(m, rel=2e-3)
    # the same aperture on the frames as they are: the broad frame loses more light, the ratio is off
    plain = [aperture_photometry(f, xy[:, 0], xy[:, 1], 12.0, (18.0, 26.0))["flux"] for f in (ref, tgt)]
    assert np.median(plain[0] / plain[1]) > 1.02 * m


def test_at_most_max_stars_are_measured_the_brightest(pair):
    ref, tgt = pair["ref"], pair["tgt"]
    cat_r, cat_t = detect_stars(ref), detect_stars(tgt)
    pairs = match_stars(cat_t, cat_r)
    assert len(pairs) > 50
    table, _ = measure_photometry(tgt, ref, cat_t, cat_r, pairs, max_stars=50)
    assert len(table) == 50
    brightest = cat_r.iloc[np.sort(pairs["ref_index"].to_numpy())[:50]]
    assert table["ref_id"].tolist() == brightest["id"].tolist()


def test_apertures_larger_than_the_frame_are_an_error_not_minutes_of_work(pair):
    """A frame whose "stars" are 200 px wide has no star an aperture fits around: say so at once."""
    ref, tgt = pair["ref"], pair["tgt"]
    cat_r, cat_t = detect_stars(ref), detect_stars(tgt)
    pairs = match_stars(cat_t, cat_r)
    cat_t["hlr_px"] = 200.0
    with pytest.raises(FrameError, match=r"apertures \(\d+ px.* do not fit in a frame of"):
        measure_photometry(tgt, ref, cat_t, cat_r, pairs)


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
    searched = match_and_measure(*frames[::-1], cat_t, cat_r, settings["match"], settings["photometry"])

    def no_search(data):
        raise AssertionError("defects searched again")

    monkeypatch.setattr("nsgflow.defects.find_defects", no_search)
    known = match_and_measure(
        *frames[::-1], cat_t, cat_r, settings["match"], settings["photometry"], defects=[defects_t, defects_r]
    )
    pd.testing.assert_frame_equal(known[0], searched[0])
    assert known[1] == searched[1]


PROFILES = {  # reference and target profiles: (FWHM px, beta, ellipticity)
    "beta 2 against 4.5": ((2.5, 2.0, 0.0), (3.5, 4.5, 0.0)),
    "beta 4.5 against 2": ((2.5, 4.5, 0.0), (3.5, 2.0, 0.0)),
    "elongated": ((2.5, 3.0, 0.05), (3.5, 3.0, 0.3)),
    "undersampled": ((2.5, 3.5, 0.0), (1.5, 2.5, 0.1)),
}


def _profile_case(case: str):
    """Scale error and relative uncertainty of a target (scale 1.3) against a reference, as PROFILES[case]."""
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
    return result.scale / 1.3 - 1, result.scale_err / result.scale


@pytest.mark.parametrize("case", list(PROFILES))
def test_scale_uncertainty_covers_the_truth_when_the_star_profiles_differ(case):
    error, sigma = _profile_case(case)
    assert abs(error) < 3 * sigma
    assert sigma < 0.02


@pytest.mark.parametrize("case", list(PROFILES))
def test_scale_holds_when_the_frames_star_profiles_differ(case):
    """Each frame's own profile: the scale within 0.3 % of the truth."""
    error, _ = _profile_case(case)
    assert abs(error) < 0.003


def test_a_broad_frames_profile_is_fitted_where_neighbours_crowd_nearly_every_star():
    """A beta-2 target, FWHM 6 px, on a crowded low sky: most stars' pixels are half a neighbour's.

    Fitted only to stars with half their pixels clear of neighbours, each
    frame's profile rests on 9-13 stars here; with a quarter clear as a last
    resort, on over 20, and the target's wings still come out right.
    """
    import nsgflow

    scene = synthetic.SceneSpec(shape=(400, 600), n_stars=5000, seed=2)
    frames = [
        synthetic.render_frame(
            scene,
            synthetic.FrameSpec(name, m, fwhm, beta, sky_adu=400.0, psf_radius_fwhm=30.0, seed=seed),
        )
        for name, m, fwhm, beta, seed in (("ref", 1.0, 2.5, 3.0, 12), ("tgt", 1.25, 6.0, 2.0, 22))
    ]
    result = nsgflow.normalize(frames[1], frames[0])
    assert min(result.aperture["profile_stars"]) >= 20
    assert result.aperture["profile"][1][1] == pytest.approx(2.0, abs=0.05)
    assert abs(result.scale / 1.25 - 1) < 3 * result.scale_err / result.scale


def test_stars_beside_a_trail_in_one_frame_are_left_out(pair):
    """A satellite trail in the reference: the stars whose annulus it crosses, and few others, disagree."""
    ref, tgt = pair["ref"], pair["tgt"]
    cat_r, cat_t = detect_stars(ref), detect_stars(tgt)
    pairs = match_stars(cat_t, cat_r)
    yy, xx = np.mgrid[0 : ref.shape[0], 0 : ref.shape[1]]
    angle, through = np.deg2rad(25.0), (0.5 * ref.shape[1], 0.4 * ref.shape[0])
    distance = (xx - through[0]) * np.sin(angle) - (yy - through[1]) * np.cos(angle)
    trailed = np.where(ref != 0, ref + 300.0 * np.exp(-0.5 * (distance / 1.5) ** 2), 0.0).astype(np.float32)
    clean, info = measure_photometry(tgt, ref, cat_t, cat_r, pairs)
    crossed, _ = measure_photometry(tgt, trailed, cat_t, cat_r, pairs)
    assert (clean["status"] == "frames_disagree").mean() < 0.02
    star = (clean["x_ref"] - through[0]) * np.sin(angle) - (clean["y_ref"] - through[1]) * np.cos(angle)
    reach, flagged = info["annulus_px"][1], crossed["status"] == "frames_disagree"
    measured = clean["status"] == "used"
    assert flagged[measured & (np.abs(star) < reach - 3)].mean() > 0.9
    assert flagged[measured & (np.abs(star) > reach + 15)].mean() < 0.02


def _clipped_field(profile, scale, stars, seed, clip=50000.0, sky=400.0):
    """Stars ``(x, y, flux, stamp half-size)`` of one ``profile`` on a sky with noise, clipped at ``clip``."""
    shape = (360, 480)
    frame = np.full(shape, sky)
    for x, y, flux, half in stars:
        stamp = psf_image(profile, half)
        ix, iy = round(x), round(y)
        y0, y1 = max(iy - half, 0), min(iy + half + 1, shape[0])
        x0, x1 = max(ix - half, 0), min(ix + half + 1, shape[1])
        frame[y0:y1, x0:x1] += (
            flux / scale * stamp[y0 - iy + half : y1 - iy + half, x0 - ix + half : x1 - ix + half]
        )
    frame += np.random.default_rng(seed).normal(0, np.sqrt(frame))
    return np.minimum(frame, clip).astype(np.float32)


#: A sharp beta-4.5 reference's and a broad, elongated beta-2.5 target's profile (alpha, beta, g1, g2).
CLIPPED_PROFILES = (np.array([3.06, 4.5, 0.0, 0.0]), np.array([4.4, 2.5, -0.04, -0.22]))


def _clipped_pair(stars, m):
    """Reference and target (scale ``m``) of ``stars`` (:func:`_clipped_field`), each with its detection."""
    settings = resolve_settings()
    frames = [
        _clipped_field(p, s, stars, seed)
        for p, s, seed in zip(CLIPPED_PROFILES, (1.0, m), (1, 2), strict=True)
    ]
    return [(frame, *detect_frame(frame, None, settings["detect"])) for frame in frames]


def _clipped_photometry(pair, with_stats=True):
    """:func:`match_and_measure` of a :func:`_clipped_pair`, with or without the frames' statistics."""
    (ref, ref_catalog, ref_stats, ref_defects), (tgt, tgt_catalog, tgt_stats, tgt_defects) = pair
    settings = resolve_settings()
    return match_and_measure(
        tgt,
        ref,
        tgt_catalog,
        ref_catalog,
        settings["match"],
        settings["photometry"],
        defects=[tgt_defects, ref_defects],
        stats=[tgt_stats, ref_stats] if with_stats else None,
    )


def test_neighbours_of_clipped_stars_are_measured_with_the_cores_rebuilt():
    """Two saturated stars, clipped in both frames, each with 12 neighbours 50 px away: their ratios are m.

    Convolved with the broad target's profile, the light the sharp
    reference's clipped core lacks reaches the neighbours' apertures and
    annuli: measured as clipped, every neighbour's ratio is 2-14 % high.
    """
    m = 1.3
    bright = np.array([[120.0, 180.0], [360.0, 180.0]])
    angles = np.deg2rad(np.arange(0, 360, 30))
    ring = np.vstack([b + 50 * np.column_stack([np.cos(angles), np.sin(angles)]) for b in bright]).round()
    rng = np.random.default_rng(7)
    stars = [(x, y, 1e7, 170) for x, y in bright]
    stars += [(x, y, f, 40) for (x, y), f in zip(ring, rng.uniform(1e5, 3e5, len(ring)), strict=True)]
    grid_x, grid_y = np.meshgrid(np.arange(30, 460, 48), [30.0, 330.0])  # more stars for the profile fits
    stars += [
        (x, y, f, 40)
        for x, y, f in zip(grid_x.ravel(), grid_y.ravel(), rng.uniform(1e5, 3e5, grid_x.size), strict=True)
    ]
    pair = _clipped_pair(stars, m)
    errors = {}
    for with_stats in (False, True):
        table, info = _clipped_photometry(pair, with_stats)
        distance = np.hypot(
            table["x_ref"].to_numpy()[:, None] - bright[:, 0],
            table["y_ref"].to_numpy()[:, None] - bright[:, 1],
        )
        near = table[(distance.min(axis=1) > 40) & (distance.min(axis=1) < 60) & (table["status"] == "used")]
        assert len(near) == 24
        errors[with_stats] = (near["flux_ref"] / near["flux_target"] / m - 1).to_numpy()
        assert info["cores_rebuilt"] == ([2, 2] if with_stats else [0, 0])
    assert abs(np.median(errors[True])) < 0.005
    assert np.percentile(np.abs(errors[True]), 90) < 0.02
    assert np.min(errors[False]) > 0.01  # clipped as they are: every neighbour's ratio is high


def test_a_broad_frames_profile_is_fitted_to_the_stars_a_sharp_reference_saturates():
    """Stars clipped in the sharp reference are the broad target's brightest: its profile fits them."""
    grid_x, grid_y = np.meshgrid(np.arange(40, 450, 58.0), np.arange(40, 330, 58.0))
    bright = np.arange(grid_x.size) % 2 == 0  # every other star clipped in the reference
    flux = np.where(bright, 1e6, 1e5) * np.random.default_rng(3).uniform(0.7, 1.5, grid_x.size)
    stars = [(x, y, f, 40) for x, y, f in zip(grid_x.ravel(), grid_y.ravel(), flux, strict=True)]
    pair = _clipped_pair(stars, 1.3)
    (_, ref_catalog, _, _), (_, tgt_catalog, _, _) = pair
    assert ((ref_catalog["flags"].to_numpy() & int(StarFlag.SATURATED)) != 0).sum() == bright.sum()
    assert not (tgt_catalog["flags"].to_numpy() & int(StarFlag.SATURATED)).any()
    _, info = _clipped_photometry(pair)
    assert info["profile_stars"][1] >= len(stars) - 2
    assert info["profile_stars"][0] <= (~bright).sum()
    assert info["profile"][1][1] == pytest.approx(2.5, abs=0.05)
