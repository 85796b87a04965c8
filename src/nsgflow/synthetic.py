"""Synthetic frame sets with known truth, for the demo, the tests and the benchmarks.

A frame set is one star field (plus an optional galaxy) seen through a different
PSF, brightness scale and additive background in every frame. For a target
frame ``T`` with true scale ``m`` and background ``B_T``, and the reference's
background ``B_R``, the ideal normalized frame is ``m*T - (m*B_T - B_R)``: the
target's own stars and noise, at the reference's brightness, on the
reference's background.

The optional hard conditions (:mod:`nsgflow.synthetic_conditions`) add
saturated stars with halos, nebulosity, hot pixels, cosmic rays and satellite
trails, give every frame its own star profile and crowd the field. Artifacts
are part of the observed frame ``T``, so the ideal output ``m*T - (m*B_T - B_R)`` holds them too, scaled by
``m``: the residual measures only the scale and background errors. Extended
signal (nebula, galaxy) is scene light: it scales with ``m`` and is not part of
the background ``B``. Every new feature draws from its own random stream
(``default_rng([seed, k])``), so frames without them are bit-identical to
those made before the features existed.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits

from nsgflow.io import read_json, write_fits, write_json

__all__ = [
    "FrameSpec",
    "SceneSpec",
    "background",
    "box_medians",
    "channel_specs",
    "demo_specs",
    "evaluate",
    "make_frame_set",
    "moffat_alpha",
    "psf_stamps",
    "render_frame",
    "residual",
    "sky_noise",
    "spec_from_truth",
]


@dataclass(frozen=True)
class SceneSpec:
    """What the sky holds, in reference units (scale 1)."""

    shape: tuple[int, int] = (600, 900)
    n_stars: int = 3000
    flux_min: float = 300.0
    flux_max: float = 1e6
    #: Power-law slope of the star counts: N(>F) ~ F**-slope.
    flux_slope: float = 0.6
    #: Total flux of an elliptical exponential galaxy at the field centre (0: none).
    galaxy_flux: float = 0.0
    galaxy_radius_px: float = 60.0
    #: Peak surface brightness (ADU per px) of patchy nebulosity over a large part of the field (0: none).
    nebula_flux: float = 0.0
    #: Width (Gaussian sigma) of the nebula's envelope, as a fraction of the frame's size.
    nebula_size: float = 0.3
    #: Extra very bright stars, flux log-uniform in [bright_flux_min, bright_flux_max]: saturated cores.
    n_bright: int = 0
    bright_flux_min: float = 3e6
    bright_flux_max: float = 1e8
    #: Fraction of each bright star's flux in a broad halo (Moffat, beta 2.5) of core width halo_radius_px.
    halo_fraction: float = 0.0
    halo_radius_px: float = 15.0
    seed: int = 0


@dataclass(frozen=True)
class FrameSpec:
    """How one frame sees the scene: scale, PSF, background, noise, borders."""

    name: str
    #: True photometric scale m: the reference is m * this frame, less the gradient.
    scale: float = 1.0
    fwhm_px: float = 3.0
    beta: float = 3.0
    sky_adu: float = 500.0
    #: Background change across the frame, in ADU of this frame, along x and y.
    slope_x_adu: float = 0.0
    slope_y_adu: float = 0.0
    #: Amplitude (ADU) and e-folding length (fraction of width or height) of a glow from one edge.
    glow_adu: float = 0.0
    glow_length: float = 0.25
    #: The edge the glow enters from: left, right, bottom (row 0) or top.
    glow_edge: str = "left"
    #: Width of the no-data (exact zero) border on the left/right/top/bottom, px.
    border_px: tuple[int, int, int, int] = (0, 0, 0, 0)
    read_noise_adu: float = 5.0
    gain_e_per_adu: float = 1.0
    saturation_adu: float = 60000.0
    #: Hot pixels and cosmic-ray tracks (1-12 px) added after the noise, 300-20000 ADU per pixel.
    hot_pixels: int = 0
    cosmic_rays: int = 0
    #: Satellite trails: straight lines across the frame, Gaussian profile, peak ADU and sigma (px).
    trails: int = 0
    trail_adu: float = 500.0
    trail_width_px: float = 1.5
    #: Star elongation 1 - minor/major axis (0: round) and the major axis's angle from +x, degrees.
    ellipticity: float = 0.0
    psf_angle_deg: float = 0.0
    #: Radius (in FWHM) out to which every star's profile is integrated over its pixels and
    #: normalised to its flux; 0 samples profiles at pixel centres out to a flux-dependent radius.
    psf_radius_fwhm: float = 0.0
    #: Fraction of each star's light in a broad aureole around its core (:func:`psf_stamps`).
    aureole_fraction: float = 0.0
    seed: int = 0
    header: dict = field(default_factory=dict)


def moffat_alpha(fwhm_px: float, beta: float) -> float:
    """Return the Moffat core width alpha for a given FWHM and beta."""
    return fwhm_px / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))


def _stars(scene: SceneSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(scene.seed)
    ny, nx = scene.shape
    x = rng.uniform(-10, nx + 10, scene.n_stars)
    y = rng.uniform(-10, ny + 10, scene.n_stars)
    # inverse transform of a truncated power law N(>F) ~ F**-slope
    u = rng.uniform(0, 1, scene.n_stars)
    lo, hi = scene.flux_min**-scene.flux_slope, scene.flux_max**-scene.flux_slope
    flux = (lo + u * (hi - lo)) ** (-1.0 / scene.flux_slope)
    return x, y, flux


def _galaxy(scene: SceneSpec) -> np.ndarray:
    ny, nx = scene.shape
    yy, xx = np.mgrid[0:ny, 0:nx].astype(np.float64)
    dx, dy = xx - 0.55 * nx, yy - 0.45 * ny
    angle = np.deg2rad(35.0)
    u = dx * np.cos(angle) + dy * np.sin(angle)
    v = (-dx * np.sin(angle) + dy * np.cos(angle)) / 0.5
    profile = np.exp(-np.hypot(u, v) / scene.galaxy_radius_px)
    return scene.galaxy_flux * profile / profile.sum()


def _bright_stars(scene: SceneSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng([scene.seed, 1])
    ny, nx = scene.shape
    x = rng.uniform(0, nx, scene.n_bright)
    y = rng.uniform(0, ny, scene.n_bright)
    flux = np.exp(rng.uniform(np.log(scene.bright_flux_min), np.log(scene.bright_flux_max), scene.n_bright))
    return x, y, flux


def _nebula(scene: SceneSpec) -> np.ndarray:
    """Patchy nebulosity: smoothed lognormal noise (30 px and 120 px structure) under a broad envelope."""
    from scipy import ndimage

    rng = np.random.default_rng([scene.seed, 2])
    ny, nx = scene.shape
    cell = 12  # px per coarse cell
    gy, gx = -(-ny // cell), -(-nx // cell)
    fine = ndimage.gaussian_filter(rng.standard_normal((gy, gx)), 2.5, mode="wrap")
    broad = ndimage.gaussian_filter(rng.standard_normal((gy, gx)), 10.0, mode="wrap")
    field = np.exp(0.8 * fine / fine.std() + 0.8 * broad / broad.std())
    yy, xx = np.mgrid[0:gy, 0:gx] / np.array([gy, gx])[:, None, None]
    envelope = np.exp(-0.5 * ((xx - 0.35) ** 2 + (yy - 0.6) ** 2) / scene.nebula_size**2)
    coarse = field * envelope
    full = ndimage.zoom(coarse, (ny / gy, nx / gx), order=3, grid_mode=True, mode="nearest")[:ny, :nx]
    full = np.maximum(full, 0.0)
    return scene.nebula_flux * full / full.max()


def _trails(shape: tuple[int, int], spec: FrameSpec) -> np.ndarray:
    rng = np.random.default_rng([spec.seed, 3])
    ny, nx = shape
    yy, xx = np.ogrid[0:ny, 0:nx]
    out = np.zeros(shape)
    for _ in range(spec.trails):
        x0, y0, angle = rng.uniform(0, nx), rng.uniform(0, ny), rng.uniform(0, np.pi)
        distance = (xx - x0) * np.sin(angle) - (yy - y0) * np.cos(angle)
        out += spec.trail_adu * np.exp(-0.5 * (distance / spec.trail_width_px) ** 2)
    return out


def _add_hits(frame: np.ndarray, spec: FrameSpec) -> None:
    """Add hot pixels and cosmic-ray tracks to ``frame``, in place."""
    rng = np.random.default_rng([spec.seed, 4])
    ny, nx = frame.shape
    iy, ix = rng.integers(0, ny, spec.hot_pixels), rng.integers(0, nx, spec.hot_pixels)
    frame[iy, ix] += rng.uniform(300, 20000, spec.hot_pixels)
    for _ in range(spec.cosmic_rays):
        x0, y0, angle = rng.uniform(0, nx), rng.uniform(0, ny), rng.uniform(0, 2 * np.pi)
        t = np.arange(0.0, rng.uniform(1, 12))
        px = np.clip(np.rint(x0 + t * np.cos(angle)).astype(int), 0, nx - 1)
        py = np.clip(np.rint(y0 + t * np.sin(angle)).astype(int), 0, ny - 1)
        frame[py, px] += rng.uniform(500, 20000, t.size)


def _add_star(
    signal: np.ndarray, x0: float, y0: float, flux: float, alpha: float, beta: float, r: int
) -> None:
    """Add a Moffat star, normalised to ``flux`` over its (2r+1)^2 stamp, to ``signal`` in place."""
    ny, nx = signal.shape
    ix, iy = round(x0), round(y0)
    x1, x2 = max(ix - r, 0), min(ix + r + 1, nx)
    y1, y2 = max(iy - r, 0), min(iy + r + 1, ny)
    if x1 >= x2 or y1 >= y2:
        return
    yy, xx = np.ogrid[iy - r : iy + r + 1, ix - r : ix + r + 1]
    stamp = (1.0 + ((xx - x0) ** 2 + (yy - y0) ** 2) / alpha**2) ** -beta
    stamp *= flux / stamp.sum()
    signal[y1:y2, x1:x2] += stamp[y1 - (iy - r) : y2 - (iy - r), x1 - (ix - r) : x2 - (ix - r)]


#: Sub-pixel positions per axis at which :func:`psf_stamps` renders the frame's PSF.
PSF_PHASES = 8
#: Pixels within this many FWHM of a star's centre (:func:`psf_stamps`) are averaged over
#: CORE_POINTS_FWHM / FWHM points per axis: a narrow core curves too fast for the wings' few points
#: (4 x 4 at 2.5 px FWHM: a star whose fitted beta is 0.6 % low).
CORE_FWHM, CORE_POINTS_FWHM = 1.5, 40.0
#: A star's aureole (:func:`psf_stamps`): a Moffat this many times the core's FWHM, of this beta.
AUREOLE_WIDTH, AUREOLE_BETA = 4.0, 2.0


def psf_stamps(spec: FrameSpec, phases: int = PSF_PHASES) -> np.ndarray:
    """The frame's star profile integrated over pixels, for ``phases`` x ``phases`` sub-pixel positions.

    An elliptical Moffat of FWHM ``spec.fwhm_px`` (geometric mean of the
    axes), ``spec.beta``, ``spec.ellipticity`` and ``spec.psf_angle_deg``,
    cut at ``spec.psf_radius_fwhm`` FWHM and averaged over a sub-pixel grid
    fine enough for undersampled stars, finer in the core (:data:`CORE_FWHM`);
    each stamp sums to 1. With
    ``spec.aureole_fraction``, that much of the light is in an aureole instead:
    a second, elongated-alike Moffat :data:`AUREOLE_WIDTH` times as wide with
    beta :data:`AUREOLE_BETA` (scattered light; no single Moffat is this profile).

    Returns
    -------
    numpy.ndarray, shape (phases, phases, 2r+1, 2r+1)
        ``stamps[j, i]``: a star whose offset from its nearest pixel's centre
        is ``(i + 0.5) / phases - 0.5`` in x and ``(j + 0.5) / phases - 0.5`` in y.
    """
    radius = spec.psf_radius_fwhm * spec.fwhm_px
    r = int(np.ceil(radius))
    sub = max(3, int(np.ceil(10 / spec.fwhm_px)))
    core_sub = max(sub, int(np.ceil(CORE_POINTS_FWHM / spec.fwhm_px)))
    core = slice(r - int(np.ceil(CORE_FWHM * spec.fwhm_px)), r + int(np.ceil(CORE_FWHM * spec.fwhm_px)) + 1)
    alpha = moffat_alpha(spec.fwhm_px, spec.beta)
    aureole_alpha = moffat_alpha(AUREOLE_WIDTH * spec.fwhm_px, AUREOLE_BETA)
    axis = np.sqrt(1 - spec.ellipticity)  # area-preserving axes alpha / axis and alpha * axis
    cos, sin = np.cos(np.deg2rad(spec.psf_angle_deg)), np.sin(np.deg2rad(spec.psf_angle_deg))
    offsets = np.arange(-r, r + 1)

    def means(pixels: np.ndarray, points: int, centre: tuple[float, float], width: float, beta: float):
        """The elliptical Moffat's mean over each of a square of pixels, from ``points`` per axis."""
        grid = (pixels[:, None] + (np.arange(points) + 0.5) / points - 0.5).ravel()
        dx, dy = (grid - centre[0])[None, :], (grid - centre[1])[:, None]
        u, v = dx * cos + dy * sin, -dx * sin + dy * cos
        return _pixel_means((1.0 + ((u * axis) ** 2 + (v / axis) ** 2) / width**2) ** -beta, points)

    phase = (np.arange(phases) + 0.5) / phases - 0.5
    stamps = np.empty((phases, phases, 2 * r + 1, 2 * r + 1))
    inside = np.hypot(*np.meshgrid(offsets, offsets)) <= radius
    for j, py in enumerate(phase):
        for i, px in enumerate(phase):
            stamp = means(offsets, sub, (px, py), alpha, spec.beta)
            stamp[core, core] = means(offsets[core], core_sub, (px, py), alpha, spec.beta)
            stamp *= inside
            stamp /= stamp.sum()
            if spec.aureole_fraction:
                wide = means(offsets, sub, (px, py), aureole_alpha, AUREOLE_BETA) * inside
                stamp = (1 - spec.aureole_fraction) * stamp + spec.aureole_fraction * wide / wide.sum()
            stamps[j, i] = stamp
    return stamps


