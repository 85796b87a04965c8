"""The ``nsgflow`` command: run the workflow, make and run the demo.

At start-up only the standard library is imported; the commands import the
rest inside :func:`main`, which turns Ctrl-C and every error a user can
cause into one line on stderr.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import nsgflow
from nsgflow.errors import ConfigError, NsgflowError, UsageError

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
logs/ holds each job's log, and run-<date>-<time>.log Snakemake's full output
(--verbose shows it instead of the frames done and the time left).
Settings: the workflow's config.yaml (at the repository's root; installed
with the package); override with --configfile FILE (your own YAML with only
the keys you change; empty: none) and --set SECTION.KEY=VALUE (repeatable,
applied after the file).

A frame that fails does not stop the others; the run then exits with status 1
and summary.csv says why. Run the same command again after an interruption.

Any option or target nsgflow does not know is passed to Snakemake, e.g.:
  --dry-run          show what would run, and why
  --report r.html    write Snakemake's HTML report of the finished run
  --profile profiles/slurm   run the jobs on a SLURM cluster (see docs/guide.md)
  stack              also stack the accepted frames (results/stack/stack.fits)

Example:
  nsgflow run 'data/night1/*.fits' --reference data/night1/m31_003.fits --results out --cores 2 \
      --set gradient.smoothness=1.5

Exit status: 0 done, 1 a frame or the run failed, 2 a wrong command line,
130 interrupted (run the same command again to go on).
"""

#: Snakemake's options for settings: nsgflow checks settings before Snakemake starts, so they come
#: through its own options instead.
SNAKEMAKE_SETTINGS_OPTIONS = ("--config", "-C", "--configfiles")
#: Snakemake's options for a dry run: its output is the plan, shown as it comes.
DRY_RUN_OPTIONS = ("-n", "--dry-run", "--dryrun")


def snakemake_command(
    frames: str,
    reference: str,
    results: str,
    cores: str,
    configfile: str | None,
    extra: list[str],
    workflow: Path | None = None,
) -> list[str]:
    """The command that runs the workflow with Snakemake in this Python environment.

    ``configfile`` is a settings file for Snakemake's ``--configfile``, or None;
    ``workflow`` the folder of the Snakefile, by default :func:`nsgflow.workflow.workflow_dir`.
    """
    from nsgflow.workflow import workflow_dir

    folder = workflow or workflow_dir()
    command = [sys.executable, "-m", "nsgflow.snakemake_main", "--snakefile", str(folder / "Snakefile")]
    if configfile:  # before --cores: --configfile takes every word up to the next option
        command += ["--configfile", configfile]
    # extra options and targets go before --config, which takes every word after it
    return [
        *command,
        "--cores",
        cores,
        # the results folder's lock (_run_lock) stands in for Snakemake's, whose files in the shared
        # .snakemake/locks each run removes when it ends, under the feet of a run beside it
        "--nolock",
        *_workflow_profiles(extra, folder),
        "--config",
        f"frames={frames}",
        f"reference={reference}",
        f"results={results}",
    ]


def _workflow_profiles(extra: list[str], folder: Path) -> list[str]:
    """``extra`` with each ``--profile`` path that is not in the working directory but is in ``folder``
    (the workflow's, e.g. ``profiles/slurm``) made that folder's absolute path.

    Snakemake looks for a profile path in the working directory only; the
    workflow's own profiles are inside the installed package.
    """
    words = list(extra)
    for i, word in enumerate(words):
        option, equals, value = word.partition("=")
        if option != "--profile":
            continue
        at = i if equals else i + 1
        value = value if equals else (words[at] if at < len(words) else "")
        if value and not os.path.exists(value) and (folder / value).is_dir():
            words[at] = f"--profile={folder / value}" if equals else str(folder / value)
    return words


