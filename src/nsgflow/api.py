"""The public Python API: normalize frames in memory, with the workflow's own stage functions.

Arrays in, arrays out; settings are the sections of ``config.yaml``, validated
by the same schema, so a notebook gets the numbers the workflow writes.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from astropy.io import fits

from nsgflow.channels import channel_values, unsupported_shape
from nsgflow.errors import FrameError
from nsgflow.io import clean_frame
from nsgflow.normalized import normalize_frame
from nsgflow.settings import FRAME_SECTIONS, merge_sections, package_config
from nsgflow.spline import curvature
from nsgflow.stages import (
    detect_frame,
    gradient_model,
    gradient_samples,
    match_and_measure,
    scale_from_photometry,
)
from nsgflow.weight import stats_weight
from nsgflow.workflow import validate_config

__all__ = ["NormalizeResult", "default_settings", "normalize", "resolve_settings"]


def default_settings() -> dict:
    """Every stage's settings with their defaults, as in ``config.yaml``."""
    return resolve_settings()


def resolve_settings(**sections: dict) -> dict:
    """Defaults overridden by ``sections`` (e.g. ``gradient={"smoothness": -1}``), validated.

    Raises
    ------
    ConfigError
        An unknown section or key, or a value out of range (the message names it).
    """
    config = merge_sections(package_config(), copy.deepcopy(sections))
    config = validate_config({**config, "frames": "-", "reference": "-"})
    return {name: config[name] for name in FRAME_SECTIONS}


@dataclass
class NormalizeResult:
    """Everything :func:`normalize` found for one target frame."""

    #: T' = m*T - G, float32; 0 where the target had no data.
    normalized: np.ndarray
    #: The scale m (colour frames: the mean over channels; see :attr:`scales`).
    scale: float
    scale_err: float
    #: The gradient model G, float32, the frame's shape.
    gradient: np.ndarray
    #: NSG weight (noise_ref / (m * noise_target))**2, averaged over channels.
    weight: float
    #: Star catalogs of the reference and the target.
    ref_catalog: pd.DataFrame
    target_catalog: pd.DataFrame
    #: Matched-star photometry (one row per pair, with ``status``) and aperture details.
    photometry: pd.DataFrame
    aperture: dict
    #: The scale fit: stars used and rejected, intercept, method, ...
    scale_fit: dict
    #: Gradient samples of m*T - R; ``status`` ``outlier`` for those the model left out.
    samples: pd.DataFrame
    #: Frame statistics (sky, noise, star size, header values) of reference and target.
    ref_stats: dict
    target_stats: dict
    settings: dict = field(repr=False)

    @property
    def transmission(self) -> float:
        """1/m: the target's brightness relative to the reference."""
        return 1.0 / self.scale

    @property
    def scales(self) -> list[float]:
        """Each channel's scale m (one for mono frames)."""
        return channel_values(self.scale_fit, "scale")

    def curvature(self) -> np.ndarray:
        """The gradient model minus its best-fit plane (per channel)."""
        return curvature(self.gradient)


def _checked_frames(target: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two frames as the stages take them (:func:`nsgflow.io.clean_frame`), of one supported shape.

    Raises
    ------
    FrameError
        A frame's shape is not supported, or the two differ.
    """
    reference, target = clean_frame(reference), clean_frame(target)
    for name, data in (("reference", reference), ("target", target)):
        if unsupported_shape(data.shape):
            raise FrameError(f"{name}: {unsupported_shape(data.shape)}")
    if target.shape != reference.shape:
        raise FrameError(
            f"the target has shape {target.shape} but the reference {reference.shape}; give frames of one "
            "shape, registered to one grid, both mono (ny, nx) or both colour (3, ny, nx)"
        )
    return target, reference


def normalize(
    target: np.ndarray,
    reference: np.ndarray,
    *,
    target_header: fits.Header | None = None,
    reference_header: fits.Header | None = None,
    **settings: dict,
) -> NormalizeResult:
    """Normalize ``target`` to ``reference``: T' = m*T - G, as the workflow does for one frame.

    Parameters
    ----------
    target, reference : numpy.ndarray, shape (ny, nx) or (3, ny, nx)
        Registered, linear frames of one shape, both mono or both colour
        (channels first); 0, NaN and inf are no data. Any numeric type,
        byte order and memory layout (Fortran order, transposed views).
    target_header, reference_header : astropy.io.fits.Header, optional
        Headers for EXPTIME, NOISExx and the like (used for the weight).
    **settings : dict
        Sections of ``config.yaml`` to override, e.g. ``gradient={"smoothness": -1.0}``.

    Returns
    -------
    NormalizeResult

    Raises
    ------
    FrameError
        The frames' shapes are not supported or differ (checked first, naming
        both), or a frame cannot be used (no stars, not registered, too few
        stars, ...). It is a :class:`ValueError`.
    ConfigError
        A setting is unknown or out of range.

    Examples
    --------
    >>> from nsgflow import synthetic
    >>> scene = synthetic.SceneSpec(shape=(300, 400), n_stars=600, seed=1)
    >>> ref = synthetic.render_frame(scene, synthetic.FrameSpec("ref", fwhm_px=3.0, seed=1))
    >>> tgt = synthetic.render_frame(scene, synthetic.FrameSpec("t", scale=1.5, fwhm_px=3.6, sky_adu=900,
    ...                                                          slope_x_adu=80, seed=2))
    >>> result = normalize(tgt, ref)
    >>> abs(result.scale / 1.5 - 1) < 0.01, result.normalized.dtype.name
    (True, 'float32')
    """
    config = resolve_settings(**settings)
    is_reference = target is reference
    target, reference = _checked_frames(target, reference)
    ref_catalog, ref_stats, ref_defects = detect_frame(reference, reference_header, config["detect"])
    target_catalog, target_stats, target_defects = detect_frame(target, target_header, config["detect"])
    table, aperture = match_and_measure(
        target,
        reference,
        target_catalog,
        ref_catalog,
        config["match"],
        config["photometry"],
        defects=[target_defects, ref_defects],
        stats=[target_stats, ref_stats],
    )
    fit = scale_from_photometry(table, aperture, is_reference=is_reference, settings=config["scale"])
    samples = gradient_samples(
        target,
        reference,
        channel_values(fit, "scale"),
        [target_catalog, ref_catalog],
        [target_stats, ref_stats],
        config["samples"],
        photometry=aperture,
        defects=[target_defects, ref_defects],
    )
    model, status, _ = gradient_model(samples, target.shape[-2:], config["gradient"])
    samples = samples.assign(status=status)
    return NormalizeResult(
        normalized=normalize_frame(target, channel_values(fit, "scale"), model),
        scale=fit["scale"],
        scale_err=fit["scale_err"],
        gradient=model,
        weight=stats_weight(target_stats, ref_stats, fit),
        ref_catalog=ref_catalog,
        target_catalog=target_catalog,
        photometry=table,
        aperture=aperture,
        scale_fit=fit,
        samples=samples,
        ref_stats=ref_stats,
        target_stats=target_stats,
        settings=config,
    )
