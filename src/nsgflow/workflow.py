"""Shared by the workflow and the CLI: where the workflow is, config validation, frame discovery."""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, ValidationError

from nsgflow.channels import unsupported_shape
from nsgflow.errors import ConfigError, FrameError
from nsgflow.io import (
    FRAME_SUFFIXES,
    frame_name,
    header_shape,
    read_header,
    read_json,
    read_yaml,
    write_text,
)

__all__ = [
    "STAGE_OUTPUTS",
    "check_frames",
    "filter_name",
    "find_frames",
    "load_config",
    "load_schema",
    "record_settings",
    "scan_frames",
    "unthrottle_scheduler",
    "validate_config",
    "workflow_dir",
]


#: Each rule and the per-frame output that shows it finished, in workflow order.
STAGE_OUTPUTS = [
    ("detect_stars", "catalogs/{}.csv"),
    ("measure_photometry", "photometry/{}.csv"),
    ("fit_scale", "scale/{}.json"),
    ("sample_gradient", "samples/{}.csv"),
    ("fit_gradient", "gradient/{}.fits"),
    ("normalize_frame", "normalized/{}_nsg.fits"),
]


#: The package's folder of the workflow: the Snakefile, ``config.yaml``, ``workflow/``, ``scripts/``,
#: ``envs/`` and ``profiles/``. In the repository its entries are links to the files at the root; a
#: built wheel holds copies of them.
WORKFLOW_FILES = "workflow_files"
#: Environment variable naming another folder of the repository's layout to run instead.
WORKFLOW_ENV = "NSGFLOW_WORKFLOW"


def workflow_dir() -> Path:
    """The folder holding ``Snakefile``, ``config.yaml`` and ``workflow/``.

    The files ship inside the package (:data:`WORKFLOW_FILES`), found with
    :mod:`importlib.resources`: installed from a wheel (``pip install .``)
    that is ``nsgflow/workflow_files`` in site-packages; in an editable
    install (``pip install -e .``) its links lead to the repository's root,
    which is returned, so Snakemake sees the repository as from ``snakemake``
    at the root. ``NSGFLOW_WORKFLOW`` names another folder of that layout.

    Raises
    ------
    ConfigError
        The folder has no ``Snakefile``, or the package is not installed as
        files on disk (Snakemake needs a real folder).
    """
    override = os.environ.get(WORKFLOW_ENV)
    if override:
        path = Path(override)
    else:
        files = resources.files("nsgflow") / WORKFLOW_FILES
        if not isinstance(files, Path):
            raise ConfigError(
                f"nsgflow's workflow is inside {files}, not a folder on disk; install nsgflow with pip "
                f"into a folder, or set {WORKFLOW_ENV} to a copy of its repository"
            )
        path = (files / "Snakefile").resolve().parent  # the repository's root in an editable install
    if not (path / "Snakefile").is_file():
        raise ConfigError(
            f"no Snakefile in {path}; reinstall nsgflow (pip install nsgflow, or pip install -e . in its "
            f"repository) or set {WORKFLOW_ENV} to the repository's folder"
        )
    return path


def validate_config(config: dict, schema_path: str | os.PathLike | None = None) -> dict:
    """Check ``config`` against the schema and fill in defaults, in place.

    Every error is reported at once; the defaults are then filled by
    :func:`snakemake.utils.validate`, sections and their settings alike.

    Raises
    ------
    ConfigError
        Naming each wrong key, the value given and what is allowed.
    """
    from snakemake.utils import validate

    schema_file = _schema_file(schema_path)
    errors = Draft202012Validator(load_schema(schema_file)).iter_errors(config)
    lines = [_error_line(error) for error in sorted(errors, key=lambda e: list(e.absolute_path))]
    if lines:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines))
    validate(config, str(schema_file.resolve()), set_default=True)
    return config


def _error_line(error: ValidationError) -> str:
    """One schema error: the key, what is wrong and what is allowed."""
    key = ".".join(str(p) for p in error.absolute_path) or "(top level)"
    sub = error.schema if isinstance(error.schema, dict) else {}
    allowed = {k: sub[k] for k in ("type", "minimum", "maximum", "exclusiveMinimum", "enum") if k in sub}
    if error.validator == "oneOf":
        allowed = {
            "one of": [{k: v for k, v in alt.items() if k != "description"} for alt in error.validator_value]
        }
    if error.validator == "additionalProperties":
        allowed = {"keys": sorted(error.schema.get("properties", {}))}
    return f"config key '{key}': {error.message}" + (f"; allowed: {allowed}" if allowed else "")


def _schema_file(schema_path: str | os.PathLike | None = None) -> Path:
    """``schema_path``, by default the workflow's ``workflow/schemas/config.schema.yaml``."""
    return Path(schema_path or workflow_dir() / "workflow" / "schemas" / "config.schema.yaml")


