"""One function per workflow stage: read its input files, call the science, write its outputs.

The Snakemake scripts in ``scripts/`` are thin wrappers around these, so each
stage can also be run and tested without Snakemake. ``settings`` is the
stage's section of the configuration (see ``config.yaml``).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from astropy.io import fits

from nsgflow import ALGORITHM_VERSIONS, __version__
from nsgflow.detect import StarFlag, detect_stars, estimate_saturation
from nsgflow.errors import FrameError, NsgflowError
from nsgflow.gradient import (
    background_noise,
    background_statistics,
    sample_background,
    star_mask,
    star_radius,
)
from nsgflow.io import (
    fits_text,
    frame_name,
    read_frame,
    read_header,
    read_json,
    write_csv,
    write_fits,
    write_json,
)
from nsgflow.match import estimate_offset, match_stars
from nsgflow.normalize import normalize_frame, normalized_header
from nsgflow.photometry import frame_hlr, measure_photometry
from nsgflow.provenance import environment, frame_provenance, settings_digest, sha256
from nsgflow.scale import fit_scale
from nsgflow.spline import fit_gradient
from nsgflow.weight import frame_weight, weight_noise

__all__ = [
    "header_values",
    "run_detect",
    "run_gradient",
    "run_normalize",
    "run_photometry",
    "run_samples",
    "run_scale",
    "run_step",
]

log = logging.getLogger("nsgflow")

PathLike = str | os.PathLike


def run_step(log_path: PathLike, step: Callable[..., None], *args: Any, **kwargs: Any) -> None:
    """Run one stage for Snakemake: log to ``log_path`` and stderr, turn nsgflow errors into one line.

    An :class:`~nsgflow.errors.NsgflowError` is logged as a single line naming
    the file and the fix, and the process exits with status 1 so Snakemake
    marks the job failed (and, with ``--keep-going``, goes on with the others).
    """
    handlers = [logging.FileHandler(log_path, mode="w"), logging.StreamHandler(sys.stderr)]
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", handlers=handlers, force=True)
    try:
        step(*args, **kwargs)
    except NsgflowError as exc:
        log.error("%s", exc)
        sys.exit(1)
    except Exception as exc:  # a bug, not bad input: keep the traceback in the log for the report
        log.exception("unexpected %s: %s (please report this with the log)", type(exc).__name__, exc)
        sys.exit(1)


#: Header keywords read into a frame's statistics, first found wins.
HEADER_KEYS = {
    "exptime": ("EXPTIME", "EXPOSURE"),
    "focallen": ("FOCALLEN",),
    "xpixsz": ("XPIXSZ", "PIXSIZE1"),
    "altitude": ("CENTALT", "OBJCTALT"),
    "noise_header": ("NOISE00", "NOISE"),
}


def header_values(header: fits.Header) -> dict[str, float | None]:
    """Header values nsgflow uses (exposure, focal length, pixel size, altitude, noise); None if absent."""
    values: dict[str, float | None] = {}
    for name, keys in HEADER_KEYS.items():
        found = next((header[k] for k in keys if k in header), None)
        try:
            values[name] = None if found is None else float(found)
        except (TypeError, ValueError):
            values[name] = None
    return values


def run_detect(frame: PathLike, catalog: PathLike, stats: PathLike, settings: dict) -> None:
    """Detect stars in ``frame``; write the star catalog CSV and the frame's statistics JSON."""
    data, header = read_frame(frame)
    try:
        stars = detect_stars(data, **settings)
    except FrameError as exc:
        raise FrameError(f"{frame}: {exc}") from exc
    values = header_values(header)
    missing = [k for k in ("exptime", "focallen", "xpixsz", "altitude") if values[k] is None]
    if missing:
        log.info("%s: header has no %s; defaults are used where they matter", frame, ", ".join(missing))
    summary = {
        "frame": frame_name(frame),
        "shape": list(data.shape),
        "stars": len(stars),
        "stars_clean": int((stars["flags"] == 0).sum()),
        "hlr_px": frame_hlr(stars),
        "saturation": None if np.isinf(saturation := estimate_saturation(data)) else saturation,
        **background_statistics(data),
        **values,
    }
    log.info(
        "%s: %d stars (%d flagged), sky %.1f, noise %.2f",
        frame,
        len(stars),
        len(stars) - summary["stars_clean"],
        summary["sky"],
        summary["noise"],
    )
    write_csv(catalog, stars)
    write_json(stats, summary)


