"""One function per workflow rule, from files to files: read, call :mod:`nsgflow.stages`, write.

The Snakemake scripts in ``scripts/`` are thin wrappers around these, so each
rule can also be run and tested without Snakemake. ``settings`` is the
rule's section of the configuration (see ``config.yaml``); the stages after
detection run in one rule, :func:`run_normalize_frame`, each writing its files.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
    atomic_path,
    fits_text,
    frame_name,
    map_pixels,
    read_frame,
    read_json,
    read_pixels,
    write_csv,
    write_fits,
    write_json,
    write_xisf,
)
from nsgflow.stages import (
    DEFECT_COLUMNS,
    detect_frame,
    gradient_model,
    gradient_samples,
    match_and_measure,
    resolved_settings,
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
    "run_normalize_frame",
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


@contextmanager
def _timed(frame: str, stage: str) -> Iterator[None]:
    """Log how long the block (one stage of a job) took: "<frame>: <stage> took <s> s".

    ``benchmarks/speed.py`` reads these lines for its per-stage table.
    """
    start = time.perf_counter()
    yield
    log.info("%s: %s took %.2f s", frame, stage, time.perf_counter() - start)


def _named(frame: PathLike, exc: FrameError) -> FrameError:
    """The same error, its message starting with the frame's path."""
    return FrameError(f"{frame}: {exc}")


def run_detect(
    frame: PathLike, catalog: PathLike, stats: PathLike, defects: PathLike, settings: dict
) -> None:
    """Detect stars in ``frame``; write the star catalog CSV, the frame's statistics JSON and its defects CSV.

    A frame that cannot be used (unreadable, no data, no stars) is flagged
    rather than failed: its catalog and defects are empty and its statistics carry the
    ``error``, so the set-wide steps (the automatic reference choice) still
    run, and the frame's next stage fails with that reason.
    """
    try:
        data, header = read_pixels(frame)
        stars, summary, found = detect_frame(data, header, settings)
    except FrameError as exc:
        error = str(exc) if str(exc).startswith(str(frame)) else f"{frame}: {exc}"
        log.error("%s", error)
        write_csv(catalog, pd.DataFrame(columns=CATALOG_COLUMNS))
        write_csv(defects, pd.DataFrame(columns=DEFECT_COLUMNS))
        write_json(stats, {"frame": frame_name(frame), "error": error, "stars": 0, "stars_clean": 0})
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


def _photometry(
    frame: PathLike,
    reference: PathLike,
    target_data: np.ndarray,
    ref_data: np.ndarray,
    catalogs: list[pd.DataFrame],
    defects: list[pd.DataFrame],
    outputs: dict[str, PathLike],
    settings: dict,
) -> tuple[pd.DataFrame, dict]:
    """Match the frame's stars to the reference's and measure both; write the table and aperture info.

    ``catalogs`` and ``defects`` are the frame's and the reference's, from
    detection. Returns the table and the aperture record.
    """
    target_catalog, ref_catalog = catalogs
    target_defects, ref_defects = defects
    try:
        table, aperture = match_and_measure(
            ref_data,
            target_data,
            ref_catalog,
            target_catalog,
            settings["match"],
            settings["photometry"],
            defects=[ref_defects, target_defects],
        )
    except FrameError as exc:
        raise FrameError(f"{frame} against {reference}: {exc}") from exc
    log.info(
        "%s: %d matched, %d usable; aperture %.1f px; aperture correction %s (%s)",
        frame,
        int((table["channel"] == 0).sum()),
        int(((table["channel"] == 0) & (table["status"] == "used")).sum()),
        aperture["aperture_radius_px"],
        " ".join(f"{c:.4f}" for c in channel_values(aperture, "aperture_correction")),
        "; ".join(sorted(set(channel_values(aperture, "aperture_correction_method")))),
    )
    write_csv(outputs["photometry"], table)
    write_json(outputs["aperture"], aperture)
    return table, aperture


def _scale(
    table: pd.DataFrame, aperture: dict, output: PathLike, *, frame: str, reference: str, settings: dict
) -> dict:
    """Fit the scale from the photometry table and aperture correction; write the JSON and return it."""
    try:
        result = scale_from_photometry(table, aperture, is_reference=frame == reference, settings=settings)
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
    write_json(output, record)
    return record


