"""One function per workflow rule, from files to files: read, call :mod:`nsgflow.stages`, write.

The Snakemake scripts in ``scripts/`` are thin wrappers around these, so each
rule can also be run and tested without Snakemake. ``settings`` is the
rule's section of the configuration (see ``config.yaml``). Each stage reads
what the one before wrote: detection, photometry, scale, gradient samples,
gradient model, normalized frame, and the graphs of each.
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

import nsgflow
from nsgflow import ALGORITHM_VERSIONS
from nsgflow.channels import channel_values, luminance
from nsgflow.detect import CATALOG_COLUMNS
from nsgflow.errors import FrameError, NsgflowError
from nsgflow.io import (
    NO_SPACE,
    fits_text,
    frame_name,
    map_pixels,
    read_fits,
    read_frame,
    read_header,
    read_json,
    read_lines,
    read_table,
    write_csv,
    write_fits,
    write_json,
    write_lines,
    write_xisf,
)
from nsgflow.sample_settings import resolved_settings
from nsgflow.stages import (
    DEFECT_COLUMNS,
    detect_frame,
    gradient_model,
    gradient_samples,
    match_and_measure,
    scale_from_photometry,
)
from nsgflow.weight import stats_weight

# astropy (a quarter of a second to import), the provenance and the normalized frame's header are
# imported by the stages that write FITS: the others read plain frames without them.

__all__ = [
    "run_blink",
    "run_choose_reference",
    "run_detect",
    "run_export_xisf",
    "run_fit_gradient",
    "run_fit_scale",
    "run_measure_photometry",
    "run_normalize_frame",
    "run_sample_gradient",
    "run_stack",
    "run_step",
]

log = logging.getLogger("nsgflow")

PathLike = str | os.PathLike


def run_step(log_path: PathLike, step: Callable[..., None], *args: Any, **kwargs: Any) -> None:
    """Run one stage for Snakemake: log to ``log_path`` and stderr, turn nsgflow errors into one line.

    An :class:`~nsgflow.errors.NsgflowError`, or a full disk or quota, is
    logged as a single line naming the file or folder and the fix, and the
    process exits with status 1 so Snakemake marks the job failed (and, with
    ``--keep-going``, goes on with the others).
    """
    handlers = [logging.FileHandler(log_path, mode="w"), logging.StreamHandler(sys.stderr)]
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", handlers=handlers, force=True)
    try:
        step(*args, **kwargs)
    except NsgflowError as exc:
        log.error("%s", exc)
        sys.exit(1)
    except Exception as exc:
        if isinstance(exc, OSError) and exc.errno in NO_SPACE:
            log.error("%s", _no_space(exc))
        else:  # a bug, not bad input: keep the traceback in the log for the report
            log.exception("unexpected %s: %s (please report this with the log)", type(exc).__name__, exc)
        sys.exit(1)


def _no_space(exc: OSError) -> str:
    """One line for a full disk or quota: the folder being written, and what to do."""
    folder = os.path.dirname(exc.filename) or "." if exc.filename else "the disk being written"
    return (
        f"no space left on {folder} ({exc.strerror}); free space there or give --results on another disk, "
        "then run the same command again"
    )


def _named(frame: PathLike, exc: FrameError) -> FrameError:
    """The same error, its message starting with the frame's path."""
    return FrameError(f"{frame}: {exc}")


def _record(rule: str, frame: str, outputs: dict[str, PathLike], settings: dict) -> None:
    """Write the job's record of the other ``outputs`` to ``outputs["provenance"]``.

    See :func:`nsgflow.provenance.stage_record`.
    """
    from nsgflow.provenance import stage_record

    made = {role: path for role, path in outputs.items() if role != "provenance"}
    write_json(outputs["provenance"], stage_record(rule, frame, made, settings))


