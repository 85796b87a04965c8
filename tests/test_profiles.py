import numpy as np
import pytest

from nsgflow import profiles, synthetic
from nsgflow.detect import detect_stars
from nsgflow.neighbours import neighbour_radii
from nsgflow.photometry import aperture_photometry, frame_hlr
from nsgflow.profiles import (
    ASSUMED_PROFILE_ERROR,
    PROFILE_SYSTEMATIC,
    matched_fraction,
    on_smooth_sky,
    profile_covariance,
    profile_error,
    profile_fits,
    profile_pixels,
)


def test_matched_fraction_is_symmetric_and_tends_to_one():
    a, b = np.array([2.0, 4.5, 0.0, 0.0]), np.array([3.5, 2.5, 0.2, -0.1])
    small = matched_fraction([a, b], 6.0, (9.0, 13.0), 60)
    assert small == pytest.approx(matched_fraction([b, a], 6.0, (9.0, 13.0), 60), rel=1e-9)
    assert 0.5 < small < matched_fraction([a, b], 20.0, (30.0, 44.0), 60) < 1.0
    # beta 2.5 wings: light beyond 20 px, and the wing in the annulus, about 1.5 % together
    assert matched_fraction([a, b], 20.0, (30.0, 44.0), 60) == pytest.approx(0.985, abs=0.01)


def test_profile_error_follows_the_profiles_uncertainty():
    """A beta-2 profile known to 0.05 in beta leaves the scale uncertain by a percent; known exactly, 0."""
    a, b = np.array([2.0, 4.5, 0.0, 0.0]), np.array([3.5, 2.0, 0.0, 0.0])
    exact = np.zeros((4, 4))
    beta_known = np.diag([0.0, 0.05**2, 0.0, 0.0])
    radius, annulus = 10.0, (15.0, 22.0)
    assert profile_error([a, b], [exact, exact], radius, annulus, 60) == 0.0
    error = profile_error([a, b], [exact, beta_known], radius, annulus, 60)
    moved = matched_fraction([a, b + np.array([0, 0.05, 0, 0])], radius, annulus, 60)
    assert error == pytest.approx(abs(moved / matched_fraction([a, b], radius, annulus, 60) - 1), rel=0.1)
    assert 0.003 < error < 0.03
    # from the stars' scatter: 50 stars with beta spread 0.2 give 0.2 / sqrt(50), and the systematic error
    rng = np.random.default_rng(0)
    fits = np.column_stack([np.full(50, 3.5), 2.0 + 0.2 * rng.standard_normal(50), np.zeros((50, 2))])
    expected = np.hypot(0.2 / np.sqrt(50), PROFILE_SYSTEMATIC[1])
    assert np.sqrt(profile_covariance(fits, b)[1, 1]) == pytest.approx(expected, rel=0.1)
    assert np.sqrt(profile_covariance(fits, b)[0, 0]) == pytest.approx(PROFILE_SYSTEMATIC[0] * 3.5, rel=0.01)
    # too few stars: the profile was assumed, and is uncertain as seeing is
    assert np.sqrt(np.diag(profile_covariance(fits[:4], b))) == pytest.approx(
        ASSUMED_PROFILE_ERROR * [3.5, 1, 1, 1]
    )


def _integrated_star(fwhm: float, beta: float, offset: tuple[float, float], half: int) -> np.ndarray:
    """A round Moffat of unit peak ``offset`` from the centre pixel, each pixel the mean of 32 x 32 points."""
    fine = (np.arange(-half, half + 1)[:, None] + (np.arange(32) + 0.5) / 32 - 0.5).ravel()
    alpha = synthetic.moffat_alpha(fwhm, beta)
    r2 = (fine[None, :] - offset[0]) ** 2 + (fine[:, None] - offset[1]) ** 2
    n = 2 * half + 1
    return ((1 + r2 / alpha**2) ** -beta).reshape(n, 32, n, 32).mean(axis=(1, 3))


@pytest.mark.parametrize(("fwhm", "beta"), [(1.4, 3.0), (1.4, 5.0), (2.5, 4.5), (6.0, 2.0)])
def test_profile_fits_integrate_narrow_cores_over_their_pixels(fwhm, beta):
    """Noise-free stars, from undersampled to broad: beta and alpha as rendered, to 0.3 %."""
    half = int(12 * fwhm)
    offset = (0.37, -0.21)
    frame = 100.0 + 1e5 * _integrated_star(fwhm, beta, offset, half)
    x, y = np.array([half + offset[0]]), np.array([half + offset[1]])
    hlr = 0.63 * fwhm
    fits = profile_fits(frame, x, y, np.array([100.0]), 6 * hlr, hlr, np.zeros((0, 2)), np.zeros(0))
    assert fits[0, 1] == pytest.approx(beta, rel=0.003)
    assert fits[0, 0] == pytest.approx(synthetic.moffat_alpha(fwhm, beta), rel=0.003)