def _samples(
    frame: PathLike,
    target: np.ndarray,
    ref: np.ndarray,
    scale: dict,
    catalogs: list[pd.DataFrame],
    stats: list[dict],
    output: PathLike,
    settings: dict,
) -> pd.DataFrame:
    """Measure gradient samples of m*T - R away from the stars of both frames; write the CSV and return it.

    ``catalogs`` and ``stats`` are the target's and the reference's star
    catalogs and statistics. m*T - R is computed in ``target``'s memory.
    """
    try:
        samples = gradient_samples(
            target, ref, channel_values(scale, "scale"), catalogs, stats, settings, overwrite_target=True
        )
    except FrameError as exc:
        raise _named(frame, exc) from exc
    log.info("%s: %d of %d samples used", frame, int((samples["status"] == "used").sum()), len(samples))
    write_csv(output, samples)
    return samples


#: The curvature image's pixels are the mean of blocks of this many px a side: G is smooth on that
#: scale, and a full-size image cost a third file of a frame's size per frame to write.
CURVATURE_BIN_PX = 8


def _smoothness_keys(channels: int) -> list[str]:
    """Header keys of the gradient model's smoothness: NSGSMOOT, or NSGSMOO0.. per colour channel."""
    return ["NSGSMOOT"] if channels == 1 else [f"NSGSMOO{c}" for c in range(channels)]


def _gradient(
    samples: pd.DataFrame,
    frame: PathLike,
    shape: tuple[int, int],
    output: PathLike,
    curvature_output: PathLike,
    settings: dict,
) -> tuple[np.ndarray, list[float], tuple[float, float]]:
    """Fit the gradient model to the samples; write it (full size) and its curvature (binned) as float32 FITS.

    ``shape`` is the frame's (ny, nx). Returns the model, the smoothness used
    (one per channel) and the model's smallest and largest value.
    """
    from astropy.io import fits

    from nsgflow.spline import curvature

    try:
        model, status, smoothness = gradient_model(samples, shape, settings)
    except FrameError as exc:
        raise _named(frame, exc) from exc
    out = fits.Header()
    out["NSGFRAME"] = (fits_text(Path(frame).name), "frame this gradient model belongs to")
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
    write_fits(output, model, out)
    out["COMMENT"] = "curvature: the gradient model minus its least-squares plane"
    out["NSGCBIN"] = (CURVATURE_BIN_PX, "a pixel is the mean of this many px a side of G")
    # IRAF physical coordinates (DS9 shows them): the frame's pixel under each block's centre
    for axis in (1, 2):
        out[f"LTM{axis}_{axis}"] = (1 / CURVATURE_BIN_PX, "binned: image = LTM * frame pixel + LTV")
        out[f"LTV{axis}"] = 0.5 - 0.5 / CURVATURE_BIN_PX
    write_fits(curvature_output, curvature(model, bin_px=CURVATURE_BIN_PX), out)
    return model, smoothness, (out["NSGGMIN"], out["NSGGMAX"])


