"""A run's settings from the command line: ``config.yaml``, a ``--configfile`` and ``--set`` overrides.

The command merges them, checks them against the configuration's schema and
hands the result to Snakemake, so whatever is wrong is named in one line
before the workflow starts: the file, or the key with what it allows.
"""

from __future__ import annotations

import math
import os
import re
from typing import Any

import yaml
from jsonschema import Draft202012Validator

from nsgflow.errors import ConfigError, UsageError
from nsgflow.io import read_yaml
from nsgflow.workflow import load_config, load_schema, validate_config, workflow_dir

__all__ = [
    "FRAME_SECTIONS",
    "describe",
    "merge_sections",
    "package_config",
    "parse_setting",
    "read_settings_file",
    "run_settings",
]

#: The sections of the settings that shape a normalized frame, in the order of the stages.
FRAME_SECTIONS = ("detect", "match", "photometry", "scale", "samples", "gradient")

#: Settings given by the command's own arguments, not by ``--set``.
COMMAND_LINE_KEYS = {"frames": "the FRAMES argument", "reference": "--reference", "results": "--results"}

#: How to write a settings file, for the messages about one.
FILE_FORMAT = "write settings as config.yaml does, e.g. a line 'gradient:' and under it '  smoothness: 1.5'"


def read_settings_file(path: str | os.PathLike) -> dict:
    """The settings in a YAML file given as ``--configfile``; an empty file holds none.

    Raises
    ------
    UsageError
        The file does not exist or cannot be read.
    ConfigError
        It is not YAML text, or holds something other than settings by name.
    """
    try:
        settings = read_yaml(path)
    except FileNotFoundError as exc:
        raise UsageError(f"--configfile {path}: no such file; give the path of a YAML settings file") from exc
    except OSError as exc:
        raise UsageError(
            f"--configfile {path}: cannot read it ({exc.strerror}); give a YAML settings file"
        ) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"--configfile {path}: not a text file; {FILE_FORMAT}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"--configfile {path}: not valid YAML{_where(exc)}; {FILE_FORMAT}") from exc
    if settings is None:
        return {}
    if not isinstance(settings, dict):
        kind = "a list" if isinstance(settings, list) else f"the single value {settings!r}"
        raise ConfigError(f"--configfile {path}: holds {kind}, not settings by name; {FILE_FORMAT}")
    return settings


def _where(error: yaml.YAMLError) -> str:
    """Where in the file the YAML error is and what it is, e.g. " at line 3, column 5 (...)"."""
    mark = getattr(error, "problem_mark", None)
    if mark is None:
        return ""
    return f" at line {mark.line + 1}, column {mark.column + 1} ({getattr(error, 'problem', None) or error})"


def parse_setting(assignment: str, schema: dict) -> tuple[list[str], Any]:
    """The key path and typed value of one ``--set SECTION.KEY=VALUE``, typed and checked by the schema.

    Examples
    --------
    >>> schema = {"properties": {"gradient": {"properties": {"degree": {"type": "integer", "minimum": 1}}}}}
    >>> parse_setting("gradient.degree=2", schema)
    (['gradient', 'degree'], 2)

    Raises
    ------
    UsageError
        The text is not ``KEY=VALUE``, the key is not a setting, or the value is
        not one the setting allows; the message names the key and what it allows.
    """
    name, equals, text = assignment.partition("=")
    if not equals or not name:
        raise UsageError(f"--set {assignment}: write SECTION.KEY=VALUE, e.g. --set gradient.smoothness=1.5")
    path = name.split(".")
    node = schema
    for depth, part in enumerate(path):
        keys = node.get("properties", {})
        if part not in keys:
            scope = f"the keys of {'.'.join(path[:depth])} are" if depth else "the settings are"
            listed = [key for key in keys if depth or key not in COMMAND_LINE_KEYS]
            raise UsageError(f"--set {assignment}: no setting '{name}'; {scope} {', '.join(listed)}")
        node = keys[part]
    if name in COMMAND_LINE_KEYS:
        raise UsageError(f"--set {assignment}: give {name} as {COMMAND_LINE_KEYS[name]}")
    if "properties" in node:
        first = next(iter(node["properties"]))
        raise UsageError(f"--set {assignment}: {name} is a section; set one of its keys, e.g. {name}.{first}")
    value = _typed(text, node)
    if value is None:
        raise UsageError(f"--set {assignment}: {name} must be {describe(node)}")
    return path, value


