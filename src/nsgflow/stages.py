"""The workflow's stages as functions on arrays and tables: no files.

Each function here is one rule's science, composed from the modules below
it; :mod:`nsgflow.pipeline` wraps each with reading and writing files, and
:func:`nsgflow.api.normalize` chains them all in memory. So a notebook and the
workflow compute the same numbers.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import sep

from nsgflow.channels import channel_record, combine, luminance, planes
from nsgflow.defects import Defects, defects_replaced, find_defects
from nsgflow.detect import StarFlag, detect_stars, estimate_saturation
from nsgflow.differences import MeanDifference, channel_differences, clip_level, matched_differences
from nsgflow.errors import FrameError
from nsgflow.gradient import (
    background_noise,
    background_statistics,
    sample_background,
    star_mask,
)
from nsgflow.match import estimate_offset, match_stars
from nsgflow.photometry import frame_hlr, measure_photometry
from nsgflow.sample_settings import mask_radii, sample_box_px
from nsgflow.scale import fit_scale
from nsgflow.spline import fit_gradient, gcv_smoothness, reject_outlier_samples
from nsgflow.trails import find_trails, trail_mask

__all__ = [
    "DEFECT_COLUMNS",
    "HEADER_KEYS",
    "channel_defects",
    "defects_table",
    "detect_frame",
    "gradient_model",
    "gradient_samples",
    "header_values",
    "match_and_measure",
    "scale_from_photometry",
]

log = logging.getLogger("nsgflow")

#: Mesh of the background map whose level and range are a frame's statistics (px).
STATISTICS_BOX_PX = 64

#: Header keywords read into a frame's statistics, first found wins.
HEADER_KEYS = {
    "exptime": ("EXPTIME", "EXPOSURE"),
    "focallen": ("FOCALLEN",),
    "xpixsz": ("XPIXSZ", "PIXSIZE1"),
    "altitude": ("CENTALT", "OBJCTALT"),
    "noise_header": ("NOISE00", "NOISE"),
}


#: Columns of a frame's defect table (:func:`defects_table`).
DEFECT_COLUMNS = ["channel", "row", "col", "value"]


def defects_table(found: Sequence[Defects]) -> pd.DataFrame:
    """Every channel's defects (:func:`nsgflow.defects.find_defects`), channel c's in ``found[c]``."""
    tables = [
        pd.DataFrame({"channel": channel, "row": rows, "col": cols, "value": values})
        for channel, (rows, cols, values) in enumerate(found)
    ]
    return pd.concat(tables, ignore_index=True)[DEFECT_COLUMNS]


def channel_defects(table: pd.DataFrame, channel: int) -> Defects:
    """A channel's defects in a :func:`defects_table`, as :func:`nsgflow.defects.find_defects` has them."""
    rows = table[table["channel"] == channel]
    return rows["row"].to_numpy(np.int64), rows["col"].to_numpy(np.int64), rows["value"].to_numpy()


def _header_float(header: Mapping[str, Any] | None, key: str) -> float | None:
    try:
        return float(header[key]) if header is not None and key in header else None
    except (TypeError, ValueError):
        return None


def header_values(header: Mapping[str, Any] | None) -> dict[str, float | None]:
    """Header values nsgflow uses (exposure, focal length, pixel size, altitude, noise); None if absent."""
    return {
        name: next((v for v in (_header_float(header, k) for k in keys) if v is not None), None)
        for name, keys in HEADER_KEYS.items()
    }


def _saturated_in_a_channel(
    data: np.ndarray, stars: pd.DataFrame, levels: Sequence[float], linear_range: float
) -> np.ndarray:
    """True for stars whose centre pixel reaches ``linear_range`` of its channel's saturation level."""
    iy = np.clip(np.rint(stars["y"].to_numpy()).astype(int), 0, data.shape[1] - 1)
    ix = np.clip(np.rint(stars["x"].to_numpy()).astype(int), 0, data.shape[2] - 1)
    saturated = np.zeros(len(stars), bool)
    for plane, level in zip(planes(data), levels, strict=True):
        saturated |= plane[iy, ix] >= linear_range * level
    return saturated


