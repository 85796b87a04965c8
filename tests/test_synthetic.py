import numpy as np
import pytest
import sep

from nsgflow import synthetic, synthetic_conditions

from .conftest import moffat_enclosed


def _enclosed(stamp: np.ndarray, radius: float, offset: float) -> float:
    """Light of a stamp within ``radius`` of its star, which sits ``offset`` px from the centre pixel."""
    centre = np.array([stamp.shape[0] // 2 + offset])
    return sep.sum_circle(np.ascontiguousarray(stamp), centre, centre, radius, subpix=0)[0].item()


@pytest.mark.parametrize("aureole", [0.0, 0.1])
def test_psf_stamps_hold_the_moffat_light_and_the_aureole_share(aureole):
    """Each stamp sums to 1; the light within a radius is the (cut, renormalized) Moffat mix's."""
    spec = synthetic.FrameSpec("f", fwhm_px=3.0, beta=3.0, psf_radius_fwhm=30.0, aureole_fraction=aureole)
    stamps = synthetic.psf_stamps(spec, phases=2)
    assert stamps.sum(axis=(2, 3)) == pytest.approx(np.ones((2, 2)), abs=1e-12)
    cut = 30.0 * 3.0
    core = synthetic.moffat_alpha(3.0, 3.0)
    wide = synthetic.moffat_alpha(synthetic.AUREOLE_WIDTH * 3.0, synthetic.AUREOLE_BETA)
    for radius in (9.0, 15.0, 30.0):  # beyond the core, where the pixels' blur moves no light
        expected = (1 - aureole) * moffat_enclosed(radius, core, 3.0) / moffat_enclosed(cut, core, 3.0)
        expected += aureole * moffat_enclosed(radius, wide, 2.0) / moffat_enclosed(cut, wide, 2.0)
        assert _enclosed(stamps[0, 0], radius, -0.25) == pytest.approx(expected, abs=2e-3)


@pytest.mark.parametrize("fwhm", [1.4, 2.5])
def test_psf_stamps_average_narrow_cores_over_their_pixels(fwhm):
    """The pixels of a narrow core are their Moffat's mean to 0.05 %, by a 64 x 64-point rule."""
    spec = synthetic.FrameSpec("f", fwhm_px=fwhm, beta=4.0, psf_radius_fwhm=30.0)
    stamp = synthetic.psf_stamps(spec, phases=1)[0, 0]
    r = stamp.shape[0] // 2
    fine = (np.arange(-3, 4)[:, None] + (np.arange(64) + 0.5) / 64 - 0.5).ravel()
    alpha = synthetic.moffat_alpha(fwhm, 4.0)
    moffat = (1 + (fine[None, :] ** 2 + fine[:, None] ** 2) / alpha**2) ** -4.0
    exact = moffat.reshape(7, 64, 7, 64).mean(axis=(1, 3))
    core = stamp[r - 3 : r + 4, r - 3 : r + 4]
    assert core / core[3, 3] == pytest.approx(exact / exact[3, 3], rel=5e-4)


def test_extended_light_is_seen_through_the_frames_profile():
    """A point of nebula becomes the frame's profile (half its peak at FWHM / 2); a flat one stays flat."""
    spec = synthetic.FrameSpec("f", fwhm_px=4.0, beta=2.5)
    point = np.zeros((101, 101))
    point[50, 50] = 1.0
    seen = synthetic._blurred(point, spec)
    assert seen.sum() == pytest.approx(1.0, abs=1e-9)
    assert seen[50, 52] / seen[50, 50] == pytest.approx(0.5, abs=1e-9)
    assert synthetic._blurred(np.full((40, 60), 7.0), spec) == pytest.approx(np.full((40, 60), 7.0), abs=1e-9)
    elongated = synthetic.FrameSpec("f", fwhm_px=3.0, ellipticity=0.3, psf_radius_fwhm=8.0)
    seen = synthetic._blurred(point, elongated)
    stamp = synthetic.psf_stamps(elongated, phases=1)[0, 0]  # 49 x 49: a radius of 8 FWHM
    assert seen[26:75, 26:75] == pytest.approx(stamp, abs=1e-9)
    assert seen.sum() == pytest.approx(1.0, abs=1e-9)


def test_bright_stars_halos_are_seen_through_the_frames_profile(monkeypatch):
    """Two frames of a star with a halo, each convolved with the other's profile, are the same star.

    As on real frames, where the optics' scattered light passed the atmosphere too.
    """
    from scipy.signal import fftconvolve

    scene = synthetic.SceneSpec(shape=(201, 201), n_stars=0, n_bright=1, halo_fraction=0.05)
    monkeypatch.setattr(
        synthetic, "_bright_stars", lambda _: (np.array([100.0]), np.array([100.0]), np.array([1e7]))
    )
    specs = [
        synthetic.FrameSpec(
            name,
            fwhm_px=fwhm,
            beta=beta,
            psf_radius_fwhm=8.0,
            sky_adu=0.0,
            read_noise_adu=0.0,
            gain_e_per_adu=1e12,
            saturation_adu=1e12,
        )
        for name, fwhm, beta in (("sharp", 2.5, 4.0), ("broad", 5.0, 2.0))
    ]
    frames = [synthetic.render_frame(scene, s) - synthetic.background(scene.shape, s) for s in specs]
    profiles = [synthetic.psf_stamps(s, phases=1)[0, 0] for s in specs]
    matched = [
        fftconvolve(frames[0], profiles[1], mode="same"),
        fftconvolve(frames[1], profiles[0], mode="same"),
    ]
    yy, xx = np.mgrid[0:201, 0:201]
    halo = (np.hypot(xx - 100, yy - 100) >= 10) & (np.hypot(xx - 100, yy - 100) < 30)  # 80-2000 ADU
    assert matched[0][halo].min() > 50
    np.testing.assert_allclose(matched[0][halo], matched[1][halo], atol=0.05)  # 13-26 ADU apart if unblurred


def test_profile_conditions_spread_over_the_targets():
    scene, specs, reference = synthetic_conditions.condition_specs(["psf", "aureole"], (200, 300), 6, seed=3)
    targets = [s for s in specs if s.name != reference]
    assert sorted(s.fwhm_px for s in targets) == pytest.approx(np.linspace(1.4, 6.0, 5))
    assert sorted(s.beta for s in targets) == pytest.approx(np.linspace(2.0, 5.0, 5))
    assert sorted(s.aureole_fraction for s in targets) == pytest.approx(np.linspace(0.0, 0.1, 5))
    assert next(s for s in specs if s.name == reference).fwhm_px == 2.5
    assert all(s.psf_radius_fwhm == 30.0 for s in specs)
    assert "aureole" not in synthetic_conditions.CONDITION_SETS["extreme"]
    plain = synthetic_conditions.condition_specs([], (200, 300), 6, seed=3)[0]
    crowded = synthetic_conditions.condition_specs(["crowded"], (200, 300), 6, seed=3)[0]
    assert scene.n_stars == plain.n_stars
    assert crowded.n_stars == 3 * plain.n_stars and crowded.nebula_flux == 2000.0