def run_detect(frame: PathLike, outputs: dict[str, PathLike], settings: dict) -> None:
    """Detect stars in ``frame``; write the star catalog CSV, the frame's statistics JSON and its defects CSV.

    ``outputs`` holds the paths of ``catalog``, ``stats``, ``defects`` and
    ``provenance``, the job's record of them. A frame that cannot be used
    (unreadable, no data, no stars) is flagged rather than failed: its
    catalog and defects are empty and its statistics carry the ``error``, so
    the set-wide steps (the automatic reference choice) still run, and the
    frame's next stage fails with that reason.
    """
    catalog, stats, defects = (outputs[key] for key in ("catalog", "stats", "defects"))
    try:
        data, header = read_frame(frame)
        stars, summary, found = detect_frame(data, header, settings)
    except FrameError as exc:
        error = str(exc) if str(exc).startswith(str(frame)) else f"{frame}: {exc}"
        log.error("%s", error)
        write_csv(catalog, pd.DataFrame(columns=CATALOG_COLUMNS))
        write_csv(defects, pd.DataFrame(columns=DEFECT_COLUMNS))
        write_json(stats, {"frame": frame_name(frame), "error": error, "stars": 0, "stars_clean": 0})
        _record("detect_stars", frame_name(frame), outputs, {"detect": settings})
        return
    missing = [k for k in ("exptime", "focallen", "xpixsz", "altitude") if summary[k] is None]
    if missing:
        log.info("%s: header has no %s; defaults are used where they matter", frame, ", ".join(missing))
    log.info(
        "%s: %d stars (%d flagged), sky %.1f, noise %.2f",
        frame,
        len(stars),
        len(stars) - summary["stars_clean"],
        summary["sky"],
        summary["noise"],
    )
    write_csv(catalog, stars)
    write_csv(defects, found)
    write_json(stats, {"frame": frame_name(frame), **summary})
    _record("detect_stars", frame_name(frame), outputs, {"detect": settings})


def run_measure_photometry(
    frame: PathLike,
    reference: PathLike,
    inputs: dict[str, PathLike],
    outputs: dict[str, PathLike],
    *,
    match: dict,
    settings: dict,
) -> None:
    """Rule ``measure_photometry``: match the frame's stars to the reference's and measure both.

    ``inputs`` holds detection's ``stats``, ``catalog`` and ``defects`` of the
    frame and ``ref_stats``, ``ref_catalog``, ``ref_defects`` of the
    reference; ``outputs`` the paths of ``photometry`` (the table, CSV) and
    ``aperture`` (aperture, annulus, fitted profiles and their uncertainty, JSON).
    ``match`` and ``settings`` are the ``match`` and ``photometry`` sections.
    A frame flagged by detection (:func:`run_detect`) fails here with
    detection's reason, and so does every frame when the reference is flagged.
    """
    target_stats, reference_stats = (read_json(inputs[key]) for key in ("stats", "ref_stats"))
    if "error" in reference_stats:
        raise FrameError(f"the reference cannot be used: {reference_stats['error']}")
    if "error" in target_stats:
        raise FrameError(target_stats["error"])
    catalogs = [read_table(inputs[key]) for key in ("catalog", "ref_catalog")]
    defects = [read_table(inputs[key]) for key in ("defects", "ref_defects")]
    target, _ = read_frame(frame)
    ref, _ = read_frame(reference)
    try:
        table, aperture = match_and_measure(
            target, ref, *catalogs, match, settings, defects=defects, stats=[target_stats, reference_stats]
        )
    except FrameError as exc:
        raise FrameError(f"{frame} against {reference}: {exc}") from exc
    log.info(
        "%s: %d matched, %d usable; aperture %.1f px; profiles' uncertainty of the scale %s (%s)",
        frame,
        int((table["channel"] == 0).sum()),
        int(((table["channel"] == 0) & (table["status"] == "used")).sum()),
        aperture["aperture_radius_px"],
        " ".join(f"{c:.2%}" for c in channel_values(aperture, "profile_error")),
        "; ".join(sorted({m for methods in channel_values(aperture, "profile_method") for m in methods})),
    )
    write_csv(outputs["photometry"], table)
    write_json(outputs["aperture"], aperture)
    _record("measure_photometry", frame_name(frame), outputs, {"match": match, "photometry": settings})


