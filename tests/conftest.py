"""Shared fixtures: small synthetic frames with known truth."""

from __future__ import annotations

import numpy as np
import pytest

from nsgflow import synthetic

#: A small field: big enough for a few hundred stars, small enough for fast tests.
SMALL_SCENE = synthetic.SceneSpec(shape=(400, 600), n_stars=1400, seed=7)


@pytest.fixture(scope="session")
def frame_set(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Four frames on disk (frame_01 is the reference) and their truth."""
    directory = tmp_path_factory.mktemp("frames")
    return synthetic.make_frame_set(directory, SMALL_SCENE, synthetic.demo_specs(4, seed=3), "frame_01")


@pytest.fixture(scope="session")
def pair() -> dict:
    """A reference and a broader-seeing, dimmer, tilted target as arrays, with their specs."""
    ref = synthetic.FrameSpec(name="ref", fwhm_px=2.8, sky_adu=400, seed=1)
    tgt = synthetic.FrameSpec(
        name="tgt",
        scale=1.37,
        fwhm_px=4.2,
        sky_adu=900,
        slope_x_adu=120,
        slope_y_adu=-60,
        glow_adu=150,
        border_px=(6, 0, 9, 0),
        seed=2,
    )
    return {
        "ref": synthetic.render_frame(SMALL_SCENE, ref),
        "tgt": synthetic.render_frame(SMALL_SCENE, tgt),
        "ref_spec": ref,
        "tgt_spec": tgt,
    }


def moffat_enclosed(r: np.ndarray | float, alpha: float, beta: float) -> np.ndarray:
    """Fraction of a round Moffat profile's light within radius ``r``."""
    return 1.0 - (1.0 + (np.asarray(r) / alpha) ** 2) ** (1.0 - beta)


def moffat_star(
    shape: tuple[int, int], x0: float, y0: float, flux: float, fwhm: float, beta: float = 3.0
) -> np.ndarray:
    """One Moffat star normalised to ``flux`` over the whole image."""
    alpha = synthetic.moffat_alpha(fwhm, beta)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    star = (1 + ((xx - x0) ** 2 + (yy - y0) ** 2) / alpha**2) ** -beta
    return flux * star / star.sum()