def _pixel_means(fine: np.ndarray, sub: int) -> np.ndarray:
    """Means of ``sub`` x ``sub`` blocks: a profile sampled ``sub`` times per pixel, averaged per pixel."""
    n = fine.shape[0] // sub
    return fine.reshape(n, sub, n, sub).mean(axis=(1, 3))


def _add_stamped_stars(
    signal: np.ndarray, x: np.ndarray, y: np.ndarray, flux: np.ndarray, stamps: np.ndarray
) -> None:
    """Add stars, each the stamp of its sub-pixel position times its flux, to ``signal`` in place."""
    ny, nx = signal.shape
    phases, r = stamps.shape[0], stamps.shape[2] // 2
    ix, iy = np.floor(x + 0.5).astype(int), np.floor(y + 0.5).astype(int)
    pi = np.minimum(((x - ix + 0.5) * phases).astype(int), phases - 1)
    pj = np.minimum(((y - iy + 0.5) * phases).astype(int), phases - 1)
    for cx, cy, i, j, f in zip(ix, iy, pi, pj, flux, strict=True):
        x1, x2, y1, y2 = max(cx - r, 0), min(cx + r + 1, nx), max(cy - r, 0), min(cy + r + 1, ny)
        if x1 < x2 and y1 < y2:
            signal[y1:y2, x1:x2] += f * stamps[j, i, y1 - cy + r : y2 - cy + r, x1 - cx + r : x2 - cx + r]