def run_fit_scale(
    photometry: PathLike,
    aperture: PathLike,
    outputs: dict[str, PathLike],
    *,
    frame: str,
    reference: str,
    settings: dict,
) -> None:
    """Rule ``fit_scale``: the scale from the photometry table and aperture record; write its JSON.

    ``outputs`` holds the path of ``scale`` and, when graphs are wanted, of
    ``graph``, the photometry graph (PNG), which shows the table and the fit.
    ``frame`` and ``reference`` are the names of the frame and of the
    reference (whose scale is 1); ``settings`` the ``scale`` section.
    """
    table = read_table(photometry)
    try:
        result = scale_from_photometry(
            table, read_json(aperture), is_reference=frame == reference, settings=settings
        )
    except FrameError as exc:
        raise _named(frame, exc) from exc
    log.info(
        "%s: m = %.5f +- %.5f from %d stars",
        frame,
        result["scale"],
        result["scale_err"],
        result["stars_used"],
    )
    record = {
        "frame": frame,
        "reference": reference,
        "algorithm_version": ALGORITHM_VERSIONS["scale"],
        "nsgflow_version": nsgflow.__version__,
        **result,
    }
    write_json(outputs["scale"], record)
    if "graph" in outputs:
        from nsgflow.diagnostics import photometry_graph

        photometry_graph(table, record, outputs["graph"], title=frame)
    _record("fit_scale", frame, outputs, {"scale": settings})


def run_sample_gradient(
    frame: PathLike,
    reference: PathLike,
    inputs: dict[str, PathLike],
    outputs: dict[str, PathLike],
    *,
    settings: dict,
) -> None:
    """Rule ``sample_gradient``: gradient samples of m*T - R away from the stars of both frames.

    ``inputs`` holds the ``scale`` and ``photometry`` JSON and detection's ``catalog``, ``defects``,
    ``stats``, ``ref_catalog``, ``ref_stats``; ``outputs`` the paths of
    ``samples`` (the table, CSV), ``record`` (JSON: the frame's shape, which
    the gradient stage needs, and the values the automatic sample settings
    took, :func:`nsgflow.sample_settings.resolved_settings`) and, when graphs are
    wanted, ``graph``: the sample map (PNG), the frame with the sample boxes,
    drawn from every few pixels of the frame's file, mapped. ``settings`` is
    the ``samples`` section.
    """
    stats = [read_json(inputs[key]) for key in ("stats", "ref_stats")]
    catalogs = [read_table(inputs[key]) for key in ("catalog", "ref_catalog")]
    scale = read_json(inputs["scale"])
    target, _ = read_frame(frame)
    ref, _ = read_frame(reference)
    shape = target.shape[-2:]  # (ny, nx), also of a colour frame
    try:  # m*T - R in the target's memory
        samples = gradient_samples(
            target,
            ref,
            channel_values(scale, "scale"),
            catalogs,
            stats,
            settings,
            photometry=read_json(inputs["photometry"]),
            defects=[read_table(inputs[key]) for key in ("defects", "ref_defects")],
            overwrite_target=True,
        )
    except FrameError as exc:
        raise _named(frame, exc) from exc
    log.info("%s: %d of %d samples used", frame, int((samples["status"] == "used").sum()), len(samples))
    write_csv(outputs["samples"], samples)
    write_json(
        outputs["record"],
        {
            "frame": frame_name(frame),
            "shape": list(shape),
            "resolved": resolved_settings(catalogs, stats, settings),
        },
    )
    if "graph" in outputs:
        from nsgflow.diagnostics import sample_map

        sample_map(map_pixels(frame)[0], samples, outputs["graph"], title=frame_name(frame))
    _record("sample_gradient", frame_name(frame), outputs, {"samples": settings})


#: The curvature image's pixels are the mean of blocks of this many px a side: G is smooth on that
#: scale, and a full-size image cost a third file of a frame's size per frame to write.
CURVATURE_BIN_PX = 8


def _smoothness_keys(channels: int) -> list[str]:
    """Header keys of the gradient model's smoothness: NSGSMOOT, or NSGSMOO0.. per colour channel."""
    return ["NSGSMOOT"] if channels == 1 else [f"NSGSMOO{c}" for c in range(channels)]


