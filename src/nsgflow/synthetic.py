"""Synthetic frame sets with known truth, for the demo, the tests and the benchmarks.

A frame set is one star field (plus an optional galaxy) seen through a different
PSF, brightness scale and additive background in every frame. For a target
frame ``T`` with true scale ``m`` and background ``B_T``, and the reference's
background ``B_R``, the ideal normalized frame is ``m*T - (m*B_T - B_R)``: the
target's own stars and noise, at the reference's brightness, on the
reference's background.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits

from nsgflow.io import write_fits, write_json

__all__ = [
    "FrameSpec",
    "SceneSpec",
    "background",
    "box_medians",
    "demo_specs",
    "evaluate",
    "make_frame_set",
    "moffat_alpha",
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
    #: Amplitude (ADU) and e-folding length (fraction of width) of a glow from the left edge.
    glow_adu: float = 0.0
    glow_length: float = 0.25
    #: Width of the no-data (exact zero) border on the left/right/top/bottom, px.
    border_px: tuple[int, int, int, int] = (0, 0, 0, 0)
    read_noise_adu: float = 5.0
    gain_e_per_adu: float = 1.0
    saturation_adu: float = 60000.0
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


def background(shape: tuple[int, int], spec: FrameSpec) -> np.ndarray:
    """Return the frame's additive background (sky, gradient, glow) in its own ADU."""
    ny, nx = shape
    y = (np.arange(ny) / (ny - 1) - 0.5)[:, None]
    x = (np.arange(nx) / (nx - 1) - 0.5)[None, :]
    glow = spec.glow_adu * np.exp(-(x + 0.5) / spec.glow_length)
    return spec.sky_adu + spec.slope_x_adu * x + spec.slope_y_adu * y + glow


def render_frame(scene: SceneSpec, spec: FrameSpec) -> np.ndarray:
    """Render one frame of ``scene`` as ``spec`` sees it, float32, with noise.

    Each star is a Moffat profile normalised to its flux over a stamp wide
    enough to hold its visible wings, so every frame holds the same total star
    flux (divided by its scale) whatever its PSF.
    """
    ny, nx = scene.shape
    sx, sy, sflux = _stars(scene)
    signal = np.zeros(scene.shape, dtype=np.float64)
    alpha = moffat_alpha(spec.fwhm_px, spec.beta)
    for x0, y0, f in zip(sx, sy, sflux / spec.scale, strict=True):
        r = int(np.ceil(spec.fwhm_px * (4 + 3 * np.log10(max(f / 1e3, 1.0)))))
        ix, iy = round(x0), round(y0)
        x1, x2 = max(ix - r, 0), min(ix + r + 1, nx)
        y1, y2 = max(iy - r, 0), min(iy + r + 1, ny)
        if x1 >= x2 or y1 >= y2:
            continue
        yy, xx = np.ogrid[iy - r : iy + r + 1, ix - r : ix + r + 1]
        stamp = (1.0 + ((xx - x0) ** 2 + (yy - y0) ** 2) / alpha**2) ** -spec.beta
        stamp *= f / stamp.sum()
        signal[y1:y2, x1:x2] += stamp[y1 - (iy - r) : y2 - (iy - r), x1 - (ix - r) : x2 - (ix - r)]
    if scene.galaxy_flux:
        signal += _galaxy(scene) / spec.scale
    signal += background(scene.shape, spec)
    rng = np.random.default_rng(spec.seed)
    sigma = np.sqrt(spec.read_noise_adu**2 + np.maximum(signal, 0) / spec.gain_e_per_adu)
    frame = signal + sigma * rng.standard_normal(scene.shape)
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


def make_frame_set(
    directory: str | os.PathLike, scene: SceneSpec, specs: list[FrameSpec], reference: str
) -> dict:
    """Render and write ``specs`` as FITS files in ``directory``, plus ``truth.json``.

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
        write_fits(path, render_frame(scene, spec), header)
        truth["frames"][spec.name] = {"path": str(path), **dataclasses.asdict(spec)}
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

    Returns one row per frame: true and recovered scale, the scale error, its
    reported uncertainty, and the residual background (normalized minus ideal
    output, medians in ``box`` x ``box`` blocks): RMS and worst block, in units
    of the reference's per-pixel sky noise.
    """
    from nsgflow.io import read_frame  # local: keep this module's import light for tests

    results = Path(results)
    specs = {name: spec_from_truth(f) for name, f in truth["frames"].items()}
    reference = specs[truth["reference"]]
    noise = sky_noise(reference)
    rows = []
    for name, spec in specs.items():
        scale = json.loads((results / "scale" / f"{name}.json").read_text())
        target, _ = read_frame(truth["frames"][name]["path"])
        output, _ = read_frame(results / "normalized" / f"{name}_nsg.fits")
        blocks = box_medians(residual(output, target, spec, reference), box)
        rows.append(
            {
                "frame": name,
                "m_true": spec.scale,
                "m": scale["scale"],
                "m_err": scale["scale_err"],
                "scale_error": scale["scale"] / spec.scale - 1,
                "residual_rms": float(np.sqrt(np.mean(blocks**2))) / noise,
                "residual_worst": float(np.max(np.abs(blocks))) / noise,
            }
        )
    return rows