def _level(saturation: float) -> float | None:
    """A saturation level for the statistics: None for an unsaturated frame."""
    return None if np.isinf(saturation) else float(saturation)


def detect_frame(
    data: np.ndarray, header: Mapping[str, Any] | None, settings: dict
) -> tuple[pd.DataFrame, dict, pd.DataFrame]:
    """Stage ``detect_stars``: the star catalog, the frame's statistics and its defects.

    Stars are detected with hot pixels and cosmic-ray tracks replaced
    (:func:`nsgflow.defects.defects_replaced`; their count is in the
    statistics). The third value is the frame's defects per channel
    (:func:`defects_table`), for the photometry of every frame measured
    against this one, so no frame is searched twice. The statistics hold the
    shape, star counts, median half-light radius, saturation level (None if
    unsaturated) and the ``linear_range`` below it, background level, flatness and noise
    (:func:`nsgflow.gradient.background_statistics`) and the header values of
    :data:`HEADER_KEYS`.

    A colour frame, shape ``(3, ny, nx)``, is searched on its luminance
    (:func:`nsgflow.channels.luminance`); a star saturated in any channel is
    flagged, and the statistics add ``channels``: each channel's measured
    ``noise``, its header's ``noise_header`` (NOISE00, NOISE01, NOISE02) and
    its ``saturation`` level.
    """
    lum = luminance(data)
    saturation = estimate_saturation(lum)  # found once, used for the flags and the statistics
    # sep's background, made once when detection and the statistics use the same mesh
    background = None
    box = settings.get("background_box_px", 64)
    found = find_defects(lum)
    with defects_replaced(lum, found=[found]) as (defects,):  # hot pixels would pass for sharp stars
        if box == STATISTICS_BOX_PX and (lum != 0).any():
            background = sep.Background(lum, mask=lum == 0, bw=box, bh=box)
        stars = detect_stars(lum, saturation=saturation, background=background, **settings)
    levels = [estimate_saturation(plane) for plane in planes(data)] if data.ndim == 3 else []
    if data.ndim == 3:
        saturated = _saturated_in_a_channel(data, stars, levels, settings["linear_range"])
        stars["flags"] = stars["flags"] | np.where(saturated, int(StarFlag.SATURATED), 0)
    stats = {
        "shape": list(data.shape),
        "stars": len(stars),
        "stars_clean": int((stars["flags"] == 0).sum()),
        "hlr_px": frame_hlr(stars),
        "saturation": _level(saturation),
        "linear_range": settings["linear_range"],
        "defects": defects,
        **background_statistics(lum, STATISTICS_BOX_PX, background=background),
        **header_values(header),
    }
    if data.ndim == 3:
        stats["channels"] = [
            {
                "noise": background_noise(plane),
                "noise_header": _header_float(header, f"NOISE{c:02d}"),
                "saturation": _level(level),
            }
            for c, (plane, level) in enumerate(zip(planes(data), levels, strict=True))
        ]
    per_channel = [found] if data.ndim == 2 else [find_defects(plane) for plane in planes(data)]
    return stars, stats, defects_table(per_channel)


def match_and_measure(
    target: np.ndarray,
    reference: np.ndarray,
    target_catalog: pd.DataFrame,
    ref_catalog: pd.DataFrame,
    match_settings: dict,
    settings: dict,
    defects: Sequence[pd.DataFrame] | None = None,
    stats: Sequence[dict] | None = None,
) -> tuple[pd.DataFrame, dict]:
    """Photometry stage (rule ``measure_photometry``): match the catalogs, measure the pairs on both frames.

    ``defects`` and ``stats`` are the target's and the reference's defect
    tables and statistics from :func:`detect_frame`; without defects they
    are searched again, without statistics no core counts as clipped.

    Colour frames are measured channel by channel with the same pairs and
    aperture: the table has one row per pair and channel (column ``channel``,
    0 for mono), the aperture record one entry per channel
    (:func:`nsgflow.channels.combine`).

    Raises
    ------
    FrameError
        Fewer than 2 matches; when the star fields are offset, the message
        gives the shift (the frames are not registered).
    """
    pairs = match_stars(target_catalog, ref_catalog, **match_settings)
    if len(pairs) < max(10, 0.2 * min(len(ref_catalog), len(target_catalog))):
        dx, dy, votes = estimate_offset(target_catalog, ref_catalog)
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
    tables, infos = [], []
    for channel, (target_plane, ref_plane) in enumerate(zip(planes(target), planes(reference), strict=True)):
        found = None if defects is None else [channel_defects(known, channel) for known in defects]
        table, info = measure_photometry(
            target_plane,
            ref_plane,
            target_catalog,
            ref_catalog,
            pairs,
            **settings,
            defects=found,
            clip_levels=None if stats is None else [clip_level(each, channel) for each in stats],
        )
        tables.append(table.assign(channel=channel))
        infos.append(info)
    return pd.concat(tables, ignore_index=True), combine(infos)