#: Radius, in FWHM, of the Moffat that blurs a frame's extended light when its stars have no
#: ``psf_radius_fwhm`` (:func:`_blurred`).
BLUR_RADIUS_FWHM = 8.0


def _blurred(light: np.ndarray, spec: FrameSpec) -> np.ndarray:
    """Extended ``light`` convolved with the frame's star profile (summing to 1), edges reflected.

    The profile is :func:`psf_stamps`' at a pixel's centre, or, for a frame
    without ``psf_radius_fwhm``, a round Moffat out to :data:`BLUR_RADIUS_FWHM`.
    """
    from scipy.signal import fftconvolve

    if spec.psf_radius_fwhm:
        stamp = psf_stamps(spec, phases=1)[0, 0]
    else:
        r = int(np.ceil(BLUR_RADIUS_FWHM * spec.fwhm_px))
        stamp = np.zeros((2 * r + 1, 2 * r + 1))
        _add_star(stamp, r, r, 1.0, moffat_alpha(spec.fwhm_px, spec.beta), spec.beta, r)
    r = stamp.shape[0] // 2
    return fftconvolve(np.pad(light, r, mode="reflect"), stamp, mode="valid")


def background(shape: tuple[int, int], spec: FrameSpec) -> np.ndarray:
    """Return the frame's additive background (sky, gradient, glow) in its own ADU."""
    ny, nx = shape
    y = (np.arange(ny) / (ny - 1) - 0.5)[:, None]
    x = (np.arange(nx) / (nx - 1) - 0.5)[None, :]
    edges = {"left": x + 0.5, "right": 0.5 - x, "bottom": y + 0.5, "top": 0.5 - y}
    if spec.glow_edge not in edges:
        raise ValueError(f"glow_edge must be one of {sorted(edges)}, not {spec.glow_edge!r}")
    glow = spec.glow_adu * np.exp(-edges[spec.glow_edge] / spec.glow_length)
    return spec.sky_adu + spec.slope_x_adu * x + spec.slope_y_adu * y + glow