def run_photometry(
    frame: PathLike,
    reference: PathLike,
    catalog: PathLike,
    ref_catalog: PathLike,
    table: PathLike,
    info: PathLike,
    match_settings: dict,
    settings: dict,
) -> None:
    """Match the frame's stars to the reference's and measure both; write the table and aperture info."""
    target_stars, ref_stars = pd.read_csv(catalog), pd.read_csv(ref_catalog)
    pairs = match_stars(ref_stars, target_stars, **match_settings)
    if len(pairs) < max(10, 0.2 * min(len(ref_stars), len(target_stars))):
        dx, dy, votes = estimate_offset(ref_stars, target_stars)
        if votes >= 5 and np.hypot(dx, dy) > match_settings["tolerance_px"]:
            raise FrameError(
                f"{frame}: only {len(pairs)} stars match the reference {reference}; the stars are "
                f"shifted by dx={dx:.1f}, dy={dy:.1f} px. Register the frames to the reference first."
            )
    if len(pairs) < 2:
        raise FrameError(
            f"{frame}: {len(pairs)} star(s) match the reference {reference} within "
            f"{match_settings['tolerance_px']} px; too few to measure the scale."
        )
    target_data, _ = read_frame(frame)
    ref_data, _ = read_frame(reference)
    phot, aperture = measure_photometry(ref_data, target_data, ref_stars, target_stars, pairs, **settings)
    log.info(
        "%s: %d matched, %d usable; aperture %.1f px; aperture correction %.4f",
        frame,
        len(phot),
        int((phot["status"] == "used").sum()),
        aperture["aperture_radius_px"],
        aperture["aperture_correction"],
    )
    write_csv(table, phot)
    write_json(info, aperture)


def run_scale(
    table: PathLike, info: PathLike, output: PathLike, *, frame: str, reference: str, settings: dict
) -> None:
    """Fit the scale from the photometry table, apply the aperture correction, write the JSON."""
    phot = pd.read_csv(table)
    aperture = read_json(info)
    result = {
        "frame": frame,
        "reference": reference,
        "stars_matched": len(phot),
        "algorithm_version": ALGORITHM_VERSIONS["scale"],
        "nsgflow_version": __version__,
    }
    if frame == reference:
        result.update(
            scale=1.0,
            scale_err=0.0,
            method="reference frame: scale 1 by definition",
            stars_used=int((phot["status"] == "used").sum()),
            rejected=[],
        )
        write_json(output, result)
        return
    candidates = phot["status"] == "used"
    if candidates.sum() < 2:
        raise FrameError(
            f"{frame}: {int(candidates.sum())} usable star(s) for the scale fit "
            f"(reasons: {phot['status'].value_counts().to_dict()}); the scale would be a guess."
        )
    sub = phot[candidates]
    fit = fit_scale(
        sub["flux_ref"].to_numpy(),
        sub["flux_target"].to_numpy(),
        sub["flux_err_ref"].to_numpy(),
        sub["flux_err_target"].to_numpy(),
        **settings,
    )
    status = phot["status"].to_numpy(dtype=object).copy()
    status[np.flatnonzero(candidates)[~fit.used]] = "ratio_outlier"
    correction, correction_err = aperture["aperture_correction"], aperture["aperture_correction_err"]
    scale = fit.scale * correction
    scale_err = scale * float(np.hypot(fit.scale_err / fit.scale, correction_err / correction))
    rejected = phot.loc[status != "used", ["ref_id", "target_id"]].assign(reason=status[status != "used"])
    result.update(
        scale=scale,
        scale_err=scale_err,
        transmission=1.0 / scale,
        fitted_slope=fit.scale,
        fitted_slope_err=fit.scale_err,
        intercept=fit.intercept,
        intrinsic_scatter=fit.intrinsic_scatter,
        aperture_correction=correction,
        aperture_correction_err=correction_err,
        method=fit.method,
        stars_used=int(fit.used.sum()),
        stars_rejected=pd.Series(status[status != "used"]).value_counts().sort_index().to_dict(),
        rejected=rejected.to_dict(orient="records"),
    )
    log.info("%s: m = %.5f +- %.5f from %d stars", frame, scale, scale_err, fit.used.sum())
    write_json(output, result)


def _mask_radius(stars: pd.DataFrame, noise: float, settings: dict) -> np.ndarray:
    amplitude = np.maximum(stars["peak"] - stars["sky"], 0.0)
    radius = star_radius(
        amplitude,
        frame_hlr(stars),
        noise,
        mask_sigma=settings["star_mask_sigma"],
        growth=settings["star_growth"],
    )
    saturated = (stars["flags"].to_numpy() & StarFlag.SATURATED) != 0
    return np.where(saturated, radius * settings["saturated_growth"], radius)