def _check(
    frames: str, reference: str, results: str, configfile: str | None, assignments: list[str]
) -> tuple[dict, dict[str, str]]:
    """Validate the settings and find the frames exactly as the workflow will, before starting it.

    Says in one line each which paths are left out as the same file as a
    frame and which frames cannot be read (they fail alone). Returns the
    settings and the frames.
    """
    from nsgflow.settings import run_settings
    from nsgflow.workflow import check_frames, scan_frames

    if Path(results).exists() and not Path(results).is_dir():
        raise UsageError(f"--results {results} is a file; give a folder (it is made if it does not exist)")
    config = run_settings(frames, reference, results, configfile, assignments)
    found, notes = scan_frames(frames, reference, results)
    unreadable = check_frames(found, reference, config["mixed_filters"])
    for note in notes:
        print(f"nsgflow: {note}", file=sys.stderr)
    for reason in unreadable.values():
        print(f"nsgflow: {reason}; this frame fails, the others are normalized", file=sys.stderr)
    return config, found


def _write_settings(config: dict, results: str) -> Path:
    """Write the run's checked settings for Snakemake's ``--configfile``; return the file's absolute path.

    JSON, which Snakemake reads first, keeps every value's type as checked;
    the file is ``RESULTS/.nsgflow/settings.json``, under the run's lock
    (cluster jobs read it again).
    """
    from nsgflow.io import write_text

    path = Path(results, ".nsgflow", "settings.json").resolve()
    write_text(path, json.dumps(config, indent=2) + "\n")
    return path


def _run_snakemake(command: list[str], log: Path | None = None, keep_fds: Sequence[int] = ()) -> int:
    """Run Snakemake and return its exit status; after Ctrl-C, wait for it to stop, then raise it.

    With ``log``, Snakemake's output and its jobs' go to that file, and
    nsgflow's logger plugin (:mod:`snakemake_logger_plugin_nsgflow`) shows
    the compact display on this process's standard error instead.
    Ctrl-C at the terminal reaches Snakemake too (the same process group),
    which stops its jobs and removes its lock: killing it would leave them.
    It starts with SIGINT blocked (see :mod:`nsgflow.snakemake_main`). SIGINT, SIGTERM
    and SIGHUP that nsgflow takes reach Snakemake as SIGINT, also while it
    starts, and nsgflow waits for it: stopping nsgflow stops the run.
    Snakemake inherits ``keep_fds`` (the run's lock, :func:`_run_lock`).
    """
    started: list[subprocess.Popen] = []
    stop: list[int] = []

    def forward(signum: int, frame: object) -> None:
        # Any thread may take a signal sent to the process (numpy's own threads too), and the main thread
        # runs this later, at whatever line it is on: a KeyboardInterrupt there could leave Snakemake
        # running unwatched, and a Ctrl-C taken before Snakemake started would not reach it.
        stop.append(signum)
        for process in started:
            process.send_signal(signal.SIGINT)

    handlers = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    display = os.dup(sys.stderr.fileno()) if log else None
    try:
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})  # for Snakemake to start with
        try:
            with open(log or os.devnull, "w") as output:
                if display is not None:
                    command = [*command, "--logger", "nsgflow", "--logger-nsgflow-fd", str(display)]
                process = subprocess.Popen(
                    command,
                    stderr=output if log else None,
                    pass_fds=(*keep_fds, *(() if display is None else (display,))),
                )
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        started.append(process)
        if stop:  # a signal came while Snakemake started
            process.send_signal(signal.SIGINT)
        status = _wait(process)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        if display is not None:
            os.close(display)
    if signal.SIGINT in stop:
        raise KeyboardInterrupt
    return status


def _wait(process: subprocess.Popen) -> int:
    """Wait for ``process`` to end and return its exit status, running signal handlers as it waits.

    A signal another thread took interrupts no system call of the main
    thread, so a plain wait would run its handler only once the process ended.
    """
    while True:
        try:
            return process.wait(timeout=1)  # polls, with Python's signal checks between polls
        except subprocess.TimeoutExpired:
            continue