def run_fit_gradient(
    samples: PathLike, record: PathLike, outputs: dict[str, PathLike], *, frame: str, settings: dict
) -> None:
    """Rule ``fit_gradient``: the gradient model of the samples, full size, and its curvature, binned.

    ``samples`` and ``record`` are the samples stage's table and JSON (the
    frame's shape is in it): the frames themselves are not read. Writes
    float32 FITS to ``outputs["gradient"]`` and ``outputs["curvature"]``;
    the model's header holds the smoothness used (one per channel) and the
    model's smallest and largest values. When graphs are wanted,
    ``outputs["graph"]`` gets the gradient graph (PNG): the model's profiles
    with the samples near them. ``settings`` is the ``gradient`` section.
    """
    from astropy.io import fits

    from nsgflow.spline import curvature

    shape = tuple(read_json(record)["shape"])
    table = read_table(samples)
    try:
        model, status, smoothness = gradient_model(table, shape, settings)
    except FrameError as exc:
        raise _named(frame, exc) from exc
    out = fits.Header()
    out["NSGFRAME"] = (fits_text(frame), "frame this gradient model belongs to")
    for channel, (key, value) in enumerate(zip(_smoothness_keys(len(smoothness)), smoothness, strict=True)):
        where = "" if len(smoothness) == 1 else f", channel {channel}"
        out[key] = (value, f"gradient smoothness (log10) used{where}")
    out["NSGGMIN"] = (float(model.min()), "smallest value of the gradient model")
    out["NSGGMAX"] = (float(model.max()), "largest value of the gradient model")
    out["NSGGREJ"] = (int((status == "outlier").sum()), "samples left out as outliers of the model")
    log.info(
        "%s: gradient from %d samples, %d outliers left out",
        frame,
        int((status == "used").sum()),
        out["NSGGREJ"],
    )
    write_fits(outputs["gradient"], model, out)
    out["COMMENT"] = "curvature: the gradient model minus its least-squares plane"
    out["NSGCBIN"] = (CURVATURE_BIN_PX, "a pixel is the mean of this many px a side of G")
    # IRAF physical coordinates (DS9 shows them): the frame's pixel under each block's centre
    for axis in (1, 2):
        out[f"LTM{axis}_{axis}"] = (1 / CURVATURE_BIN_PX, "binned: image = LTM * frame pixel + LTV")
        out[f"LTV{axis}"] = 0.5 - 0.5 / CURVATURE_BIN_PX
    write_fits(outputs["curvature"], curvature(model, bin_px=CURVATURE_BIN_PX), out)
    if "graph" in outputs:
        from nsgflow.diagnostics import gradient_graph

        value_range = (out["NSGGMIN"], out["NSGGMAX"])
        gradient_graph(model, table, outputs["graph"], title=frame, value_range=value_range)
    _record("fit_gradient", frame, outputs, {"gradient": settings})


def _gradient_smoothness(keywords: Any) -> list[float]:
    """The smoothness a gradient model was made with, one per channel, from its header's keyword values."""
    channels = 1 if "NSGSMOOT" in keywords else sum(f"NSGSMOO{c}" in keywords for c in range(4))
    return [float(keywords[key]) for key in _smoothness_keys(channels)]


def run_normalize_frame(
    frame: PathLike,
    reference: PathLike,
    inputs: dict[str, PathLike],
    outputs: dict[str, PathLike],
    *,
    settings: dict,
    workflow_folder: PathLike | None = None,
) -> None:
    """Rule ``normalize_frame``: T' = m*T - G with the input header, weight and provenance keywords.

    ``inputs`` holds the paths of ``scale``, ``gradient`` and the samples
    stage's ``samples_record``, detection's ``stats`` and ``ref_stats``, and
    every earlier file of this frame to be hashed into its provenance record
    (``catalog``, ``ref_catalog``, ``defects``, ``ref_defects``,
    ``photometry``, ``aperture``, ``samples``). ``outputs`` holds the paths of
    ``normalized``, ``provenance`` and, for the blink view, ``thumbnails``
    (the input and the normalized frame, block-averaged; :func:`run_blink`).
    ``settings`` is every section that shaped the frame: they go into its
    header and provenance record.
    """
    from astropy.io import fits

    from nsgflow.normalized import normalize_frame

    stats = [read_json(inputs[key]) for key in ("stats", "ref_stats")]
    scale = read_json(inputs["scale"])
    model, keywords = read_frame(inputs["gradient"])
    data, header = read_frame(frame)
    header = _normalized_header(header, frame, reference, scale, stats, settings)
    if "thumbnails" in outputs:  # for the blink view; the input's before it is overwritten
        from nsgflow.blink import thumbnail

        before = thumbnail(luminance(data))
    normalized = normalize_frame(data, channel_values(scale, "scale"), model, out=data)  # in place
    write_fits(outputs["normalized"], normalized, header)
    if "thumbnails" in outputs:
        pair = np.stack([before, thumbnail(luminance(normalized))])
        comment = fits.Header([("COMMENT", "blink thumbnails: the input, then the normalized frame")])
        write_fits(outputs["thumbnails"], pair, comment)
    del data, normalized, model
    _write_provenance(
        frame, reference, inputs, outputs, keywords, settings=settings, workflow_folder=workflow_folder
    )
    log.info("%s: written %s (weight %.4f)", frame_name(frame), outputs["normalized"], header["WEIGHT"])


