"""Synthetic frame sets under hard conditions: seeing, artifacts, nebulosity, trails, skies, profiles.

:func:`condition_specs` draws the scene and frames of a set
(:class:`nsgflow.synthetic.SceneSpec`, :class:`nsgflow.synthetic.FrameSpec`)
with any of the hard :data:`CONDITIONS` and the :data:`PROFILE_CONDITIONS`
on a mild base, for the accuracy tests and benchmarks;
:func:`nsgflow.synthetic.make_frame_set` renders and writes them. Every
condition draws from its own random stream, so a frame's parameters for one
condition are the same whichever others are on.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from nsgflow.synthetic import FrameSpec, SceneSpec

__all__ = ["CONDITIONS", "CONDITION_SETS", "PROFILE_CONDITIONS", "condition_specs"]


#: The hard conditions, each a feature drawn from its own random stream (see :func:`condition_specs`).
CONDITIONS = ("seeing", "artifacts", "extended", "borders", "trails", "sky", "cloud")
#: Conditions of real star profiles and crowded fields, which the hard set leaves out.
PROFILE_CONDITIONS = ("psf", "crowded", "aureole")
#: Named sets of conditions: ``hard`` (all of :data:`CONDITIONS`) and ``extreme`` (those, ``psf`` and
#: ``crowded``).
CONDITION_SETS = {"hard": CONDITIONS, "extreme": (*CONDITIONS, "psf", "crowded")}


@dataclass
class _Draft:
    """A frame set being drawn by :func:`condition_specs`: the arguments of its SceneSpec and FrameSpecs."""

    #: The set's seed; condition ``k`` draws from ``default_rng([seed, k])``.
    seed: int
    #: The SceneSpec's arguments.
    scene: dict
    #: Each frame's FrameSpec arguments, by its index.
    frames: dict[int, dict]
    #: The reference frame's index.
    reference: int

    @property
    def targets(self) -> list[int]:
        """The indices of the frames other than the reference."""
        return [i for i in self.frames if i != self.reference]

    @property
    def mpx(self) -> float:
        """The frames' area in megapixels."""
        ny, nx = self.scene["shape"]
        return ny * nx / 1e6

    def stream(self, k: int) -> np.random.Generator:
        """The random numbers of the condition numbered ``k``."""
        return np.random.default_rng([self.seed, k])

    def spread(self, generator: np.random.Generator, lo: float, hi: float) -> dict[int, float]:
        """``lo``..``hi`` evenly over the targets, in random order: the whole range is always covered."""
        targets = self.targets
        return dict(zip(targets, generator.permutation(np.linspace(lo, hi, len(targets))), strict=True))


def _base_draft(shape: tuple[int, int], n_frames: int, seed: int) -> _Draft:
    """The mild base of :func:`condition_specs`: scales, seeing, skies, tilts; ``frame_01`` the reference."""
    reference = 1
    base = np.random.default_rng([seed, 0])
    frames = {}
    for i in range(n_frames):
        ref = i == reference
        sky = 400.0 if ref else 400.0 * base.uniform(1.0, 1.5)
        tilt, direction = 0.05 * sky, base.uniform(0, 2 * np.pi)
        frames[i] = {
            "name": f"frame_{i:02d}",
            "scale": 1.0 if ref else base.uniform(0.8, 1.3),
            "fwhm_px": 3.0 if ref else base.uniform(2.8, 3.2),
            "sky_adu": sky,
            "slope_x_adu": 0.0 if ref else tilt * np.cos(direction),
            "slope_y_adu": tilt if ref else tilt * np.sin(direction),
            "seed": 100 * seed + i,
        }
    ny, nx = shape
    scene = {"shape": tuple(shape), "n_stars": round(3000 * (ny * nx / 1e6) / 0.54), "seed": seed}
    return _Draft(seed=seed, scene=scene, frames=frames, reference=reference)


def _draw_seeing(draft: _Draft) -> None:
    """``seeing``: the targets' FWHM spread over 2-4.5 px."""
    for i, fwhm in draft.spread(draft.stream(1), 2.0, 4.5).items():
        draft.frames[i]["fwhm_px"] = fwhm