def _run_log(results: str, extra: list[str], verbose: bool) -> Path | None:
    """The file for Snakemake's output, ``RESULTS/logs/run-<date>-<time>.log``, made empty.

    None (Snakemake's output shown as it comes) with ``--verbose`` and for a
    dry run, whose plan is its output.
    """
    if verbose or any(word in DRY_RUN_OPTIONS for word in extra):
        return None
    path = Path(results, "logs", time.strftime("run-%Y%m%d-%H%M%S.log"))
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def _run_lock(results: str) -> Iterator[list[int]]:
    """Hold the results folder's lock for the whole run; yield its descriptor, for Snakemake to hold it too.

    One run at a time writes into a results folder: a second is refused,
    naming the run that holds the lock (its process and folder, in the lock
    file ``RESULTS/.nsgflow/lock``). Snakemake inherits the descriptor, so
    the lock stays held while it runs even when nsgflow itself is killed, and
    the operating system drops it when the last process holding it ends,
    however it ends: a killed run leaves no lock behind. Runs into different
    results folders may run side by side, from one folder or several.
    """
    Path(results, ".nsgflow").mkdir(parents=True, exist_ok=True)
    with open(Path(results, ".nsgflow", "lock"), "a+") as own:
        try:
            fcntl.flock(own, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            own.seek(0)
            holder = own.read().strip() or "another nsgflow run"
            raise ConfigError(
                f"{holder} is writing into {results}; wait for it to finish or give another --results"
            ) from exc
        own.seek(0)
        own.truncate()
        own.write(f"the nsgflow run of process {os.getpid()}, started in {Path.cwd()}\n")
        own.flush()
        yield [own.fileno()]


def run_workflow(
    frames: str,
    reference: str,
    results: str = "results",
    *,
    cores: str = "all",
    configfile: str | None = None,
    settings: list[str] | None = None,
    extra: list[str] | None = None,
    verbose: bool = False,
) -> int:
    """Check the inputs, then run the Snakemake workflow; return its exit status.

    Shows the frames done, the failed frames and the time left
    (:mod:`nsgflow.progress`), one line per failed frame with its reason, and
    sends Snakemake's own output to ``RESULTS/logs/run-<date>-<time>.log``.

    Parameters
    ----------
    frames, reference, results
        The glob of the frames, the reference's path (or ``auto``), the output folder.
    cores
        A whole number of at least 1, or ``all``.
    configfile
        A YAML file of the settings to change, or None.
    settings
        ``SECTION.KEY=VALUE`` texts applied after ``configfile`` (``--set``).
    extra
        Snakemake's own options and targets.
    verbose
        Show Snakemake's output as it comes instead of the compact display, as a dry run does.
    """
    from nsgflow.io import remove_stale_temporaries

    config, found = _check(frames, reference, results, configfile, settings or [])
    print(
        f"nsgflow {nsgflow.__version__}: {len(found)} frames, reference {reference}, results in {results}/",
        file=sys.stderr,
        flush=True,
    )
    with _run_lock(results) as locks:
        if Path(results).is_dir() and remove_stale_temporaries(results):
            print("nsgflow: removed the temporary files of an interrupted run", file=sys.stderr)
        path = _write_settings(config, results)
        log = _run_log(results, extra or [], verbose)
        if log:
            print(
                f"nsgflow: Snakemake's full log: {log} (--verbose shows it here)", file=sys.stderr, flush=True
            )
        status = _run_snakemake(
            snakemake_command(frames, reference, results, cores, str(path), extra or []), log, locks
        )
    if log and status != 0:
        print(f"nsgflow: the run did not finish cleanly; the full log is {log}", file=sys.stderr)
    return status


def _cores(text: str) -> str:
    """``--cores``: a whole number of at least 1, or ``all``."""
    if text == "all" or (text.isascii() and text.isdigit() and int(text) >= 1):
        return text
    raise argparse.ArgumentTypeError(
        f"'{text}' is not a number of cores; give a whole number of at least 1, or all"
    )


def _cmd_run(args: argparse.Namespace, extra: list[str]) -> int:
    for word in extra:
        option = word.split("=", 1)[0]
        if option in SNAKEMAKE_SETTINGS_OPTIONS:
            raise UsageError(
                f"{option} is Snakemake's option; give settings to nsgflow run as --set SECTION.KEY=VALUE "
                "(e.g. --set gradient.smoothness=2) or --configfile FILE"
            )
    return run_workflow(
        args.frames,
        args.reference,
        args.results,
        cores=args.cores,
        configfile=args.configfile,
        settings=args.set,
        extra=extra,
        verbose=args.verbose,
    )


def _cmd_demo(args: argparse.Namespace, extra: list[str]) -> int:
    from nsgflow import synthetic
    from nsgflow.io import read_json

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
    truth = read_json(data / "truth.json")
    reference = truth["frames"][truth["reference"]]["path"]
    results = str(out / "results")
    start = time.perf_counter()
    status = run_workflow(
        str(data / "*.fits"),
        reference,
        results,
        cores=args.cores,
        extra=["all", "stack", *extra],
        verbose=args.verbose,
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
        raise UsageError(f"unknown arguments for verify: {' '.join(extra)}; see 'nsgflow verify --help'")
    problems = verify(args.results)
    for problem in problems:
        print(f"CHANGED {problem}")
    if problems:
        print(f"nsgflow verify: {len(problems)} problem(s) in {args.results}", file=sys.stderr)
        return 1
    print(f"nsgflow verify: every input and output recorded in {args.results}/provenance.json is unchanged")
    return 0


def _add_workflow_options(command: argparse.ArgumentParser) -> None:
    """The options of a command that runs the workflow: ``--cores`` and ``--verbose``."""
    command.add_argument(
        "--cores",
        default="all",
        type=_cores,
        help="CPU cores to use: a number of at least 1, or all (default)",
    )
    command.add_argument(
        "--verbose",
        action="store_true",
        help="show Snakemake's full output as it comes, instead of the frames done and the time left "
        "(the full output otherwise goes to RESULTS/logs/run-<date>-<time>.log)",
    )


class _Parser(argparse.ArgumentParser):
    """An argument parser that takes only whole option names and reports a wrong command line in one line.

    A shortened option is not taken as one of ours: ``--config`` would
    otherwise be read as ``--configfile``; unknown options go to Snakemake.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, allow_abbrev=False, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}; see '{self.prog} --help'\n")


def _add_run_command(sub: argparse._SubParsersAction) -> None:
    """``nsgflow run``: normalize a set of frames."""
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
    _add_workflow_options(run)
    run.add_argument(
        "--configfile", help="YAML file with the settings to change from config.yaml (an empty file: none)"
    )
    run.add_argument(
        "--set",
        action="append",
        metavar="SECTION.KEY=VALUE",
        help="change one setting of config.yaml, e.g. --set gradient.smoothness=1.5; repeatable, applied "
        "after --configfile",
    )
    run.set_defaults(handler=_cmd_run)


def _add_demo_command(sub: argparse._SubParsersAction) -> None:
    """``nsgflow demo``: normalize a synthetic frame set and compare with its truth."""
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
    _add_workflow_options(demo)
    demo.add_argument(
        "--colour",
        action="store_true",
        help="make 3-plane (RGB) frames whose channels differ in scale and sky; one row per channel",
    )
    demo.set_defaults(handler=_cmd_demo)


def _add_verify_command(sub: argparse._SubParsersAction) -> None:
    """``nsgflow verify``: check a finished run's files against its provenance record."""
    verify = sub.add_parser(
        "verify",
        help="re-hash inputs and outputs against results/provenance.json",
        description="Re-hash every input frame and every output recorded in RESULTS/provenance.json and "
        "report anything missing, changed, or not made with the recorded settings. Run it from the "
        "working directory of the run (paths are recorded as given). Exit status 1 if anything is wrong.",
    )
    verify.add_argument("results", help="the results folder of a finished run")
    verify.set_defaults(handler=_cmd_verify)


def build_parser() -> argparse.ArgumentParser:
    """The ``nsgflow`` command line: the commands ``run``, ``demo`` and ``verify``, each with its handler.

    Returns
    -------
    argparse.ArgumentParser
        Its parsed arguments' ``handler`` runs the command given.
    """
    parser = _Parser(
        prog="nsgflow", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"nsgflow {nsgflow.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_run_command(sub)
    _add_demo_command(sub)
    _add_verify_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``nsgflow`` command; returns the exit status (see ``nsgflow run --help``).

    Ctrl-C (SIGINT) stops a run cleanly even when nsgflow was started with it
    ignored, as a shell script's background commands are (``nsgflow run ... &``).
    """
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        args, extra = build_parser().parse_known_args(argv)
        return args.handler(args, extra)
    except UsageError as exc:
        print(f"nsgflow: error: {exc}", file=sys.stderr)
        return 2
    except NsgflowError as exc:
        print(f"nsgflow: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("nsgflow: interrupted; run the same command again to go on", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
