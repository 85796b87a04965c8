"""The workflow's stages as functions on arrays and tables: no files.

Each function here is one rule's science, composed from the modules below
it; :mod:`nsgflow.pipeline` wraps each with reading and writing files, and
:func:`nsgflow.api.normalize` chains them all in memory. So a notebook and the
workflow compute the same numbers.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from astropy.io import fits

from nsgflow.defects import clean_defects
from nsgflow.detect import StarFlag, detect_stars, estimate_saturation
from nsgflow.errors import FrameError
from nsgflow.gradient import background_statistics, sample_background, star_mask, star_radius
from nsgflow.match import estimate_offset, match_stars
from nsgflow.photometry import frame_hlr, measure_photometry
from nsgflow.scale import fit_scale
from nsgflow.spline import fit_gradient, gcv_smoothness, reject_outlier_samples
from nsgflow.trails import find_trails, trail_mask

__all__ = [
    "HEADER_KEYS",
    "detect_frame",
    "gradient_model",
    "gradient_samples",
    "header_values",
    "match_and_measure",
    "sample_box_px",
    "scale_from_photometry",
]

log = logging.getLogger("nsgflow")

#: Header keywords read into a frame's statistics, first found wins.
HEADER_KEYS = {
    "exptime": ("EXPTIME", "EXPOSURE"),
    "focallen": ("FOCALLEN",),
    "xpixsz": ("XPIXSZ", "PIXSIZE1"),
    "altitude": ("CENTALT", "OBJCTALT"),
    "noise_header": ("NOISE00", "NOISE"),
}


def header_values(header: fits.Header | None) -> dict[str, float | None]:
    """Header values nsgflow uses (exposure, focal length, pixel size, altitude, noise); None if absent."""
    values: dict[str, float | None] = {}
    for name, keys in HEADER_KEYS.items():
        found = next((header[k] for k in keys if k in header), None) if header is not None else None
        try:
            values[name] = None if found is None else float(found)
        except (TypeError, ValueError):
            values[name] = None
    return values


def detect_frame(data: np.ndarray, header: fits.Header | None, settings: dict) -> tuple[pd.DataFrame, dict]:
    """Stage ``detect_stars``: the star catalog and the frame's statistics.

    Stars are detected on a copy with hot pixels and cosmic-ray tracks
    replaced (:func:`nsgflow.defects.clean_defects`; their count is in the
    statistics). The statistics hold the shape, star counts, median half-light radius,
    saturation level (None if unsaturated), background level, flatness and
    noise (:func:`nsgflow.gradient.background_statistics`) and the header
    values of :data:`HEADER_KEYS`.
    """
    saturation = estimate_saturation(data)  # found once, used for the flags and the statistics
    cleaned, defects = clean_defects(data)  # hot pixels would pass for sharp stars
    stars = detect_stars(cleaned, saturation=saturation, **settings)
    stats = {
        "shape": list(data.shape),
        "stars": len(stars),
        "stars_clean": int((stars["flags"] == 0).sum()),
        "hlr_px": frame_hlr(stars),
        "saturation": None if np.isinf(saturation) else saturation,
        "defects": defects,
        **background_statistics(data),
        **header_values(header),
    }
    return stars, stats


def match_and_measure(
    reference: np.ndarray,
    target: np.ndarray,
    ref_catalog: pd.DataFrame,
    target_catalog: pd.DataFrame,
    match_settings: dict,
    settings: dict,
) -> tuple[pd.DataFrame, dict]:
    """Stage ``measure_photometry``: match the catalogs and measure the pairs on both frames.

    Raises
    ------
    FrameError
        Fewer than 2 matches; when the star fields are offset, the message
        gives the shift (the frames are not registered).
    """
    pairs = match_stars(ref_catalog, target_catalog, **match_settings)
    if len(pairs) < max(10, 0.2 * min(len(ref_catalog), len(target_catalog))):
        dx, dy, votes = estimate_offset(ref_catalog, target_catalog)
        if votes >= 5 and np.hypot(dx, dy) > match_settings["tolerance_px"]:
            raise FrameError(
                f"only {len(pairs)} stars match the reference; the stars are shifted by "
                f"dx={dx:.1f}, dy={dy:.1f} px. Register the frames to the reference first."
            )
    if len(pairs) < 2:
        raise FrameError(
            f"{len(pairs)} star(s) match the reference within {match_settings['tolerance_px']} px; "
            "too few to measure the scale."
        )
    return measure_photometry(reference, target, ref_catalog, target_catalog, pairs, **settings)


def scale_from_photometry(table: pd.DataFrame, info: dict, *, is_reference: bool, settings: dict) -> dict:
    """Stage ``fit_scale``: the scale m with its uncertainty, the fit, and every rejected star with why.

    The fitted slope is multiplied by the aperture correction, and their
    uncertainties are combined. The reference gets m = 1 exactly.

    Raises
    ------
    FrameError
        Fewer than 2 usable stars: the scale would be a guess.
    """
    result: dict = {"stars_matched": len(table)}
    if is_reference:
        result.update(
            scale=1.0,
            scale_err=0.0,
            transmission=1.0,
            method="reference frame: scale 1 by definition",
            stars_used=int((table["status"] == "used").sum()),
            stars_rejected={},
            rejected=[],
        )
        return result
    candidates = table["status"] == "used"
    if candidates.sum() < 2:
        raise FrameError(
            f"{int(candidates.sum())} usable star(s) for the scale fit "
            f"(reasons: {table['status'].value_counts().to_dict()}); the scale would be a guess."
        )
    sub = table[candidates]
    fit = fit_scale(
        sub["flux_ref"].to_numpy(),
        sub["flux_target"].to_numpy(),
        sub["flux_err_ref"].to_numpy(),
        sub["flux_err_target"].to_numpy(),
        **settings,
    )
    status = table["status"].to_numpy(dtype=object).copy()
    status[np.flatnonzero(candidates)[~fit.used]] = "ratio_outlier"
    correction, correction_err = info["aperture_correction"], info["aperture_correction_err"]
    scale = fit.scale * correction
    scale_err = scale * float(np.hypot(fit.scale_err / fit.scale, correction_err / correction))
    rejected = table.loc[status != "used", ["ref_id", "target_id"]].assign(reason=status[status != "used"])
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
    return result


def _mask_radius(stars: pd.DataFrame, noise: float, settings: dict, hlr: float | None = None) -> np.ndarray:
    amplitude = np.maximum(stars["peak"] - stars["sky"], 0.0)
    radius = star_radius(
        amplitude,
        frame_hlr(stars) if hlr is None else hlr,
        noise,
        mask_sigma=settings["star_mask_sigma"],
        growth=settings["star_growth"],
    )
    saturated = (stars["flags"].to_numpy() & StarFlag.SATURATED) != 0
    return np.where(saturated, radius * settings["saturated_growth"], radius)


#: Seeing assumed for the automatic sample size when star sizes cannot be measured, arcsec FWHM.
TYPICAL_SEEING_ARCSEC = 2.5
#: Automatic sample box: this many star FWHMs, a multiple of 8 px, within these bounds.
AUTO_BOX_FWHM, AUTO_BOX_PX = 8.0, (16, 128)


def sample_box_px(setting: int | str, stats: list[dict]) -> tuple[int, str]:
    """The sample box size to use, and how it was found.

    An integer setting is used as it is. ``"auto"``, as NormalizeScaleGradient
    does, follows the star size: :data:`AUTO_BOX_FWHM` times the larger FWHM
    of the two frames (measured: the median half-light radius / 0.63, as for a
    Moffat profile of beta 3), or, when no frame has measured stars, the FWHM
    that :data:`TYPICAL_SEEING_ARCSEC` gives at the image scale from FOCALLEN
    (mm) and XPIXSZ (um); rounded up to a multiple of 8 px within :data:`AUTO_BOX_PX`.

    Examples
    --------
    >>> sample_box_px(48, [])
    (48, 'set by hand')
    >>> sample_box_px("auto", [{"hlr_px": 2.5}, {"hlr_px": 1.9}])[0]
    32
    >>> sample_box_px("auto", [{"hlr_px": None, "focallen": 2000.0, "xpixsz": 3.76}])
    (56, 'auto: 8 x FWHM 6.4 px (2.5 arcsec seeing at 0.39 arcsec/px)')
    """
    if setting != "auto":
        return int(setting), "set by hand"
    measured = [s["hlr_px"] / 0.63 for s in stats if s.get("hlr_px") and np.isfinite(s["hlr_px"])]
    if measured:
        fwhm, why = max(measured), "measured star size"
    else:
        optics = next((s for s in stats if s.get("focallen") and s.get("xpixsz")), None)
        if optics is None:
            return 32, "auto: no stars measured and no FOCALLEN/XPIXSZ in the headers: 32 px"
        arcsec_per_px = 206.265 * optics["xpixsz"] / optics["focallen"]
        fwhm = TYPICAL_SEEING_ARCSEC / arcsec_per_px
        why = f"{TYPICAL_SEEING_ARCSEC} arcsec seeing at {arcsec_per_px:.2f} arcsec/px"
    low, high = AUTO_BOX_PX
    box = int(min(max(8 * np.ceil(AUTO_BOX_FWHM * fwhm / 8), low), high))
    return box, f"auto: {AUTO_BOX_FWHM:g} x FWHM {fwhm:.1f} px ({why})"


def gradient_samples(
    target: np.ndarray,
    reference: np.ndarray,
    scale: float,
    catalogs: list[pd.DataFrame],
    stats: list[dict],
    settings: dict,
) -> pd.DataFrame:
    """Stage ``sample_background``: box means of m*T - R, masking stars and trails.

    ``catalogs`` and ``stats`` are the two frames' star catalogs and
    statistics: each star's mask radius depends on its own frame's noise and
    peak and on the broader frame's star size, and the box size
    (:func:`sample_box_px`) on the star sizes and image scale. Trails in
    either frame (:func:`nsgflow.trails.find_trails`) are masked too.
    """
    if target.shape != reference.shape:
        raise FrameError(f"the frame has shape {target.shape} but the reference has {reference.shape}")
    box_px, why = sample_box_px(settings["box_px"], stats)
    log.info("sample box %d px (%s)", box_px, why)
    noises = [s["noise"] for s in stats]
    # every star is masked as if it had the broader frame's size: in the sharper frame its light is
    # inside that radius, in the broader one its wings reach that far
    sizes = [frame_hlr(c) for c in catalogs if len(c)]
    broad = max(sizes) if sizes and np.isfinite(max(sizes)) else None
    radii = np.concatenate(
        [_mask_radius(s, n, settings, broad) for s, n in zip(catalogs, noises, strict=True)]
    )
    mask = star_mask(
        reference.shape,
        np.concatenate([s["x"] for s in catalogs]),
        np.concatenate([s["y"] for s in catalogs]),
        radii,
    )
    valid = (target != 0) & (reference != 0) & ~mask
    difference = np.float32(scale) * target - reference
    trails = find_trails(difference, valid)
    if len(trails):
        valid &= ~trail_mask(valid.shape, trails)
        for t in trails.itertuples():
            log.info(
                "trail in the %s masked: %.0f px wide, at %.2f deg to the x axis, %.1f px from pixel (0, 0)",
                "target" if t.sign > 0 else "reference",
                2 * t.half_width_px,
                (np.degrees(t.angle) + 90.0) % 180.0,
                abs(t.rho_px),
            )
    return sample_background(
        difference,
        valid,
        box_px=box_px,
        min_valid_fraction=settings["min_valid_fraction"],
    )


def gradient_model(
    samples: pd.DataFrame, shape: tuple[int, int], settings: dict
) -> tuple[np.ndarray, pd.Series, float]:
    """Stage ``fit_gradient``: the spline model G of the used samples, full size, float32.

    Samples that disagree with the smooth model of the others by more than
    ``clip_sigma`` robust sigmas are left out (0 turns this off), except within
    1.5 boxes of the frame's edge; the second value is the sample statuses with
    those marked ``outlier``. With ``smoothness: auto`` the smoothness is the
    one that minimizes the generalized cross-validation score
    (:func:`nsgflow.spline.gcv_smoothness`), for the rejection among all
    samples and for the model among those kept; the third value is the
    smoothness used.
    """
    settings = dict(settings)
    clip_sigma = settings.pop("clip_sigma")
    status = samples["status"].copy()
    used = samples[status == "used"]
    columns = [used[c].to_numpy() for c in ("x", "y", "value", "weight")]
    auto = settings["smoothness"] == "auto"

    def chosen() -> float:
        if auto:
            return gcv_smoothness(*columns, shape, max_points=settings["max_points"])
        return float(settings["smoothness"])

    try:
        if clip_sigma > 0 and len(used) >= 3:
            smoothness = chosen()
            keep = reject_outlier_samples(
                *columns,
                shape,
                clip_sigma=clip_sigma,
                edge_px=1.5 * float(samples["box_px"].iloc[0]),
                smoothness=smoothness,
                max_points=settings["max_points"],
            )
            status.loc[used.index[~keep]] = "outlier"
            if not keep.all():
                columns = [c[keep] for c in columns]
                smoothness = chosen()
        else:
            smoothness = chosen()
        settings["smoothness"] = smoothness
        if auto:
            log.info("smoothness %.2f (generalized cross-validation)", settings["smoothness"])
        return fit_gradient(*columns, shape, **settings), status, settings["smoothness"]
    except FrameError as exc:
        raise FrameError(f"{exc}; lower samples.min_valid_fraction or samples.box_px") from exc