def _draw_artifacts(draft: _Draft) -> None:
    """``artifacts``: saturated stars with halos; hot pixels and cosmic rays on every frame."""
    g, mpx = draft.stream(2), draft.mpx
    draft.scene.update(n_bright=max(round(15 * mpx), 1), halo_fraction=0.05)
    for f in draft.frames.values():
        f.update(hot_pixels=round(400 * mpx * g.uniform(0.5, 1.5)), cosmic_rays=round(60 * mpx))


def _draw_extended(draft: _Draft) -> None:
    """``extended``: patchy nebulosity and a large galaxy."""
    scene = draft.scene
    scene.update(nebula_flux=600.0, galaxy_radius_px=0.06 * scene["shape"][1])
    scene["galaxy_flux"] = 1600.0 * 2 * np.pi * 0.5 * scene["galaxy_radius_px"] ** 2


def _draw_borders(draft: _Draft) -> None:
    """``borders``: no-data borders of 0-40 px on each side of every frame."""
    g = draft.stream(4)
    for f in draft.frames.values():
        f["border_px"] = tuple(int(b) for b in g.integers(0, 41, 4))


def _draw_trails(draft: _Draft) -> None:
    """``trails``: 0-2 satellite trails per target (one at least in the set), one on the reference."""
    g, frames = draft.stream(5), draft.frames
    for i, f in frames.items():
        f["trails"] = 1 if i == draft.reference else int(g.integers(0, 3))
        f["trail_adu"], f["trail_width_px"] = g.uniform(100, 2000), g.uniform(0.8, 2.0)
    if not any(frames[i]["trails"] for i in draft.targets):
        frames[draft.targets[0]]["trails"] = 1


def _draw_sky(draft: _Draft) -> None:
    """``sky``: target skies 1-5x the reference's, gradients of 5-50 %, every other one an edge glow."""
    g = draft.stream(6)
    skies, fractions = draft.spread(g, 1.0, 5.0), draft.spread(g, 0.05, 0.5)
    for n, i in enumerate(draft.targets):
        sky = 400.0 * skies[i]
        total, direction = fractions[i] * sky, g.uniform(0, 2 * np.pi)
        glow = total * g.uniform(0.6, 1.0) if n % 2 == 0 else 0.0
        draft.frames[i].update(
            sky_adu=sky,
            slope_x_adu=(total - glow) * np.cos(direction),
            slope_y_adu=(total - glow) * np.sin(direction),
            glow_adu=glow,
            glow_edge=str(g.choice(["left", "right", "bottom", "top"])),
            glow_length=g.uniform(0.15, 0.4),
        )


def _draw_cloud(draft: _Draft) -> None:
    """``cloud``: the last frame under thin cloud (transmission 0.4-0.7)."""
    draft.frames[len(draft.frames) - 1]["scale"] = 1.0 / draft.stream(7).uniform(0.4, 0.7)


def _draw_psf(draft: _Draft) -> None:
    """``psf``: every frame its own Moffat profile, out to 30 FWHM."""
    g, ref = draft.stream(8), draft.reference
    fwhms, betas, shapes = draft.spread(g, 1.4, 6.0), draft.spread(g, 2.0, 5.0), draft.spread(g, 0.0, 0.35)
    fwhms[ref], betas[ref], shapes[ref] = 2.5, g.uniform(2.0, 5.0), g.uniform(0.0, 0.35)
    for i, f in draft.frames.items():
        f.update(
            fwhm_px=fwhms[i],
            beta=betas[i],
            ellipticity=shapes[i],
            psf_angle_deg=g.uniform(0.0, 180.0),
            psf_radius_fwhm=30.0,
        )


def _draw_aureole(draft: _Draft) -> None:
    """``aureole``: 0-10 % of every star's light in a wide aureole, a different share per frame."""
    g = draft.stream(10)
    shares = draft.spread(g, 0.0, 0.1)
    shares[draft.reference] = g.uniform(0.0, 0.1)
    for i, f in draft.frames.items():
        f.update(aureole_fraction=shares[i], psf_radius_fwhm=30.0)


