"""Provenance: what every output was made from, and a check that nothing changed since.

Each frame gets ``provenance/{frame}.json``: the SHA-256 of its input frame and
of the reference, of every output of every stage, the settings of each stage,
and the versions of nsgflow, its libraries, Python, Snakemake and the
workflow's git commit. ``provenance.json`` indexes them. :func:`verify`
re-hashes everything and reports what changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from nsgflow import ALGORITHM_VERSIONS, __version__
from nsgflow.io import read_header, read_json, write_json

__all__ = [
    "environment",
    "frame_provenance",
    "settings_digest",
    "sha256",
    "stage_record",
    "verify",
    "write_index",
]

#: Libraries whose versions are recorded.
LIBRARIES = ("numpy", "scipy", "astropy", "sep", "pandas", "snakemake")


def sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes, hex.

    Remembered for the process, by the file's identity, size and modification
    time: a normalize job hashes the frame and the reference for the header and
    again for the provenance record.
    """
    info = os.stat(path)
    key = (os.path.realpath(path), info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
    if key in _HASHES:
        return _HASHES[key]
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    _HASHES[key] = digest.hexdigest()
    return _HASHES[key]


#: Hashes computed by :func:`sha256` in this process.
_HASHES: dict[tuple, str] = {}


def _git_commit(folder: Path) -> str | None:
    """The commit of the git repository whose root is ``folder`` (``-dirty`` if a file was changed).

    None for a folder that is not a repository's root, such as the workflow
    installed from a wheel: a virtual environment inside another project's
    repository would otherwise record that project's commit.
    """
    try:
        out = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "--show-toplevel", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        top, commit = out.stdout.splitlines()
        if Path(top).resolve() != folder.resolve():
            return None
        dirty = subprocess.run(
            ["git", "-C", str(folder), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return commit + ("-dirty" if dirty else "")


def environment(workflow_folder: str | os.PathLike | None = None) -> dict:
    """Versions of nsgflow, its algorithms, libraries and Python, and the workflow's git commit."""
    libraries = {}
    for name in LIBRARIES:
        try:
            libraries[name] = version(name)
        except PackageNotFoundError:
            libraries[name] = None
    return {
        "nsgflow": __version__,
        "algorithm_versions": dict(ALGORITHM_VERSIONS),
        "python": platform.python_version(),
        "libraries": libraries,
        "workflow_commit": _git_commit(Path(workflow_folder)) if workflow_folder else None,
    }


def frame_provenance(
    frame: str, inputs: dict[str, str], outputs: dict[str, str], settings: dict, env: dict
) -> dict:
    """The provenance record of one frame: hashed inputs and outputs, settings, environment.

    ``inputs`` and ``outputs`` map a role (``frame``, ``reference``;
    ``catalog``, ``normalized``, ...) to a path.
    """

    return {
        "frame": frame,
        "inputs": _hashed(inputs),
        "outputs": _hashed(outputs),
        "settings": settings,
        "environment": env,
    }


def _hashed(paths: dict[str, str | os.PathLike]) -> dict:
    """Each role's path and its file's SHA-256."""
    return {role: {"path": str(p), "sha256": sha256(p)} for role, p in sorted(paths.items())}


def stage_record(rule: str, frame: str, outputs: dict[str, str | os.PathLike], settings: dict) -> dict:
    """What one job of a stage wrote: its rule, frame, the SHA-256 of each output, and its settings.

    Written by the job itself (``provenance/{rule}/{frame}.json``), so that
    :func:`verify` can tell an output changed after the job that made it,
    even when later stages have been made again from the changed file.
    """
    return {
        "rule": rule,
        "frame": frame,
        "outputs": _hashed(outputs),
        "settings": settings,
        "algorithm_versions": dict(ALGORITHM_VERSIONS),
    }


def write_index(records: list[str | os.PathLike], output: str | os.PathLike) -> None:
    """Write ``provenance.json``: every frame's record, keyed by frame name."""
    frames = {}
    for path in records:
        record = read_json(path)
        frames[record["frame"]] = {"record": str(path), "sha256": sha256(path), **record}
    write_json(output, {"frames": dict(sorted(frames.items()))})


def verify(results: str | os.PathLike) -> list[str]:
    """Re-hash the inputs and outputs recorded in ``results/provenance.json``.

    Returns a list of problems (empty when everything matches): files missing,
    inputs or outputs whose contents changed since they were recorded, files
    that changed since the job that made them wrote them
    (``provenance/{rule}/{frame}.json``, :func:`stage_record`), and
    normalized frames whose header does not carry the recorded settings.
    """
    results = Path(results)
    index_path = results / "provenance.json"
    if not index_path.is_file():
        return [f"{index_path} is missing: run the workflow to completion first"]
    index = read_json(index_path)
    problems = _changed_since_made(results)
    for name, entry in index["frames"].items():
        record_path = Path(entry["record"])
        if not record_path.is_file() or sha256(record_path) != entry["sha256"]:
            problems.append(f"{name}: provenance record {record_path} is missing or was modified")
        for kind in ("inputs", "outputs"):
            for role, item in entry[kind].items():
                path = Path(item["path"])
                if not path.is_file():
                    problems.append(f"{name}: {kind[:-1]} {role} {path} is missing")
                elif sha256(path) != item["sha256"]:
                    problems.append(f"{name}: {kind[:-1]} {role} {path} changed since it was recorded")
        normalized = entry["outputs"].get("normalized", {}).get("path")
        if normalized and Path(normalized).is_file():
            recorded = read_header(normalized).get("NSGSETT")
            expected = settings_digest(entry["settings"])
            if recorded != expected:
                problems.append(f"{name}: {normalized} was not made with the recorded settings")
    return problems


def settings_digest(settings: dict) -> str:
    """Short SHA-256 of settings in canonical JSON: equal settings, equal digest."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def _changed_since_made(results: Path) -> list[str]:
    """Outputs of the stages' jobs that are missing or differ from what the job recorded it wrote."""
    problems = []
    for path in sorted(results.glob("provenance/*/*.json")):
        record = read_json(path)
        for role, item in record["outputs"].items():
            output = Path(item["path"])
            if not output.is_file():
                problems.append(f"{record['frame']}: {role} {output} is missing")
            elif sha256(output) != item["sha256"]:
                problems.append(f"{record['frame']}: {role} {output} changed since {record['rule']} wrote it")
    return problems
