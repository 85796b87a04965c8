"""Shared by the workflow and the CLI: where the workflow is, config validation, frame discovery."""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator, validators

from nsgflow.channels import unsupported_shape
from nsgflow.errors import ConfigError, FrameError
from nsgflow.io import FRAME_SUFFIXES, _plain_header, frame_name, is_xisf, read_header, read_shape

__all__ = [
    "check_filters",
    "check_frames",
    "find_frames",
    "frame_filter",
    "load_config",
    "load_schema",
    "unthrottle_scheduler",
    "validate_config",
    "workflow_dir",
]


def workflow_dir() -> Path:
    """The folder holding ``Snakefile``, ``config.yaml`` and ``workflow/``.

    The package is installed from its repository (``pip install -e .``), so
    that is two levels above ``src/nsgflow``; ``NSGFLOW_WORKFLOW`` overrides it.
    """
    path = Path(os.environ.get("NSGFLOW_WORKFLOW", Path(__file__).resolve().parents[2]))
    if not (path / "Snakefile").is_file():
        raise ConfigError(
            f"no Snakefile in {path}; install nsgflow from its repository with 'pip install -e .' "
            "or set NSGFLOW_WORKFLOW to the repository folder"
        )
    return path


def _with_defaults(cls: type) -> type:
    """A jsonschema validator class that also fills in the schema's defaults."""
    check_properties = cls.VALIDATORS["properties"]

    def properties(validator: Any, props: dict, instance: Any, schema: dict) -> Any:
        if isinstance(instance, dict):
            for key, sub in props.items():
                if "default" in sub and key not in instance:
                    instance[key] = sub["default"] if not isinstance(sub["default"], dict) else {}
        yield from check_properties(validator, props, instance, schema)

    return validators.extend(cls, {"properties": properties})


_Validator = _with_defaults(Draft202012Validator)


def validate_config(config: dict, schema_path: str | os.PathLike | None = None) -> dict:
    """Check ``config`` against the schema and fill in defaults, in place.

    Raises
    ------
    ConfigError
        Naming the key, the value given and what is allowed.
    """
    schema = load_schema(schema_path)
    errors = sorted(_Validator(schema).iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = []
        for error in errors:
            key = ".".join(str(p) for p in error.absolute_path) or "(top level)"
            sub = error.schema if isinstance(error.schema, dict) else {}
            allowed = {
                k: sub[k] for k in ("type", "minimum", "maximum", "exclusiveMinimum", "enum") if k in sub
            }
            if error.validator == "oneOf":
                allowed = {
                    "one of": [
                        {k: v for k, v in alt.items() if k != "description"} for alt in error.validator_value
                    ]
                }
            if error.validator == "additionalProperties":
                allowed = {"keys": sorted(error.schema.get("properties", {}))}
            lines.append(
                f"config key '{key}': {error.message}" + (f"; allowed: {allowed}" if allowed else "")
            )
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines))
    return config


def load_schema(schema_path: str | os.PathLike | None = None) -> dict:
    """The configuration's JSON schema; by default ``workflow/schemas/config.schema.yaml``."""
    schema_path = schema_path or workflow_dir() / "workflow" / "schemas" / "config.schema.yaml"
    return yaml.safe_load(Path(schema_path).read_text())


def load_config(path: str | os.PathLike) -> dict:
    """Read a YAML configuration file (no validation)."""
    return yaml.safe_load(Path(path).read_text()) or {}


def find_frames(pattern: str, reference: str) -> dict[str, str]:
    """Map frame names to paths for the FITS files matching ``pattern``, and check the reference.

    ``reference`` is a path, or ``auto`` (chosen later from the frames' statistics).

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
    if not paths:
        raise ConfigError(f"no FITS frames match frames='{pattern}' (working directory {os.getcwd()})")
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
        return frames
    if not os.path.isfile(reference):
        raise ConfigError(f"reference='{reference}' does not exist; give the path of one of the frames")
    if not any(os.path.samefile(reference, p) for p in paths):
        raise ConfigError(
            f"reference='{reference}' is not among the {len(paths)} frames matching '{pattern}'"
        )
    return frames


def check_frames(frames: dict[str, str]) -> None:
    """Check from the headers that all frames have one size and are all mono or all colour, before any work.

    Raises
    ------
    ConfigError
        A header cannot be read, or frames differ in size or in number of
        channels; the message names the files and their shapes.
    """
    shapes: dict[tuple[int, ...], list[str]] = {}
    for path in frames.values():
        try:
            shape = read_shape(path)
        except FrameError as exc:
            raise ConfigError(f"{exc}; remove the file or fix it") from exc
        shape = shape[1:] if len(shape) == 3 and shape[0] == 1 else shape
        if unsupported_shape(shape):
            raise ConfigError(f"{path}: {unsupported_shape(shape)}; remove the file or convert it")
        shapes.setdefault(shape, []).append(path)
    if len(shapes) > 1:
        groups = "; ".join(f"{len(p)} of shape {s} (e.g. {p[0]})" for s, p in sorted(shapes.items()))
        colour = any(len(s) == 3 for s in shapes) and any(len(s) == 2 for s in shapes)
        kind = "colour and mono frames are mixed" if colour else "frames differ in size"
        raise ConfigError(
            f"{kind}: {groups}. Normalize each kind separately; frames must be registered to one grid."
        )


#: The filter group of frames without a FILTER keyword.
NO_FILTER = "none"
#: Frames named per filter group in :func:`check_filters`'s message; the rest are counted.
NAMED_FRAMES = 3


def frame_filter(path: str | os.PathLike) -> str:
    """A frame's FILTER keyword, or :data:`NO_FILTER` if it has none, from its header only.

    Plain float32 FITS headers are read without astropy, as :func:`~nsgflow.io.read_shape` reads them.
    """
    plain = None if is_xisf(path) else _plain_header(path)
    try:
        keywords = plain[0] if plain else read_header(path)
    except FrameError as exc:
        raise ConfigError(f"{exc}; remove the file or fix it") from exc
    value = keywords.get("FILTER")
    text = "" if value is None else str(value).strip()
    return text or NO_FILTER


def check_filters(frames: dict[str, str], mixed_filters: bool = False) -> None:
    """Check from the headers that all frames were taken through one filter (FILTER keyword), before any work.

    Frames without FILTER form one group, :data:`NO_FILTER`; a set that has
    none passes.

    Parameters
    ----------
    frames
        Frame name -> path, as :func:`find_frames` gives them.
    mixed_filters
        Allow frames of different filters in one set (setting ``mixed_filters``).

    Raises
    ------
    ConfigError
        Frames differ in FILTER and ``mixed_filters`` is false; the message
        names each filter with its number of frames and the first few files.
    """
    if mixed_filters:
        return
    groups: dict[str, list[str]] = {}
    for path in frames.values():
        groups.setdefault(frame_filter(path), []).append(os.path.basename(path))
    if len(groups) < 2:
        return
    described = []
    for name, files in sorted(groups.items(), key=lambda item: (-len(item[1]), item[0])):
        shown = ", ".join(files[:NAMED_FRAMES]) + (", …" if len(files) > NAMED_FRAMES else "")
        described.append(f"{name} ({len(files)} frame{'s' if len(files) > 1 else ''}: {shown})")
    raise ConfigError(
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
    more CPU per frame the more frames there are (README, Speed, has the
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