def render_frame(scene: SceneSpec, spec: FrameSpec) -> np.ndarray:
    """Render one frame of ``scene`` as ``spec`` sees it, float32, with noise.

    Each star is a Moffat profile normalised to its flux over a stamp wide
    enough to hold its visible wings, so every frame holds the same total star
    flux (divided by its scale) whatever its PSF: sampled at pixel centres out
    to a radius that grows with the flux, or, with ``spec.psf_radius_fwhm``,
    elliptical and integrated over its pixels (:func:`psf_stamps`). Bright
    stars put ``halo_fraction`` of their flux into a broad halo (the optics'
    scattered light). The halos, the nebula and the galaxy are seen through
    the frame's own star profile (:func:`_blurred`), as all light that passed
    the atmosphere is. Trails are light of this frame (own ADU, with noise);
    hot pixels and cosmic rays are added after the noise, before saturation.
    """
    ny, nx = scene.shape
    sx, sy, sflux = _stars(scene)
    signal = np.zeros(scene.shape, dtype=np.float64)
    alpha = moffat_alpha(spec.fwhm_px, spec.beta)
    halo_alpha, halo_r = scene.halo_radius_px, int(np.ceil(6 * scene.halo_radius_px))
    bright = _bright_stars(scene)
    if spec.psf_radius_fwhm:
        stamps = psf_stamps(spec)
        _add_stamped_stars(signal, sx, sy, sflux / spec.scale, stamps)
        _add_stamped_stars(signal, *bright[:2], (1 - scene.halo_fraction) * bright[2] / spec.scale, stamps)
    else:
        for x0, y0, f in zip(sx, sy, sflux / spec.scale, strict=True):
            r = int(np.ceil(spec.fwhm_px * (4 + 3 * np.log10(max(f / 1e3, 1.0)))))
            _add_star(signal, x0, y0, f, alpha, spec.beta, r)
    extended = _galaxy(scene) + _nebula(scene)  # each is 0 everywhere without its flux
    for x0, y0, f in zip(*bright, strict=True):
        if not spec.psf_radius_fwhm:
            r = int(np.ceil(spec.fwhm_px * (4 + 3 * np.log10(max(f / spec.scale / 1e3, 1.0)))))
            _add_star(signal, x0, y0, (1 - scene.halo_fraction) * f / spec.scale, alpha, spec.beta, r)
        if scene.halo_fraction:
            _add_star(extended, x0, y0, scene.halo_fraction * f, halo_alpha, 2.5, halo_r)
    if extended.any():
        signal += _blurred(extended, spec) / spec.scale
    signal += background(scene.shape, spec)
    if spec.trails:
        signal += _trails(scene.shape, spec)
    rng = np.random.default_rng(spec.seed)
    sigma = np.sqrt(spec.read_noise_adu**2 + np.maximum(signal, 0) / spec.gain_e_per_adu)
    frame = signal + sigma * rng.standard_normal(scene.shape)
    if spec.hot_pixels or spec.cosmic_rays:
        _add_hits(frame, spec)
    frame = np.minimum(frame, spec.saturation_adu)
    left, right, top, bottom = spec.border_px
    frame[:, :left] = 0.0
    frame[:, nx - right :] = 0.0
    frame[:bottom, :] = 0.0
    frame[ny - top :, :] = 0.0
    return frame.astype(np.float32)


