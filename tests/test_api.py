import importlib
import pkgutil

import numpy as np
import pytest

import nsgflow
from nsgflow import synthetic


def test_public_names_are_the_documented_functions_whatever_was_imported():
    for module in pkgutil.iter_modules(nsgflow.__path__):
        if module.name not in {"cli", "diagnostics"}:
            importlib.import_module(f"nsgflow.{module.name}")
    assert nsgflow.normalize.__module__ == "nsgflow.api" and callable(nsgflow.normalize)
    assert [name for name in nsgflow.__all__ if not hasattr(nsgflow, name)] == []
    assert nsgflow.fit_scale.__module__ == "nsgflow.scale"


def test_default_settings_are_the_config_sections():
    settings = nsgflow.default_settings()
    assert set(settings) == {"detect", "match", "photometry", "scale", "samples", "gradient"}
    assert settings["gradient"]["smoothness"] == "auto"


def test_normalize_recovers_the_synthetic_scale_gradient_and_weight():
    scene = synthetic.SceneSpec(shape=(300, 400), n_stars=600, seed=1)
    ref_spec = synthetic.FrameSpec("ref", fwhm_px=3.0, seed=1)
    spec = synthetic.FrameSpec(
        "t", scale=1.5, fwhm_px=3.6, sky_adu=900, slope_x_adu=80, slope_y_adu=-40, seed=2
    )
    reference = synthetic.render_frame(scene, ref_spec)
    target = synthetic.render_frame(scene, spec)
    result = nsgflow.normalize(target, reference)
    noise = synthetic.sky_noise(ref_spec)
    # the scale to 0.5 % and within 3 of its own sigmas (1.4985 +- 0.0053 today)
    assert result.scale == pytest.approx(1.5, rel=0.005)
    assert abs(result.scale - 1.5) < 3 * result.scale_err
    # G = m * (target's background) - (reference's): every pixel within 0.3 sky sigmas (0.14 today)
    shape = target.shape
    true_gradient = 1.5 * synthetic.background(shape, spec) - synthetic.background(shape, ref_spec)
    assert np.abs(result.gradient - true_gradient).max() < 0.3 * noise
    # what is left of the background in the normalized frame: 50 px boxes within 0.15 sigmas (0.06 today)
    blocks = synthetic.box_medians(synthetic.residual(result.normalized, target, spec, ref_spec), 50)
    assert len(blocks) == 48 and np.abs(blocks).max() < 0.15 * noise
    # (noise_ref / (m * noise_target))**2 of the true sky noises, to 10 % (stars raise the measured noise)
    true_weight = (noise / (1.5 * synthetic.sky_noise(spec))) ** 2
    assert result.weight == pytest.approx(true_weight, rel=0.1)