def _normalized(
    frame: PathLike,
    reference: PathLike,
    scale: dict,
    model: np.ndarray,
    smoothness: list[float],
    stats: list[dict],
    resolved: dict,
    outputs: dict[str, PathLike],
    *,
    upstream: dict[str, PathLike],
    settings: dict,
    workflow_folder: PathLike | None,
) -> None:
    """Write T' = m*T - G with the input header, weight and provenance keywords; then the provenance record.

    ``stats`` are the target's and the reference's statistics, ``resolved``
    the values automatic settings took (:func:`nsgflow.stages.resolved_settings`)
    and ``upstream`` maps each earlier file of this frame (``catalog``,
    ``photometry``, ...) to its path, to be hashed into the record.
    """
    from astropy.io import fits

    from nsgflow.normalized import normalize_frame, normalized_header
    from nsgflow.provenance import environment, frame_provenance, settings_digest, sha256

    data, header = read_frame(frame)
    target_stats, reference_stats = stats
    m = scale["scale"]
    keys = {
        "WEIGHT": stats_weight(reference_stats, target_stats, scale),
        "NSGNOISE": target_stats["noise"],
        "NSGTRANS": 1.0 / m,
        "NSGVER": nsgflow.__version__,
        "NSGHASH": sha256(frame),
        "NSGRHASH": sha256(reference),
        "NSGSETT": settings_digest(settings),
    }
    if target_stats.get("exptime"):
        keys["NSGTREXP"] = 1.0 / m / target_stats["exptime"]
    history = [f"nsgflow {nsgflow.__version__}: normalized against {Path(reference).name}"]
    history += [
        f"nsgflow {key}: {json.dumps(value, sort_keys=True)}" for key, value in sorted(settings.items())
    ]
    header = normalized_header(
        header,
        scale=m,
        scale_err=scale["scale_err"],
        reference=Path(reference).name,
        history=history,
        extra=keys,
        channel_scales=list(
            zip(channel_values(scale, "scale"), channel_values(scale, "scale_err"), strict=True)
        ),
    )
    if "thumbnails" in outputs:  # for the blink view; the input's before it is overwritten
        from nsgflow.blink import thumbnail

        before = thumbnail(luminance(data))
    normalized = normalize_frame(data, channel_values(scale, "scale"), model, out=data)  # in place
    write_fits(outputs["normalized"], normalized, header)
    if "thumbnails" in outputs:
        pair = np.stack([before, thumbnail(luminance(normalized))])
        comment = fits.Header([("COMMENT", "blink thumbnails: the input, then the normalized frame")])
        write_fits(outputs["thumbnails"], pair, comment)
    del data, normalized
    record = frame_provenance(
        frame_name(frame),
        {"frame": str(frame), "reference": str(reference)},
        {
            **upstream,
            **{
                key: str(outputs[key])
                for key in ("photometry", "aperture", "scale", "samples", "gradient", "normalized")
            },
        },
        settings,
        environment(workflow_folder),
    )
    # the values that automatic settings resolved to, for this frame
    record["resolved"] = {
        **resolved,
        "gradient_smoothness": smoothness[0] if len(smoothness) == 1 else smoothness,
    }
    write_json(outputs["provenance"], record)
    log.info("%s: written %s (weight %.4f)", frame_name(frame), outputs["normalized"], keys["WEIGHT"])


def run_normalize_frame(
    frame: PathLike,
    reference: PathLike,
    inputs: dict[str, PathLike],
    outputs: dict[str, PathLike],
    *,
    frame_label: str,
    reference_label: str,
    settings: dict,
    workflow_folder: PathLike | None = None,
) -> None:
    """Rule ``normalize_frame``: photometry, scale, gradient samples and model, normalized frame, graphs.

    Every stage after detection runs in this one process, one after the
    other, each writing its own files and handing what it made to the next
    in memory: each needs the one before, so a setting that changes one
    reruns all that follow anyway, and one process per frame instead of six
    saves their start-ups and reading back what was just written (the
    frames themselves, above all).

    ``inputs`` holds the paths of ``catalog``, ``stats`` and ``defects``
    (detection's outputs for the frame) and of ``ref_catalog``,
    ``ref_stats`` and ``ref_defects`` (the reference's); ``outputs`` those
    of ``photometry`` and ``aperture`` (the photometry table and its JSON),
    ``scale``, ``samples``, ``gradient``, ``curvature``, ``normalized`` and
    ``provenance``, and of the graphs to draw, if any: ``photometry_graph``,
    ``gradient_graph``, ``samples_graph``, and ``thumbnails`` for the blink
    view (:func:`run_blink`). ``settings`` holds every stage's
    section of the configuration. A frame flagged by detection fails here
    with detection's reason. The log says how long each stage took.
    """
    stats = [read_json(inputs[key]) for key in ("stats", "ref_stats")]
    if "error" in stats[1]:
        raise FrameError(f"the reference cannot be used: {stats[1]['error']}")
    if "error" in stats[0]:
        raise FrameError(stats[0]["error"])
    with _timed(frame_label, "reading"):
        catalogs = [pd.read_csv(inputs[key]) for key in ("catalog", "ref_catalog")]
        defects = [pd.read_csv(inputs[key]) for key in ("defects", "ref_defects")]
        target, _ = read_pixels(frame)
        ref, _ = read_pixels(reference)
    with _timed(frame_label, "photometry"):
        table, aperture = _photometry(frame, reference, target, ref, catalogs, defects, outputs, settings)
    with _timed(frame_label, "scale"):
        scale = _scale(
            table,
            aperture,
            outputs["scale"],
            frame=frame_label,
            reference=reference_label,
            settings=settings["scale"],
        )
    shape = target.shape[-2:]  # (ny, nx), also of a colour frame
    with _timed(frame_label, "samples"):
        samples = _samples(
            frame, target, ref, scale, catalogs, stats, outputs["samples"], settings["samples"]
        )
    del target, ref  # the target now holds m*T - R; the normalized frame is made from the file
    with _timed(frame_label, "gradient"):
        model, smoothness, value_range = _gradient(
            samples, frame, shape, outputs["gradient"], outputs["curvature"], settings["gradient"]
        )
    with _timed(frame_label, "normalized"):
        _normalized(
            frame,
            reference,
            scale,
            model,
            smoothness,
            stats,
            resolved_settings(aperture, catalogs, stats, settings["samples"]),
            outputs,
            upstream={key: str(inputs[key]) for key in ("catalog", "ref_catalog", "defects", "ref_defects")},
            settings=settings,
            workflow_folder=workflow_folder,
        )
    if "photometry_graph" in outputs:  # graphs wanted
        graphs = {graph: outputs[f"{graph}_graph"] for graph in ("photometry", "gradient", "samples")}
        with _timed(frame_label, "graphs"):
            _graphs(frame, table, scale, samples, model, value_range, graphs)