def test_misfits_are_one_for_stars_the_profile_fits_and_large_for_an_unresolved_pair():
    """Noise of sky and star light (gain 1): model stars have misfit 1, a star with a 20 % companion more."""
    rng = np.random.default_rng(4)
    alpha, beta = synthetic.moffat_alpha(4.0, 3.0), 3.0
    oy, ox = (g.ravel().astype(float) for g in np.mgrid[-15:16, -15:16])
    n = 40
    params = np.zeros((n, 8))
    params[:, 2] = np.log(rng.uniform(2e3, 2e4, n))
    params[:, 3:5] = np.log(alpha), beta
    model = np.exp(params[:, 2:3]) * profile_pixels(np.array([alpha, beta, 0, 0]), ox, oy)[None, :]
    light = model.copy()
    light[0] += 0.2 * np.exp(params[0, 2]) * profile_pixels(np.array([alpha, beta, 0, 0]), ox - 4, oy)
    light += rng.standard_normal(light.shape) * np.sqrt(100.0 + model)
    offsets = (np.tile(ox, (n, 1)), np.tile(oy, (n, 1)))
    misfit = profiles._misfits(params, model, offsets, light, np.ones_like(light))
    assert np.median(misfit[1:]) == pytest.approx(1.0, abs=0.1)
    assert misfit[0] > 5 * np.median(misfit[1:])


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
    neighbours = catalog[["x", "y"]].to_numpy()
    fits, joint = profile_fits(frame, x, y, background, radius, hlr, neighbours, radii, joint=True)
    good = np.isfinite(fits).all(axis=1)
    assert good.sum() >= 30
    assert np.median(fits[good, 1]) == pytest.approx(beta, abs=0.3)
    assert joint[1] == pytest.approx(beta, rel=0.06)
    assert joint[0] == pytest.approx(synthetic.moffat_alpha(4.0, beta), rel=0.05)
    # axis ratio from the fitted quadratic form's eigenvalues (determinant 1)
    g = np.hypot(fits[good, 2], fits[good, 3])
    assert np.median(1 - (np.sqrt(1 + g**2) - g)) == pytest.approx(ellipticity, abs=0.05)
    # what matters: the light an aperture measures of the profile convolved with another, as the truth's
    axis, angle = np.sqrt(1 - ellipticity), np.deg2rad(30)
    g1 = (axis**2 - 1 / axis**2) * np.cos(2 * angle) / 2  # the rendered profile's quadratic form
    g2 = (axis**2 - 1 / axis**2) * np.cos(angle) * np.sin(angle)
    truth = np.array([synthetic.moffat_alpha(4.0, beta), beta, g1, g2])
    assert joint[2:] == pytest.approx(truth[2:], abs=0.03)
    sharp = np.array([2.0, 4.0, 0.0, 0.0])
    fitted = matched_fraction([sharp, joint], radius, annulus, 60)
    error = profile_error(
        [sharp, joint], [np.zeros((4, 4)), profile_covariance(fits, joint)], radius, annulus, 60
    )
    assert fitted == pytest.approx(
        matched_fraction([sharp, truth], radius, annulus, 60), abs=3 * error + 2e-3
    )


def test_stars_on_structured_sky_are_not_on_smooth_sky():
    """Stars whose sky holds a ripple 1.5 times the noise fail; those on flat sky (the median's) pass."""
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:300, 0:600]
    ripple = 15.0 * np.sqrt(2) * np.sin(xx / 4.0) * (xx >= 300)  # RMS 15, on the right half only
    frame = (100.0 + rng.normal(0.0, 10.0, yy.shape) + ripple).astype(np.float32)
    x = np.array([60.0, 120, 180, 240, 60, 120, 180, 400, 460, 520])
    y = np.array([100.0, 100, 100, 100, 200, 200, 200, 150, 150, 150])
    # hlr 2: annulus 12-18 px; on the right, scatter 1.6-1.9 times the flat sky's (MAD of noise and ripple)
    smooth = on_smooth_sky([frame, frame[::-1].copy()], x, y, 2.0, None, None)
    assert smooth.tolist() == [True] * 7 + [False] * 3
