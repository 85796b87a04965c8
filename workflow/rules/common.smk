# Validate the configuration, find the frames and define what every rule shares.
import functools
import math
from pathlib import Path

import nsgflow
from nsgflow import jobserver, progress
from nsgflow.errors import FrameError
from nsgflow.io import is_xisf, read_lines, read_shape
from nsgflow.settings import FRAME_SECTIONS
from nsgflow.workflow import (
    STAGE_OUTPUTS,
    check_frames,
    find_frames,
    record_settings,
    unthrottle_scheduler,
    validate_config,
)

validate_config(config)

RESULTS = config["results"].rstrip("/")
#: frame name -> path, for every input frame
FRAMES = find_frames(config["frames"], config["reference"], RESULTS)
#: frame name -> why its header cannot be read: such a frame fails alone, in its own jobs
UNREADABLE = check_frames(FRAMES, config["reference"], config["mixed_filters"])
#: name of the reference frame given in the settings; None for "auto" (chosen by rule choose_reference)
FIXED_REFERENCE = next(
    (name for name, path in FRAMES.items() if config["reference"] != "auto" and os.path.samefile(path, config["reference"])),
    None,
)
ALGO = nsgflow.ALGORITHM_VERSIONS
#: every setting that shapes a normalized frame: recorded in its header and provenance record
FRAME_SETTINGS = {key: config[key] for key in FRAME_SECTIONS}
#: Each stage's settings and algorithm version as its rules' params hold them, and the set-wide rules'
#: (frame names, reference, reject); kept with the results (settings/{stage}.json, rewritten only on a
#: change) and an input of the rules that use them: a change reruns them even when the run starts from
#: another folder than the last, whose .snakemake holds Snakemake's own record of the params.
SETTINGS = record_settings(
    f"{RESULTS}/settings",
    {
        "detect": {"detect": config["detect"], "algorithm_version": ALGO["detect"]},
        "photometry": {
            "match": config["match"],
            "photometry": config["photometry"],
            "reference": FIXED_REFERENCE or "auto",
            "algorithm_version": ALGO["photometry"],
        },
        **{
            stage: {stage: config[stage], "algorithm_version": ALGO[stage], "graphs": ALGO["diagnostics"]}
            for stage in ("scale", "samples", "gradient")
        },
        "normalize": {**FRAME_SETTINGS, "algorithm_version": ALGO["normalize"]},
        "diagnostics": {"algorithm_version": ALGO["diagnostics"]},
        "set": {"frames": sorted(FRAMES), "reference": FIXED_REFERENCE or "auto", "reject": config["reject"]},
        "stack": {"stack": config["stack"]},
    },
)


#: the stages before the normalized frame: each job writes provenance/{rule}/{frame}.json, what it wrote
STAGE_RULES = [name for name, _ in STAGE_OUTPUTS[:-1]]
#: a frame's files of each stage before the normalized frame: the default target asks for them all, so
#: that one deleted is made again, and what follows from it (Snakemake does not look for a missing file
#: of a job whose later outputs are there)
STAGE_FILES = [
    "catalogs/{}.csv",
    "catalogs/{}.json",
    "defects/{}.csv",
    "photometry/{}.csv",
    "photometry/{}.json",
    "scale/{}.json",
    "samples/{}.csv",
    "samples/{}.json",
    "gradient/{}.fits",
    "gradient/{}_curvature.fits",
    *(f"provenance/{rule}/{{}}.json" for rule in STAGE_RULES),
]


def graph(name, category):
    """The output of a stage's graph, diagnostics/{frame}_{name}.png, in the report; none without plots."""
    if not config["diagnostics"]["plots"]:
        return {}
    path = f"{RESULTS}/diagnostics/{{frame}}_{name}.png"
    caption = f"../report/{name}.rst"
    return {"graph": report(path, caption=caption, category=category, labels={"frame": "{frame}"})}


#: Group of the per-frame rules after detection: photometry, scale, samples, gradient, normalized
#: frame and, for XISF inputs, export_xisf. On a cluster a frame's jobs are then one submitted job
#: that runs its rules one after the other, each still writing its own files and log: one scheduler
#: round trip and queue wait per frame, not five. Detection stays apart: every frame's
#: photometry needs the reference's catalog. Local runs ignore groups.
#: `--group-components frame=N` puts N frames in one job.
FRAME_GROUP = "frame"


wildcard_constraints:
    frame="|".join(re.escape(name) for name in FRAMES),


def report_failures():
    """Write the summary of what finished and what failed, and say where it is."""
    from nsgflow.summary import write_summary  # here: astropy is imported only by a failing run

    chosen = Path(f"{RESULTS}/reference.txt")  # auto reference: known once choose_reference ran
    reference = FIXED_REFERENCE or (chosen_reference(chosen) if chosen.is_file() else None)
    try:
        table = write_summary(RESULTS, FRAMES, reference, config["reject"])
    except Exception as exc:  # never hide the run's own error behind this one
        progress.notify(f"nsgflow: could not write {RESULTS}/summary.csv: {exc}")
        return
    failed = table[table["status"] == "failed"]
    for row in failed.itertuples():
        progress.notify(f"nsgflow: FAILED {row.frame}: {row.reason}")
    progress.notify(f"nsgflow: {len(failed)} of {len(table)} frames failed; see {RESULTS}/summary.csv")


def reference_name(wildcards=None):
    """The reference frame's name: as configured, or as chosen by the choose_reference checkpoint."""
    if FIXED_REFERENCE is not None:
        return FIXED_REFERENCE
    return chosen_reference(checkpoints.choose_reference.get().output.chosen)


def chosen_reference(path):
    """The frame name the choose_reference checkpoint wrote to ``path``; None if it wrote none."""
    return next(iter(read_lines(path)), None)


def reference_choice(wildcards):
    """The checkpoint's outputs, for rules whose parameters name the reference (none when it is fixed)."""
    return [] if FIXED_REFERENCE is not None else [f"{RESULTS}/reference.csv", f"{RESULTS}/reference.txt"]


def reference_path(wildcards):
    return FRAMES[reference_name()]


def reference_file(pattern):
    """Input function for one of the reference's own outputs, e.g. reference_file("catalogs/{}.csv")."""
    return lambda wildcards: f"{RESULTS}/{pattern.format(reference_name())}"


def frame_path(wildcards):
    return FRAMES[wildcards.frame]


@functools.cache
def frame_size_mb(path):
    """One frame in memory (float32), MB: from its header, as compressed or integer files are smaller.

    0 for a frame whose header cannot be read (its jobs fail at once, saying why).
    """
    try:
        return 4 * math.prod(read_shape(path)) / 2**20
    except FrameError:
        return 0.0


def frame_mb(copies):
    """mem_mb for a job on one frame: `copies` times the frame in memory, at least 500 MB.

    Each rule asks for a little more, in whole frames, than the peak resident memory benchmarks/speed.py
    reports for it at 6000x4000 (docs/benchmarks.md, Speed; Python and its libraries included).
    """
    return lambda wildcards: max(500, int(copies * frame_size_mb(FRAMES[wildcards.frame])))