def _typed(text: str, schema: dict) -> Any:
    """``text`` as the first value of the schema's alternatives it is valid for; None if none."""
    for option in schema.get("oneOf", [schema]):
        value = _as_type(text, option)
        if value is not None and Draft202012Validator(option).is_valid(value):
            return value
    return None


def _as_type(text: str, schema: dict) -> Any:
    """``text`` as the kind of value ``schema`` describes (not yet checked against it); None if not one."""
    if "const" in schema or "enum" in schema:
        return next((v for v in schema.get("enum", [schema.get("const")]) if str(v) == text), None)
    kind = schema.get("type")
    if kind == "boolean":
        return {"true": True, "false": False}.get(text.lower())
    if kind in ("integer", "number") and re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    if kind == "number":
        try:
            number = float(text)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return text if kind == "string" else None


def describe(schema: dict) -> str:
    """What a setting's schema allows, in words.

    Examples
    --------
    >>> describe({"oneOf": [{"type": "number", "minimum": -6, "maximum": 6}, {"const": "auto"}]})
    'a number from -6 to 6, or auto'
    >>> describe({"type": "number", "exclusiveMinimum": 0, "maximum": 1})
    'a number > 0 and <= 1'
    >>> describe({"type": "boolean"})
    'true or false'
    """
    if "oneOf" in schema:
        return ", or ".join(describe(option) for option in schema["oneOf"])
    if "const" in schema:
        return str(schema["const"])
    if "enum" in schema:
        return "one of " + ", ".join(str(v) for v in schema["enum"])
    kind = {"integer": "a whole number", "number": "a number", "boolean": "true or false", "string": "text"}
    text = kind[schema["type"]]
    if "minimum" in schema and "maximum" in schema:
        return f"{text} from {schema['minimum']} to {schema['maximum']}"
    bounds = [
        f"{sign} {schema[key]}"
        for key, sign in (
            ("minimum", ">="),
            ("exclusiveMinimum", ">"),
            ("maximum", "<="),
            ("exclusiveMaximum", "<"),
        )
        if key in schema
    ]
    return " ".join([text, " and ".join(bounds)]) if bounds else text


def package_config() -> dict:
    """The settings of the ``config.yaml`` that ships with nsgflow (every default), not validated."""
    return load_config(workflow_dir() / "config.yaml")


def merge_sections(config: dict, changes: dict) -> dict:
    """``config`` with ``changes`` applied, in place: a section given as a dict changes only its keys."""
    for key, value in changes.items():
        base = config.get(key)
        config[key] = {**base, **value} if isinstance(base, dict) and isinstance(value, dict) else value
    return config


def run_settings(
    frames: str,
    reference: str,
    results: str,
    configfile: str | None = None,
    assignments: list[str] | None = None,
) -> dict:
    """Every setting of a run, validated: ``config.yaml``, then ``configfile``'s, then each ``--set``.

    Parameters
    ----------
    frames, reference, results
        The command's own arguments.
    configfile
        A YAML file of the settings to change (only those), or None.
    assignments
        ``SECTION.KEY=VALUE`` texts, applied in order after the file.

    Raises
    ------
    UsageError
        ``configfile`` is missing or unreadable, or an assignment is wrong.
    ConfigError
        ``configfile`` is not a settings file or holds an invalid setting.
    """
    config = merge_sections(package_config(), read_settings_file(configfile) if configfile else {})
    config.update(frames=frames, reference=reference, results=results)
    validate_config(config)
    schema = load_schema()
    for assignment in assignments or []:
        path, value = parse_setting(assignment, schema)
        section = config
        for part in path[:-1]:
            section = section[part]  # validated: every section is there, filled with its defaults
        section[path[-1]] = value
    return config