def scale_from_photometry(table: pd.DataFrame, info: dict, *, is_reference: bool, settings: dict) -> dict:
    """Scale stage (rule ``fit_scale``): m with its uncertainty, the fit, every rejected star and why.

    m is the fitted slope; its uncertainty combines the fit's with the
    fitted star profiles' (``profile_error``). The reference gets m = 1 exactly.

    A colour frame gets a scale per channel (``channels``); its ``scale`` is
    their mean and its ``scale_err`` that mean times the largest relative
    uncertainty of a channel, for reports and frame rejection.

    Raises
    ------
    FrameError
        Fewer than 2 usable stars: the scale would be a guess.
    """
    channels = table["channel"].to_numpy() if "channel" in table else np.zeros(len(table), int)
    results = []
    for channel in np.unique(channels):
        try:
            results.append(
                _channel_scale(
                    table[channels == channel],
                    channel_record(info, int(channel)),
                    is_reference=is_reference,
                    settings=settings,
                )
            )
        except FrameError as exc:
            if "channels" not in info:
                raise
            raise FrameError(f"channel {channel}: {exc}") from exc
    if len(results) == 1:
        return results[0]
    scales = np.array([r["scale"] for r in results])
    scale = float(scales.mean())
    worst = max(r["scale_err"] / r["scale"] for r in results)
    return combine(
        results,
        {
            "scale": scale,
            "scale_err": scale * worst,
            "transmission": 1.0 / scale,
            "stars_used": min(r["stars_used"] for r in results),
            "method": f"per channel: {results[0]['method']}",
        },
    )


def _channel_scale(table: pd.DataFrame, info: dict, *, is_reference: bool, settings: dict) -> dict:
    """:func:`scale_from_photometry` for one channel."""
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
        sub["flux_target"].to_numpy(),
        sub["flux_ref"].to_numpy(),
        sub["flux_err_target"].to_numpy(),
        sub["flux_err_ref"].to_numpy(),
        **settings,
    )
    status = table["status"].to_numpy(dtype=object).copy()
    status[np.flatnonzero(candidates)[~fit.used]] = "ratio_outlier"
    scale = fit.scale
    scale_err = scale * float(np.hypot(fit.scale_err / fit.scale, info["profile_error"]))
    rejected = table.loc[status != "used", ["ref_id", "target_id"]].assign(reason=status[status != "used"])
    result.update(
        scale=scale,
        scale_err=scale_err,
        transmission=1.0 / scale,
        fit_err=fit.scale_err,
        profile_error=info["profile_error"],
        intercept=fit.intercept,
        intrinsic_scatter=fit.intrinsic_scatter,
        method=fit.method,
        stars_used=int(fit.used.sum()),
        stars_rejected=pd.Series(status[status != "used"]).value_counts().sort_index().to_dict(),
        rejected=rejected.to_dict(orient="records"),
    )
    return result