def residual(normalized: np.ndarray, target: np.ndarray, spec: FrameSpec, reference: FrameSpec) -> np.ndarray:
    """Return normalized minus ideal output, NaN where the target has no data."""
    shape = target.shape
    truth = spec.scale * target - (spec.scale * background(shape, spec) - background(shape, reference))
    out = normalized - truth
    return np.where(target == 0, np.nan, out)


def box_medians(image: np.ndarray, box: int = 64) -> np.ndarray:
    """Median of each whole ``box`` x ``box`` block, ignoring NaN; all-NaN blocks dropped."""
    ny, nx = (s // box * box for s in image.shape)
    blocks = image[:ny, :nx].reshape(ny // box, box, nx // box, box).swapaxes(1, 2)
    blocks = blocks.reshape(-1, box * box)
    keep = np.isfinite(blocks).sum(axis=1) > box * box // 2
    return np.nanmedian(blocks[keep], axis=1)


def sky_noise(spec: FrameSpec) -> float:
    """Per-pixel background noise of a frame, ADU."""
    return float(np.sqrt(spec.read_noise_adu**2 + spec.sky_adu / spec.gain_e_per_adu))


def spec_from_truth(entry: dict) -> FrameSpec:
    """Rebuild a :class:`FrameSpec` from its entry in ``truth.json``."""
    fields = {f.name for f in dataclasses.fields(FrameSpec)}
    spec = {k: v for k, v in entry.items() if k in fields}
    return FrameSpec(**{**spec, "border_px": tuple(spec["border_px"])})


#: Colour frames: the blue channel's scale exceeds the red's by this fraction of (m - 1), as
#: extinction reddens; the sky falls from red to blue by this fraction per channel.
COLOUR_TILT, COLOUR_SKY_STEP = 0.5, 0.25


def channel_specs(spec: FrameSpec) -> list[FrameSpec]:
    """The three channels (R, G, B) of a colour frame, each as a mono spec with its own scale, sky and noise.

    Channel ``c`` has scale ``m * (1 + COLOUR_TILT * (m - 1) * c / 2)``, so a
    reference (m = 1) has scale 1 in every channel and the truth of each
    channel is its own scale; the sky and gradient are
    ``1 - COLOUR_SKY_STEP * c`` times the frame's.

    Examples
    --------
    >>> [round(c.scale, 3) for c in channel_specs(FrameSpec("t", scale=1.5))]
    [1.5, 1.688, 1.875]
    """
    out = []
    for c in range(3):
        sky = 1 - COLOUR_SKY_STEP * c
        out.append(
            dataclasses.replace(
                spec,
                name=f"{spec.name}[{c}]",
                scale=spec.scale * (1 + COLOUR_TILT * (spec.scale - 1) * c / 2),
                sky_adu=spec.sky_adu * sky,
                slope_x_adu=spec.slope_x_adu * sky,
                slope_y_adu=spec.slope_y_adu * sky,
                glow_adu=spec.glow_adu * sky,
                seed=spec.seed * 7 + 1000 * (c + 1),
            )
        )
    return out


def make_frame_set(
    directory: str | os.PathLike,
    scene: SceneSpec,
    specs: list[FrameSpec],
    reference: str,
    *,
    colour: bool = False,
) -> dict:
    """Render and write ``specs`` as FITS files in ``directory``, plus ``truth.json``.

    With ``colour``, each frame is a 3-plane (R, G, B) FITS whose channels are
    :func:`channel_specs`, listed under the frame's ``channels`` in the truth.
    Returns the truth: the scene, every frame's spec and its file path.
    """
    directory = Path(directory)
    truth = {"scene": dataclasses.asdict(scene), "reference": reference, "frames": {}}
    for spec in specs:
        header = fits.Header()
        header["EXPTIME"] = (120.0, "exposure time, s")
        for key, value in spec.header.items():
            header[key] = value
        path = directory / f"{spec.name}.fits"
        entry = {"path": str(path), **dataclasses.asdict(spec)}
        if colour:
            channels = channel_specs(spec)
            data = np.stack([render_frame(scene, c) for c in channels])
            entry["channels"] = [dataclasses.asdict(c) for c in channels]
        else:
            data = render_frame(scene, spec)
        write_fits(path, data, header)
        truth["frames"][spec.name] = entry
    write_json(directory / "truth.json", truth)
    return truth


def demo_specs(n_frames: int = 6, seed: int = 0) -> list[FrameSpec]:
    """A varied but realistic set: seeing 2.2-4.2 px, scales 0.7-1.8, tilted and glowing skies.

    Frame ``frame_01`` (index 1) is meant as the reference: not the sharpest.
    """
    rng = np.random.default_rng(seed + 1000)
    specs = []
    for i in range(n_frames):
        ref = i == 1
        specs.append(
            FrameSpec(
                name=f"frame_{i:02d}",
                scale=1.0 if ref else float(rng.uniform(0.7, 1.8)),
                fwhm_px=3.0 if ref else float(rng.uniform(2.2, 4.2)),
                sky_adu=400.0 if ref else float(rng.uniform(300, 1500)),
                slope_x_adu=0.0 if ref else float(rng.uniform(-150, 150)),
                slope_y_adu=20.0 if ref else float(rng.uniform(-150, 150)),
                glow_adu=0.0 if ref else float(rng.uniform(0, 200)),
                border_px=(0, 0, 0, 0) if ref else tuple(int(b) for b in rng.integers(0, 12, 4)),
                seed=seed * 100 + i,
                header={"CENTALT": 70.0 if ref else float(rng.uniform(30, 65))},
            )
        )
    return specs


def evaluate(results: str | os.PathLike, truth: dict, box: int = 64) -> list[dict]:
    """Compare a workflow's outputs with the truth of a synthetic frame set.

    Returns one row per frame (per channel for colour frames, with
    ``channel``): true and recovered scale, the scale error, its reported
    uncertainty, and the residual background (normalized minus ideal output,
    medians in ``box`` x ``box`` blocks): RMS and worst block, in units of the
    reference's per-pixel sky noise.
    """
    from nsgflow.channels import channel_record, planes  # local: keep this module's import light for tests
    from nsgflow.io import read_frame

    results = Path(results)

    def channels(entry: dict) -> list[FrameSpec]:
        return [spec_from_truth(c) for c in entry.get("channels", [entry])]

    reference = channels(truth["frames"][truth["reference"]])
    rows = []
    for name, entry in truth["frames"].items():
        scale = read_json(results / "scale" / f"{name}.json")
        target, _ = read_frame(entry["path"])
        output, _ = read_frame(results / "normalized" / f"{name}_nsg.fits")
        specs = channels(entry)
        for c, (spec, ref, t, out) in enumerate(
            zip(specs, reference, planes(target), planes(output), strict=True)
        ):
            fit = channel_record(scale, c)
            blocks = box_medians(residual(out, t, spec, ref), box)
            noise = sky_noise(ref)
            rows.append(
                {
                    "frame": name,
                    **({"channel": c} if len(specs) > 1 else {}),
                    "m_true": spec.scale,
                    "m": fit["scale"],
                    "m_err": fit["scale_err"],
                    "scale_error": fit["scale"] / spec.scale - 1,
                    "residual_rms": float(np.sqrt(np.mean(blocks**2))) / noise,
                    "residual_worst": float(np.max(np.abs(blocks))) / noise,
                }
            )
    return rows