def _graphs(
    frame: PathLike,
    table: pd.DataFrame,
    scale: dict,
    samples: pd.DataFrame,
    model: np.ndarray,
    value_range: tuple[float, float],
    outputs: dict[str, PathLike],
) -> None:
    """Draw the photometry graph, gradient graph and sample map of one frame (PNG).

    ``value_range`` is the model's smallest and largest value (:func:`_gradient` has them).
    """
    from nsgflow.diagnostics import gradient_graph, photometry_graph, sample_map

    name = frame_name(frame)
    photometry_graph(table, scale, outputs["photometry"], title=name)
    gradient_graph(model, samples, outputs["gradient"], title=name, value_range=value_range)
    # mapped, not read: the map uses every few pixels of the frame
    sample_map(map_pixels(frame)[0], samples, outputs["samples"], title=name)


def run_choose_reference(stats: list[PathLike], table: PathLike, chosen: PathLike) -> None:
    """Rank every frame as a reference (``reference.csv``) and write the chosen name (``reference.txt``)."""
    from nsgflow.reference import rank_references

    ranking = rank_references([read_json(path) for path in stats])
    best = ranking.iloc[0]
    if not best["eligible"]:
        raise FrameError("no frame has enough stars to be the reference; see reference.csv")
    log.info("reference: %s (%s)", best["frame"], best["method"])
    write_csv(table, ranking)
    with atomic_path(chosen) as tmp:
        tmp.write_text(f"{best['frame']}\n")


def run_stack(
    accepted: PathLike, weights: PathLike, output: PathLike, rejected: PathLike, settings: dict
) -> None:
    """Stack the accepted normalized frames with their weights; write the stack and the rejection map."""
    from astropy.io import fits

    from nsgflow.stack import stack_frames

    paths = [line for line in Path(accepted).read_text().splitlines() if line]
    if not paths:
        raise FrameError(f"{accepted} lists no frame to stack")
    table = pd.read_csv(weights).set_index("file")
    frames = [fits.getdata(path, memmap=True) for path in paths]
    stack, counts = stack_frames(frames, [table.loc[p, "weight"] for p in paths], **settings)
    header = fits.getheader(paths[0])
    header["NCOMBINE"] = (len(paths), "frames stacked")
    made_by = f"nsgflow {nsgflow.__version__}: weighted mean of {len(paths)} frames"
    header.add_history(f"{made_by}, {json.dumps(settings)}")
    write_fits(output, stack, header)
    write_fits(rejected, counts.astype(np.float32), fits.Header({"COMMENT": "frames rejected per pixel"}))
    log.info("stacked %d frames into %s", len(paths), output)


def run_export_xisf(frame: PathLike, normalized: PathLike, output: PathLike) -> None:
    """Also write an XISF input's normalized frame as XISF: its data and keywords, the input's properties."""
    from astropy.io import fits
    from xisf import XISF

    data, header = fits.getdata(normalized, header=True)
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
    from astropy.io import fits

    from nsgflow.blink import (
        DIFFERENCE_SIGMAS,
        auto_stretch,
        blink_gif,
        blink_html,
        difference_image,
        stretch,
    )
    from nsgflow.gradient import background_noise

    pairs = [fits.getdata(path) for path in thumbnails]
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