def _normalized_header(
    header: Any, frame: PathLike, reference: PathLike, scale: dict, stats: list[dict], settings: dict
) -> Any:
    """The normalized frame's header: the input's ``header`` with the scale, weight, provenance keywords
    and HISTORY lines of every setting (:func:`nsgflow.normalized.normalized_header`).

    ``scale`` is the scale stage's record, ``stats`` the frame's and the
    reference's statistics from detection.
    """
    from nsgflow.normalized import normalized_header
    from nsgflow.provenance import settings_digest, sha256

    target_stats, reference_stats = stats
    keys = {
        "WEIGHT": stats_weight(target_stats, reference_stats, scale),
        "NSGNOISE": target_stats["noise"],
        "NSGTRANS": 1.0 / scale["scale"],
        "NSGVER": nsgflow.__version__,
        "NSGHASH": sha256(frame),
        "NSGRHASH": sha256(reference),
        "NSGSETT": settings_digest(settings),
    }
    if target_stats.get("exptime"):
        keys["NSGTREXP"] = 1.0 / scale["scale"] / target_stats["exptime"]
    history = [f"nsgflow {nsgflow.__version__}: normalized against {Path(reference).name}"]
    history += [
        f"nsgflow {key}: {json.dumps(value, sort_keys=True)}" for key, value in sorted(settings.items())
    ]
    return normalized_header(
        header,
        scale=scale["scale"],
        scale_err=scale["scale_err"],
        reference=Path(reference).name,
        history=history,
        extra=keys,
        channel_scales=list(
            zip(channel_values(scale, "scale"), channel_values(scale, "scale_err"), strict=True)
        ),
    )


#: The files of earlier stages hashed into a frame's provenance record (keys of run_normalize_frame's inputs).
UPSTREAM = (
    "catalog",
    "ref_catalog",
    "defects",
    "ref_defects",
    "photometry",
    "aperture",
    "scale",
    "samples",
    "samples_record",
    "gradient",
)


def _write_provenance(
    frame: PathLike,
    reference: PathLike,
    inputs: dict[str, PathLike],
    outputs: dict[str, PathLike],
    gradient_keywords: Any,
    *,
    settings: dict,
    workflow_folder: PathLike | None,
) -> None:
    """Write the frame's provenance record: every file of every stage hashed, settings, versions.

    ``gradient_keywords`` are the gradient model's header values (the
    smoothness it used); with the samples record's and the aperture's
    values they make the record's ``resolved``: what automatic settings
    took for this frame.
    """
    from nsgflow.provenance import environment, frame_provenance

    record = frame_provenance(
        frame_name(frame),
        {"frame": str(frame), "reference": str(reference)},
        {**{key: str(inputs[key]) for key in UPSTREAM}, "normalized": str(outputs["normalized"])},
        settings,
        environment(workflow_folder),
    )
    smoothness = _gradient_smoothness(gradient_keywords)
    record["resolved"] = {
        **read_json(inputs["samples_record"])["resolved"],
        "aperture_radius_px": read_json(inputs["aperture"])["aperture_radius_px"],
        "gradient_smoothness": smoothness[0] if len(smoothness) == 1 else smoothness,
    }
    write_json(outputs["provenance"], record)