def gradient_samples(
    target: np.ndarray,
    reference: np.ndarray,
    scale: float | Sequence[float],
    catalogs: list[pd.DataFrame],
    stats: list[dict],
    settings: dict,
    *,
    photometry: dict | None = None,
    defects: Sequence[pd.DataFrame] = (),
    overwrite_target: bool = False,
) -> pd.DataFrame:
    """Samples stage (rule ``sample_gradient``): box means of m*T - R, masking stars and trails.

    ``catalogs`` and ``stats`` are the two frames' star catalogs and
    statistics: each star's mask radius depends on its own frame's noise and
    peak and on the broader frame's star size
    (:func:`nsgflow.sample_settings.star_mask_radii`), and the box size
    (:func:`nsgflow.sample_settings.sample_box_px`) on the star sizes and
    image scale. Trails in either frame (:func:`nsgflow.trails.find_trails`, on the mean
    of the channels' m*T - R) are masked too. ``photometry``, the photometry
    stage's record, gives the frames' fitted star profiles: with
    ``match_profiles`` the samples are of the difference of the two frames
    convolved to one profile (:func:`nsgflow.differences.matched_differences`),
    each over its own pixels with data, less its own trails and the pixels of
    its ``defects`` table and their neighbours (convolved, a hot pixel would
    spread beyond the clipping's reach); the light of stars that only one
    frame holds is left out as far as it reaches
    (:func:`nsgflow.differences.stars_held_once`).
    Colour frames take one scale per channel and are sampled per channel in
    the same boxes; the ``channel`` column tells them apart (0 for mono).
    With ``overwrite_target`` (float32 ``target`` only) the difference is
    computed in ``target``'s memory, which saves a frame's worth.
    """
    if target.shape != reference.shape:
        raise FrameError(f"the frame has shape {target.shape} but the reference has {reference.shape}")
    box_px, why = sample_box_px(settings["box_px"], stats)
    log.info("sample box %d px (%s)", box_px, why)
    radii = mask_radii(catalogs, stats, settings)
    if np.isfinite(radii).any():
        low, mid, high = np.nanpercentile(radii, [0, 50, 100])
        how = "set by hand" if settings["star_radius_px"] != "auto" else "auto"
        log.info("star mask radius %.1f to %.1f px, median %.1f (%s)", low, high, mid, how)
    stars = star_mask(
        reference.shape[-2:],
        np.concatenate([s["x"] for s in catalogs]),
        np.concatenate([s["y"] for s in catalogs]),
        radii,
    )
    # in place from here: each frame-sized temporary costs 24 or 96 MB
    own = [_with_data(frame) for frame in (target, reference)]
    data = own[0] & own[1]
    matched = settings["match_profiles"] and photometry is not None
    scales = np.broadcast_to(np.asarray(scale, np.float32), (len(planes(target)),))
    trails = _trails(MeanDifference(target, reference, scales), data & ~stars)
    if matched:  # each frame convolved over its own light: a star on the other's border is whole
        del data  # the matched difference gives the pixels it defines
        for mask, sign, table in zip(own, (1, -1), list(defects) or [None, None], strict=True):
            mask &= ~_trail_pixels(mask.shape, trails[trails["sign"] == sign])
            mask &= ~_defect_pixels(mask.shape, [] if table is None else [table])
        differences, data = matched_differences(
            target, reference, scales, photometry, own, catalogs, stats, overwrite=overwrite_target
        )
    else:
        data &= ~_trail_pixels(data.shape, trails)
        differences = channel_differences(target, reference, scales, overwrite=overwrite_target)
    data &= ~stars
    tables = []
    for channel, difference in enumerate(differences):
        samples = sample_background(
            difference, data, box_px=box_px, min_valid_fraction=settings["min_valid_fraction"]
        )
        tables.append(samples.assign(channel=channel))
    return pd.concat(tables, ignore_index=True)


def _with_data(frame: np.ndarray) -> np.ndarray:
    """Pixels with data (not 0) in every channel of a frame."""
    data = np.not_equal(planes(frame)[0], 0)
    for plane in planes(frame)[1:]:
        data &= plane != 0
    return data


def _trail_pixels(shape: tuple[int, int], trails: pd.DataFrame) -> np.ndarray:
    """Pixels of ``trails`` (:func:`nsgflow.trails.trail_mask`)."""
    return trail_mask(shape, trails) if len(trails) else np.zeros(shape, bool)


