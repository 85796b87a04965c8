"""The ``nsgflow`` command: run the workflow, make and run the demo."""

from __future__ import annotations

import argparse
import fcntl
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from nsgflow import __version__
from nsgflow.errors import ConfigError, NsgflowError
from nsgflow.workflow import find_frames, load_config, validate_config, workflow_dir

__all__ = ["main", "run_workflow", "snakemake_command"]

DESCRIPTION = """\
Normalize registered, linear light frames to a reference frame, the way
PixInsight's NormalizeScaleGradient does: for every frame a photometric scale
m from matched stars and a smooth gradient model G, and a normalized frame
T' = m*T - G (float32, never clipped) ready for stacking. Frames are FITS or
XISF, mono or colour (3 planes: each channel gets its own m and G).
"""

RUN_EPILOG = """\
Outputs (under --results), one file per frame per stage: catalogs/,
defects/, photometry/, scale/, samples/, gradient/, normalized/{frame}_nsg.fits,
diagnostics/ (graphs), provenance/; and for the set summary.csv (one row per
frame, failures with their reason), weights.csv, accepted.txt, provenance.json.
logs/ holds each job's log. Settings: config.yaml in the repository; override
with --configfile FILE (your own YAML with only the keys you change).

A frame that fails does not stop the others; the run then exits with status 1
and summary.csv says why. Run the same command again after an interruption.

Any option or target nsgflow does not know is passed to Snakemake, e.g.:
  --dry-run          show what would run, and why
  --report r.html    write Snakemake's HTML report of the finished run
  --profile profiles/slurm   run the jobs on a SLURM cluster (see README)
  stack              also stack the accepted frames (results/stack/stack.fits)

Example:
  nsgflow run 'data/night1/*.fits' --reference data/night1/m31_003.fits --results out --cores 2
"""


def snakemake_command(
    frames: str, reference: str, results: str, cores: str, configfile: str | None, extra: list[str]
) -> list[str]:
    """The command that runs the workflow with Snakemake in this Python environment."""
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(workflow_dir() / "Snakefile"),
        "--cores",
        cores,
    ]
    if configfile:
        command += ["--configfile", configfile]
    # extra options and targets go before --config, which takes every word after it
    return [*command, *extra, "--config", f"frames={frames}", f"reference={reference}", f"results={results}"]


def _check(frames: str, reference: str, results: str, configfile: str | None) -> dict[str, str]:
    """Validate the settings and find the frames exactly as the workflow will, before starting it."""
    config = load_config(workflow_dir() / "config.yaml")
    if configfile:
        override = load_config(configfile)
        for key, value in override.items():
            config[key] = {**config.get(key, {}), **value} if isinstance(value, dict) else value
    config.update(frames=frames, reference=reference, results=results)
    validate_config(config)
    return find_frames(frames, reference)


@contextmanager
def _run_lock() -> Iterator[None]:
    """Hold a lock on this working directory for the whole run; clear Snakemake's lock if stale.

    The operating system drops this lock when the process ends, however it
    ends, so holding it proves no other nsgflow run is active here: a
    Snakemake lock left behind is then from a killed run and is removed.
    """
    metadata = Path(".snakemake")
    metadata.mkdir(exist_ok=True)
    with open(metadata / "nsgflow.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise ConfigError(
                f"another nsgflow run is active in {Path.cwd()}; wait for it to finish"
            ) from exc
        stale = metadata / "locks"
        if stale.is_dir() and any(stale.iterdir()):
            print("nsgflow: removing the lock of an interrupted run", file=sys.stderr)
            shutil.rmtree(stale)
        yield


def run_workflow(
    frames: str,
    reference: str,
    results: str = "results",
    *,
    cores: str = "all",
    configfile: str | None = None,
    extra: list[str] | None = None,
) -> int:
    """Check the inputs, then run the Snakemake workflow; return its exit status."""
    found = _check(frames, reference, results, configfile)
    print(
        f"nsgflow {__version__}: {len(found)} frames, reference {reference}, results in {results}/",
        file=sys.stderr,
        flush=True,
    )
    with _run_lock():
        return subprocess.call(snakemake_command(frames, reference, results, cores, configfile, extra or []))


def _cmd_run(args: argparse.Namespace, extra: list[str]) -> int:
    return run_workflow(
        args.frames, args.reference, args.results, cores=args.cores, configfile=args.configfile, extra=extra
    )