def load_schema(schema_path: str | os.PathLike | None = None) -> dict:
    """The configuration's JSON schema; by default ``workflow/schemas/config.schema.yaml``."""
    return read_yaml(_schema_file(schema_path))


def load_config(path: str | os.PathLike) -> dict:
    """Read a YAML configuration file (no validation)."""
    return read_yaml(path) or {}


def find_frames(pattern: str, reference: str, results: str | None = None) -> dict[str, str]:
    """Map frame names to paths for the FITS files matching ``pattern``, and check the reference.

    As :func:`scan_frames`, without its notes.
    """
    return scan_frames(pattern, reference, results)[0]


def scan_frames(pattern: str, reference: str, results: str | None = None) -> tuple[dict[str, str], list[str]]:
    """Map frame names to paths for the FITS files matching ``pattern``, and check the reference.

    ``reference`` is a path, or ``auto`` (chosen later from the frames' statistics).
    Files inside the folder ``results`` are outputs, not frames. A file the
    pattern matches under two paths (a link and its target) is one frame,
    named after the first path in sorted order.

    Returns
    -------
    frames : dict
        Frame name -> path.
    notes : list of str
        One line for each path left out as the same file as a frame.

    Raises
    ------
    ConfigError
        No frames match; two frames share a name; the reference is missing or
        not among the frames.
    """
    paths = sorted(
        p
        for p in glob.glob(pattern, recursive=True)
        if p.lower().endswith(FRAME_SUFFIXES) and os.path.isfile(p)
    )
    if results is not None:
        outputs = Path(os.path.realpath(results))
        inside = {p for p in paths if Path(os.path.realpath(p)).is_relative_to(outputs)}
        if paths and len(inside) == len(paths):
            raise ConfigError(
                f"every file matching frames='{pattern}' is inside the results folder '{results}'; "
                "give the frames' glob or another results folder"
            )
        paths = [p for p in paths if p not in inside]
    if not paths:
        raise ConfigError(f"no FITS frames match frames='{pattern}' (working directory {os.getcwd()})")
    paths, notes = _distinct_files(paths)
    frames: dict[str, str] = {}
    for path in paths:
        name = frame_name(path)
        if name in frames:
            raise ConfigError(
                f"two frames have the name '{name}': {frames[name]} and {path}; outputs are named after "
                "the file, so rename one of them"
            )
        frames[name] = path
    if reference == "auto":
        return frames, notes
    if not os.path.isfile(reference):
        raise ConfigError(f"reference='{reference}' does not exist; give the path of one of the frames")
    if not any(os.path.samefile(reference, p) for p in paths):
        raise ConfigError(
            f"reference='{reference}' is not among the {len(paths)} frames matching '{pattern}'"
        )
    return frames, notes


def _distinct_files(paths: list[str]) -> tuple[list[str], list[str]]:
    """The paths less those of a file already listed (links), and a line for each left out."""
    first: dict[tuple[int, int], str] = {}
    notes = []
    for path in paths:
        info = os.stat(path)
        key = (info.st_dev, info.st_ino)
        if key in first:
            notes.append(f"{path} is the same file as {first[key]}: skipped, it is normalized once")
        else:
            first[key] = path
    return list(first.values()), notes


def check_frames(
    frames: dict[str, str], reference: str = "auto", mixed_filters: bool = False
) -> dict[str, str]:
    """Check from the headers, each read once, that all frames fit one set, before any work.

    All frames must have one size, be all mono or all colour, and (unless
    ``mixed_filters``) have one FILTER keyword (frames without one form the
    group :data:`NO_FILTER`). A frame whose header cannot be read is left out
    of the checks: it fails alone, with the reason, in its own jobs, and the
    others are normalized.

    Parameters
    ----------
    frames
        Frame name -> path, as :func:`find_frames` gives them.
    reference
        The reference's path, or ``auto``.
    mixed_filters
        Allow frames of different filters in one set (setting ``mixed_filters``).

    Returns
    -------
    dict
        Frame name -> why its header cannot be read, for each such frame.

    Raises
    ------
    ConfigError
        The reference's header cannot be read, frames differ in size or in
        number of channels (the message names the files and their shapes), or
        in FILTER (it names each filter with its number of frames and the first
        few files).
    """
    shapes: dict[tuple[int, ...], list[str]] = {}
    filters: dict[str, list[str]] = {}
    unreadable: dict[str, str] = {}
    for name, path in frames.items():
        try:
            keywords = read_header(path)
            shape = header_shape(keywords)
        except FrameError as exc:
            if reference != "auto" and os.path.samefile(path, reference):
                raise ConfigError(f"the reference {exc}; fix it or give another reference") from exc
            unreadable[name] = str(exc)
            continue
        shape = shape[1:] if len(shape) == 3 and shape[0] == 1 else shape
        if unsupported_shape(shape):
            raise ConfigError(f"{path}: {unsupported_shape(shape)}; remove the file or convert it")
        shapes.setdefault(shape, []).append(path)
        filters.setdefault(filter_name(keywords), []).append(os.path.basename(path))
    if len(shapes) > 1:
        groups = "; ".join(f"{len(p)} of shape {s} (e.g. {p[0]})" for s, p in sorted(shapes.items()))
        colour = any(len(s) == 3 for s in shapes) and any(len(s) == 2 for s in shapes)
        kind = "colour and mono frames are mixed" if colour else "frames differ in size"
        raise ConfigError(
            f"{kind}: {groups}. Normalize each kind separately; frames must be registered to one grid."
        )
    if len(filters) > 1 and not mixed_filters:
        raise ConfigError(_filters_message(filters))
    return unreadable