def run_samples(
    frame: PathLike,
    reference: PathLike,
    scale: PathLike,
    catalog: PathLike,
    ref_catalog: PathLike,
    output: PathLike,
    settings: dict,
) -> None:
    """Measure gradient samples of m*T - R away from the stars of either frame; write the CSV."""
    target, _ = read_frame(frame)
    ref, _ = read_frame(reference)
    if target.shape != ref.shape:
        raise FrameError(f"{frame} has shape {target.shape} but the reference {reference} has {ref.shape}")
    m = read_json(scale)["scale"]
    stars = [pd.read_csv(catalog), pd.read_csv(ref_catalog)]
    noises = [background_noise(target), background_noise(ref)]
    radii = np.concatenate([_mask_radius(s, n, settings) for s, n in zip(stars, noises, strict=True)])
    mask = star_mask(
        ref.shape,
        np.concatenate([s["x"] for s in stars]),
        np.concatenate([s["y"] for s in stars]),
        radii,
    )
    valid = (target != 0) & (ref != 0) & ~mask
    samples = sample_background(
        np.float32(m) * target - ref,
        valid,
        box_px=settings["box_px"],
        min_valid_fraction=settings["min_valid_fraction"],
    )
    log.info("%s: %d of %d samples used", frame, int((samples["status"] == "used").sum()), len(samples))
    write_csv(output, samples)


def run_gradient(samples: PathLike, frame: PathLike, output: PathLike, settings: dict) -> None:
    """Fit the gradient model to the samples and write it as a full-size float32 FITS."""
    table = pd.read_csv(samples)
    header = read_header(frame)
    shape = (int(header["NAXIS2"]), int(header["NAXIS1"]))
    used = table[table["status"] == "used"]
    try:
        model = fit_gradient(
            used["x"].to_numpy(),
            used["y"].to_numpy(),
            used["value"].to_numpy(),
            used["weight"].to_numpy(),
            shape,
            **settings,
        )
    except FrameError as exc:
        raise FrameError(f"{frame}: {exc}; lower samples.min_valid_fraction or samples.box_px") from exc
    out = fits.Header()
    out["NSGFRAME"] = (fits_text(Path(frame).name), "frame this gradient model belongs to")
    out["NSGSMOOT"] = (settings["smoothness"], "gradient smoothness (log10)")
    out["NSGGMIN"] = (float(model.min()), "smallest value of the gradient model")
    out["NSGGMAX"] = (float(model.max()), "largest value of the gradient model")
    write_fits(output, model, out)


def run_normalize(
    frame: PathLike,
    scale: PathLike,
    gradient: PathLike,
    stats: PathLike,
    ref_stats: PathLike,
    output: PathLike,
    provenance: PathLike,
    *,
    reference: PathLike,
    upstream: dict[str, str],
    settings: dict,
    workflow_folder: PathLike | None = None,
) -> None:
    """Write T' = m*T - G with the input header, weight and provenance keywords; then the provenance record.

    ``upstream`` maps each earlier output of this frame (``catalog``,
    ``photometry``, ...) to its path, to be hashed into the record.
    """
    data, header = read_frame(frame)
    result = read_json(scale)
    model, _ = read_frame(gradient)
    target_stats, reference_stats = read_json(stats), read_json(ref_stats)
    m = result["scale"]
    keys = {
        "WEIGHT": frame_weight(weight_noise(reference_stats), weight_noise(target_stats), m),
        "NSGNOISE": target_stats["noise"],
        "NSGTRANS": 1.0 / m,
        "NSGVER": __version__,
        "NSGHASH": sha256(frame),
        "NSGRHASH": sha256(reference),
        "NSGSETT": settings_digest(settings),
    }
    if target_stats.get("exptime"):
        keys["NSGTREXP"] = 1.0 / m / target_stats["exptime"]
    history = [f"nsgflow {__version__}: normalized against {Path(reference).name}"]
    history += [
        f"nsgflow {key}: {json.dumps(value, sort_keys=True)}" for key, value in sorted(settings.items())
    ]
    header = normalized_header(
        header,
        scale=m,
        scale_err=result["scale_err"],
        reference=Path(reference).name,
        history=history,
        extra=keys,
    )
    write_fits(output, normalize_frame(data, m, model), header)
    record = frame_provenance(
        frame_name(frame),
        {"frame": str(frame), "reference": str(reference)},
        {**upstream, "scale": str(scale), "gradient": str(gradient), "normalized": str(output)},
        settings,
        environment(workflow_folder),
    )
    write_json(provenance, record)
    log.info("%s: written %s (weight %.4f)", frame_name(frame), output, keys["WEIGHT"])