def _cmd_demo(args: argparse.Namespace, extra: list[str]) -> int:
    from nsgflow import synthetic

    out = Path(args.out)
    data = out / "data"
    if not (data / "truth.json").is_file():
        kind = "colour (RGB)" if args.colour else "mono"
        print(f"making {args.frames} synthetic {kind} frames in {data}/ ...", file=sys.stderr, flush=True)
        synthetic.make_frame_set(
            data,
            synthetic.SceneSpec(seed=args.seed),
            synthetic.demo_specs(args.frames, args.seed),
            reference="frame_01",
            colour=args.colour,
        )
    truth = json.loads((data / "truth.json").read_text())
    reference = truth["frames"][truth["reference"]]["path"]
    results = str(out / "results")
    start = time.perf_counter()
    status = run_workflow(
        str(data / "*.fits"), reference, results, cores=args.cores, extra=["all", "stack", *extra]
    )
    if status != 0:
        return status
    rows = synthetic.evaluate(results, truth)
    print(f"\nnsgflow demo: {len(truth['frames'])} frames normalized in {time.perf_counter() - start:.0f} s")
    print(f"  inputs:  {data}/*.fits (truth in {data}/truth.json)")
    print(f"  outputs: {results}/normalized/*_nsg.fits; every stage's files in {results}/")
    print(f"  summary: {results}/summary.csv, graphs: {results}/diagnostics/")
    print(f"  stack:   {results}/stack/stack.fits\n")
    print(
        f"{'frame':<12} {'m true':>8} {'m found':>8} {'+-':>7} {'error %':>8} {'resid rms':>9} {'worst':>6}"
    )
    for r in rows:
        label = f"{r['frame']}[{'RGB'[r['channel']]}]" if "channel" in r else r["frame"]
        print(
            f"{label:<12} {r['m_true']:8.4f} {r['m']:8.4f} {r['m_err']:7.4f} "
            f"{100 * r['scale_error']:+8.3f} {r['residual_rms']:9.3f} {r['residual_worst']:6.3f}"
        )
    print("\nresiduals: normalized minus ideal frame, medians in 64x64 boxes, in reference sky sigmas")
    worst = max(abs(r["scale_error"]) for r in rows)
    print(f"largest scale error: {100 * worst:.3f} %")
    return 0


def _cmd_verify(args: argparse.Namespace, extra: list[str]) -> int:
    from nsgflow.provenance import verify

    if extra:
        raise ConfigError(f"unknown arguments for verify: {' '.join(extra)}")
    problems = verify(args.results)
    for problem in problems:
        print(f"CHANGED {problem}")
    if problems:
        print(f"nsgflow verify: {len(problems)} problem(s) in {args.results}", file=sys.stderr)
        return 1
    print(f"nsgflow verify: every input and output recorded in {args.results}/provenance.json is unchanged")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nsgflow", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"nsgflow {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="normalize a set of frames (runs the Snakemake workflow)",
        description=DESCRIPTION,
        epilog=RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument(
        "frames", help="glob of the input frames, quoted ('data/**/*.fits' searches sub-folders)"
    )
    run.add_argument(
        "--reference",
        default="auto",
        help="path of the reference frame (one of the frames), or auto (default): the highest "
        "altitude, else the lowest and flattest background",
    )
    run.add_argument("--results", default="results", help="output folder (default: results)")
    run.add_argument("--cores", default="all", help="CPU cores to use (default: all)")
    run.add_argument("--configfile", help="YAML file with settings that override config.yaml")
    run.set_defaults(handler=_cmd_run)

    demo = sub.add_parser(
        "demo",
        help="make synthetic frames with known truth, normalize them, compare",
        description="Make a synthetic frame set (stars, sky, a different scale and "
        "gradient per frame, noise), run the workflow on it and print the recovered "
        "scale against the true one. Extra options go to Snakemake.",
    )
    demo.add_argument("--out", default="demo", help="folder for the demo data and results (default: demo)")
    demo.add_argument("--frames", type=int, default=6, help="number of frames (default: 6)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    demo.add_argument("--cores", default="all", help="CPU cores to use (default: all)")
    demo.add_argument(
        "--colour",
        action="store_true",
        help="make 3-plane (RGB) frames whose channels differ in scale and sky; one row per channel",
    )
    demo.set_defaults(handler=_cmd_demo)

    verify = sub.add_parser(
        "verify",
        help="re-hash inputs and outputs against results/provenance.json",
        description="Re-hash every input frame and every output recorded in RESULTS/provenance.json and "
        "report anything missing, changed, or not made with the recorded settings. Run it from the "
        "working directory of the run (paths are recorded as given). Exit status 1 if anything is wrong.",
    )
    verify.add_argument("results", help="the results folder of a finished run")
    verify.set_defaults(handler=_cmd_verify)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``nsgflow`` command."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    try:
        return args.handler(args, extra)
    except NsgflowError as exc:
        print(f"nsgflow: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