def _trails(difference: MeanDifference | np.ndarray, valid: np.ndarray) -> pd.DataFrame:
    """The trails (:func:`nsgflow.trails.find_trails`) in ``difference``, logged."""
    trails = find_trails(difference, valid)
    for t in trails.itertuples():
        log.info(
            "trail in the %s masked: %.0f px wide, at %.2f deg to the x axis, %.1f px from pixel (0, 0)",
            "target" if t.sign > 0 else "reference",
            2 * t.half_width_px,
            (np.degrees(t.angle) + 90.0) % 180.0,
            abs(t.rho_px),
        )
    return trails


def _defect_pixels(shape: tuple[int, int], tables: Sequence[pd.DataFrame]) -> np.ndarray:
    """Pixels of the defect tables (:func:`defects_table`, any channel) and their 8 neighbours."""
    found = np.zeros(shape, bool)
    rows = np.concatenate([t["row"].to_numpy(np.int64) for t in tables] + [np.zeros(0, np.int64)])
    cols = np.concatenate([t["col"].to_numpy(np.int64) for t in tables] + [np.zeros(0, np.int64)])
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            found[np.clip(rows + dy, 0, shape[0] - 1), np.clip(cols + dx, 0, shape[1] - 1)] = True
    return found


def _smoothness(columns: list[np.ndarray], shape: tuple[int, int], settings: dict) -> float:
    """The ``gradient`` settings' smoothness for samples ``x, y, value, weight``; ``auto`` by GCV."""
    if settings["smoothness"] == "auto":
        return gcv_smoothness(*columns, shape, max_points=settings["max_points"], degree=settings["degree"])
    return float(settings["smoothness"])


def gradient_model(
    samples: pd.DataFrame, shape: tuple[int, int], settings: dict
) -> tuple[np.ndarray, pd.Series, list[float]]:
    """Gradient stage (rule ``fit_gradient``): the spline model G of the used samples, full size, float32.

    Samples that disagree with the smooth model of the others by more than
    ``clip_sigma`` robust sigmas are left out (0 turns this off); within 1.5
    boxes of the frame's edge only those 1.5 times further
    (:func:`nsgflow.spline.reject_outlier_samples`); the second value is the sample statuses with
    those marked ``outlier``. With ``smoothness: auto`` the smoothness is the
    one that minimizes the generalized cross-validation score
    (:func:`nsgflow.spline.gcv_smoothness`), for the rejection among all
    samples and for the model among those kept; the third value is the
    smoothness used, one per channel. ``shape`` is the frame's (ny, nx);
    samples of several channels (colour frames) give one model per channel,
    shape (channels, ny, nx).
    """
    settings = dict(settings)
    clip_sigma = settings.pop("clip_sigma")
    status = samples["status"].copy()
    channels = samples["channel"].to_numpy() if "channel" in samples else np.zeros(len(samples), int)
    models, smoothnesses = [], []
    for channel in np.unique(channels):
        used = samples[(status == "used").to_numpy() & (channels == channel)]
        columns = [used[c].to_numpy() for c in ("x", "y", "value", "weight")]
        where = f"channel {channel}: " if len(np.unique(channels)) > 1 else ""
        try:
            smoothness = _smoothness(columns, shape, settings)
            if clip_sigma > 0 and len(used) >= 3:
                keep = reject_outlier_samples(
                    *columns,
                    shape,
                    clip_sigma=clip_sigma,
                    edge_px=1.5 * float(samples["box_px"].iloc[0]),
                    smoothness=smoothness,
                    max_points=settings["max_points"],
                    degree=settings["degree"],
                    grid_px=settings["grid_px"],
                )
                status.loc[used.index[~keep]] = "outlier"
                if not keep.all():
                    columns = [c[keep] for c in columns]
                    smoothness = _smoothness(columns, shape, settings)
            if settings["smoothness"] == "auto":
                log.info("%ssmoothness %.2f (generalized cross-validation)", where, smoothness)
            models.append(fit_gradient(*columns, shape, **{**settings, "smoothness": smoothness}))
        except FrameError as exc:
            raise FrameError(f"{where}{exc}; lower samples.min_valid_fraction or samples.box_px") from exc
        smoothnesses.append(smoothness)
    return (models[0] if len(models) == 1 else np.stack(models)), status, smoothnesses