#: The filter group of frames without a FILTER keyword.
NO_FILTER = "none"
#: Frames named per filter group in :func:`check_frames`'s message; the rest are counted.
NAMED_FRAMES = 3


def filter_name(keywords: Mapping[str, Any]) -> str:
    """A header's FILTER keyword, padding removed, or :data:`NO_FILTER` if it has none."""
    value = keywords.get("FILTER")
    text = "" if value is None else str(value).strip()
    return text or NO_FILTER


def _filters_message(filters: dict[str, list[str]]) -> str:
    """The message for frames of several filters: each filter, its number of frames, the first few files."""
    described = []
    for name, files in sorted(filters.items(), key=lambda item: (-len(item[1]), item[0])):
        shown = ", ".join(files[:NAMED_FRAMES]) + (", …" if len(files) > NAMED_FRAMES else "")
        described.append(f"{name} ({len(files)} frame{'s' if len(files) > 1 else ''}: {shown})")
    return (
        f"frames have different FILTER values: {', '.join(described)}; normalize each filter separately, "
        "or set mixed_filters: true to allow it"
    )


#: Snakemake's default --max-jobs-per-timespan: 100 jobs in 1 s.
DEFAULT_JOB_RATE = (100, 1)


def unthrottle_scheduler(workflow: Any) -> None:
    """Turn off Snakemake's job rate limiter if it has its default limit; call from ``onstart``.

    The limiter (``--max-jobs-per-timespan``, default 100/1s) wakes the
    scheduler a second after each round in which jobs wait for a core, and
    each finished job starts one more such chain of wake-ups. Every round
    checks the inputs of every waiting job, so Snakemake's own process takes
    more CPU per frame the more frames there are (commit 5a7cd15 has the
    measurements). Without the limiter the scheduler runs when a job starts
    or ends. 100 jobs a second is no limit for jobs that
    take seconds each; a limit set by hand is kept.

    ``workflow`` is the Snakefile's ``workflow`` object; in ``onstart`` its
    scheduler exists and has not started. Snakemake versions without these
    attributes are left as they are.
    """
    limit = getattr(getattr(workflow, "scheduling_settings", None), "max_jobs_per_timespan", None)
    scheduler = getattr(workflow, "scheduler", None)
    if limit is None or not hasattr(scheduler, "job_rate_limiter"):
        return
    if (limit.max_jobs, limit.timespan) == DEFAULT_JOB_RATE:
        scheduler.job_rate_limiter = None


def record_settings(folder: str | os.PathLike, records: Mapping[str, dict]) -> dict[str, str]:
    """Write each stage's settings to ``folder/{stage}.json``, unless it holds them already; return the paths.

    The workflow's rules take their stage's file as an input. Snakemake keeps
    its record of each job's parameters in ``.snakemake`` of the folder a
    run starts from, so a run from another folder would not see a changed
    setting; a file rewritten on a change, and so newer than the stage's
    outputs, is seen from any folder. An unchanged file keeps its time. Its
    ``revision`` counts the changes: going back to earlier settings makes a
    file whose bytes differ from the earlier one's too, which Snakemake
    (comparing the checksum it recorded for small inputs) would otherwise
    take for unchanged.
    """
    paths = {}
    for stage, record in records.items():
        path = Path(folder, f"{stage}.json")
        settings = json.loads(json.dumps(record))  # as read back: tuples are lists
        try:
            old = read_json(path)
        except (OSError, ValueError):  # none yet, or not one of these
            old = None
        old = old if isinstance(old, dict) else {}
        if old.get("settings") != settings:
            text = json.dumps({"settings": settings, "revision": old.get("revision", 0) + 1}, indent=2)
            write_text(path, text + "\n")
        paths[stage] = str(path)
    return paths