def run_choose_reference(stats: list[PathLike], table: PathLike, chosen: PathLike) -> None:
    """Rank every frame as a reference (``reference.csv``) and write the chosen name (``reference.txt``)."""
    from nsgflow.reference import rank_references

    ranking = rank_references([read_json(path) for path in stats])
    best = ranking.iloc[0]
    if not best["eligible"]:
        raise FrameError("no frame has enough stars to be the reference; see reference.csv")
    log.info("reference: %s (%s)", best["frame"], best["method"])
    write_csv(table, ranking)
    write_lines(chosen, [best["frame"]])


def run_stack(
    accepted: PathLike, weights: PathLike, output: PathLike, rejected: PathLike, settings: dict
) -> None:
    """Stack the accepted normalized frames with their weights; write the stack and the rejection map."""
    from astropy.io import fits

    from nsgflow.stack import stack_frames

    paths = read_lines(accepted)
    if not paths:
        raise FrameError(f"{accepted} lists no frame to stack")
    table = read_table(weights).set_index("file")
    frames = [read_fits(path)[0] for path in paths]
    stack, counts = stack_frames(frames, [table.loc[p, "weight"] for p in paths], **settings)
    header = read_header(paths[0])
    header["NCOMBINE"] = (len(paths), "frames stacked")
    made_by = f"nsgflow {nsgflow.__version__}: weighted mean of {len(paths)} frames"
    header.add_history(f"{made_by}, {json.dumps(settings)}")
    write_fits(output, stack, header)
    write_fits(rejected, counts.astype(np.float32), fits.Header({"COMMENT": "frames rejected per pixel"}))
    log.info("stacked %d frames into %s", len(paths), output)


def run_export_xisf(frame: PathLike, normalized: PathLike, output: PathLike) -> None:
    """Also write an XISF input's normalized frame as XISF: its data and keywords, the input's properties."""
    from xisf import XISF

    data, header = read_fits(normalized)
    properties = XISF(str(frame)).get_images_metadata()[0].get("XISFProperties", {})
    write_xisf(output, data, header, properties)
    log.info("%s: written %s", frame_name(frame), output)


def run_blink(
    thumbnails: list[PathLike], names: list[str], reference: str, outputs: dict[str, PathLike]
) -> None:
    """Blink GIFs of the inputs and of the normalized frames, and an HTML page of both and their differences.

    ``thumbnails`` are each frame's (named in ``names``): its input and its
    normalized frame, block-averaged by :func:`run_normalize_frame`, so this
    reads a few kB per frame instead of two frames. One stretch for all, the
    reference input's auto-STF (:func:`~nsgflow.blink.auto_stretch`): the
    reference is the same frame in both sets. The page's third column is
    each normalized frame minus the reference, at the scale of the
    reference's noise (:func:`~nsgflow.blink.difference_image`).
    """
    from nsgflow.blink import (
        DIFFERENCE_SIGMAS,
        auto_stretch,
        blink_gif,
        blink_html,
        difference_image,
        stretch,
    )
    from nsgflow.gradient import background_noise

    pairs = [read_fits(path)[0] for path in thumbnails]
    sets = {"inputs": [pair[0] for pair in pairs], "normalized": [pair[1] for pair in pairs]}
    ref = sets["inputs"][names.index(reference)]
    transfer, sigma = auto_stretch(ref), background_noise(ref)
    images = {key: [stretch(t, transfer) for t in thumbs] for key, thumbs in sets.items()}
    blink_gif(images["inputs"], names, outputs["inputs"])
    blink_gif(images["normalized"], names, outputs["normalized"])
    images["normalized - reference"] = [difference_image(t, ref, sigma) for t in sets["normalized"]]
    limit = DIFFERENCE_SIGMAS * sigma
    note = (
        f"Inputs and normalized frames: one stretch, the reference's auto-STF (black {transfer.shadows:.6g}, "
        f"white {transfer.highlights:.6g}, its sky at a quarter of white): the inputs differ, the "
        "normalized frames should look alike. Normalized - reference: 0 is mid grey, black and white are "
        f"-{limit:.4g} and +{limit:.4g} ({DIFFERENCE_SIGMAS:g} sigmas of the reference's noise in these "
        "block averages); a gradient left behind shows as a slope of grey."
    )
    blink_html(
        images,
        names,
        outputs["html"],
        title=f"nsgflow blink: {len(names)} frames, reference {reference}",
        note=note,
    )