def _draw_crowded(draft: _Draft) -> None:
    """``crowded``: three times the stars and a bright nebula."""
    draft.scene.update(n_stars=3 * draft.scene["n_stars"], nebula_flux=2000.0)


#: How each condition changes a frame set, in the order they are applied: ``psf`` sets the seeing
#: ``seeing`` drew, ``crowded`` the nebula ``extended`` made.
_CONDITION_DRAWS = {
    "seeing": _draw_seeing,
    "artifacts": _draw_artifacts,
    "extended": _draw_extended,
    "borders": _draw_borders,
    "trails": _draw_trails,
    "sky": _draw_sky,
    "cloud": _draw_cloud,
    "psf": _draw_psf,
    "aureole": _draw_aureole,
    "crowded": _draw_crowded,
}


def _python_scalars(values: dict) -> dict:
    """``values`` with numpy scalars as Python ones (for truth.json)."""
    return {k: v.item() if isinstance(v, np.generic) else v for k, v in values.items()}


def condition_specs(
    conditions: Iterable[str], shape: tuple[int, int] = (600, 900), n_frames: int = 6, seed: int = 0
) -> tuple[SceneSpec, list[FrameSpec], str]:
    """A frame set with some of the hard :data:`CONDITIONS` on a mild base; ``frame_01`` is the reference.

    Base (always): reference scale 1, FWHM 3 px, sky 400 ADU with a 5 % tilt;
    targets scale 0.8-1.3, FWHM 2.8-3.2 px, sky 1-1.5x the reference's with a
    5 % tilt in a random direction. Star counts, bright stars, hot pixels and
    cosmic rays scale with the frame's area. Conditions:

    - ``seeing``: target FWHM spread evenly over 2-4.5 px, the reference (3 px) not the sharpest;
    - ``artifacts``: 15 saturated stars per Mpx with halos (5 % of their flux), on every frame
      400 hot pixels and 60 cosmic rays per Mpx;
    - ``extended``: patchy nebulosity (peak 1.5x the reference sky) over a large part of the field
      and a large galaxy (centre 4x the sky);
    - ``borders``: no-data borders of 0-40 px on each side, different on every frame (reference too);
    - ``trails``: 0-2 satellite trails per target (at least one in the set) and one on the reference,
      peak 100-2000 ADU;
    - ``sky``: target sky 1-5x the reference's, gradients 5-50 % of the sky, on every other target
      mostly a glow from one edge;
    - ``cloud``: the last frame under thin uniform cloud: transmission 0.4-0.7, so m = 1/0.7-1/0.4;
    - ``psf``: every frame its own star profile, integrated over the pixels out to 30 FWHM
      (:func:`nsgflow.synthetic.psf_stamps`; real wings do not stop, and a beta-2 star still has
      0.9 % of its light beyond 8 FWHM): Moffat beta 2-5, ellipticity 0-0.35 at a random angle,
      target FWHM 1.4-6 px, the reference's 2.5 px;
    - ``crowded``: three times the stars and a bright nebula (peak 5x the reference sky);
    - ``aureole``: 0-10 % of every star's light, a different share in each frame (focus, dew,
      haze), in an aureole 4x as wide as its core (:func:`nsgflow.synthetic.psf_stamps`): a
      profile no single Moffat is.

    Every condition draws from ``default_rng([seed, k])`` with its own ``k``, so a frame's
    parameters for one condition are the same whichever other conditions are on: the hard set
    (``CONDITION_SETS['hard']``) is the union of the single-condition sets.

    Returns
    -------
    scene : SceneSpec
    specs : list of FrameSpec
    reference : str
        Name of the reference frame.
    """
    conditions = set(conditions)
    unknown = conditions - set(CONDITIONS + PROFILE_CONDITIONS)
    if unknown or n_frames < 3:
        raise ValueError(f"unknown conditions {sorted(unknown)} or fewer than 3 frames ({n_frames})")
    draft = _base_draft(shape, n_frames, seed)
    for name, draw in _CONDITION_DRAWS.items():
        if name in conditions:
            draw(draft)
    specs = [FrameSpec(**_python_scalars(f)) for f in draft.frames.values()]
    return SceneSpec(**_python_scalars(draft.scene)), specs, draft.frames[draft.reference]["name"]
