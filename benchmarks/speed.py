"""Speed and memory of the nsgflow workflow on synthetic frames (issue 7).

Makes ``--frames`` synthetic frames of ``--size`` pixels with :mod:`nsgflow.synthetic`
(the star count scales with the area: 3000 stars per 600x900 px, the demo's density),
runs the whole workflow with Snakemake on them and prints

* wall time per frame, overall and per stage, from the benchmark TSV files every
  rule writes (``{results}/benchmarks/{rule}/{frame}.tsv``, column ``s``);
* peak memory (``max_rss``; of the job server's fork that ran the job, from the job's log, when
  one did) per rule against the size of one frame in memory
  (float32) and against the ``mem_mb`` the rule asks a cluster for;
* the CPU time of the whole run (user and system, Snakemake and all its jobs), against
  the jobs' own;
* the per-job overhead: Python start-up plus the imports every job script does, and the
  imports the job server does once per run (:mod:`nsgflow.jobserver`);
* how much the CPUs slow each other: the same pieces of the workflow's work (star
  detection on a synthetic frame; m*T - R over 24-megapixel frames) timed on one CPU
  alone and on every CPU at once, before the run (CPUs that share a physical core or
  the memory's bandwidth make jobs that run side by side slower than either alone);
* the CPU time the host took for other machines during the run (``steal`` in
  /proc/stat), where the machine is a virtual one;
* how long a rerun takes after a change of ``gradient.smoothness``, then after a
  change of a ``samples`` setting (:data:`RERUNS`), against the first run, and which
  rules each reran;
* how long ``snakemake --dry-run`` takes to plan a large set (``--plan-frames``,
  default 500: sparse copies of the synthetic frames, planning reads no pixels).

With ``--compare-one-job PAIRS`` it measures instead what one rule per stage costs a first
run: the workflow as it is, and the same stages run one after the other in one job per frame
after detection (``benchmarks/one_job_per_frame.smk``), each from empty results, alternated
(:func:`compare_one_job`).

Nothing in the workflow is changed; this only measures it. Everything is written
under ``--out`` (default /tmp/nsgflow-bench), including Snakemake's ``.snakemake``
folder, so the repository stays clean. Options nsgflow does not know go to
Snakemake (e.g. ``--executor slurm --profile profiles/slurm``).

Examples::

    .venv/bin/python benchmarks/speed.py --frames 8 --size 900x600 --cores 1
    .venv/bin/python benchmarks/speed.py --frames 8 --size 6000x4000 --cores 2 --out /tmp/bench24mp
    .venv/bin/python benchmarks/speed.py --frames 8 --size 6000x4000 --cores 2 --compare-one-job 3
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from nsgflow import synthetic
from nsgflow.cli import snakemake_command
from nsgflow.workflow import STAGE_OUTPUTS, workflow_dir

#: the per-frame rules with a benchmark directive, in workflow order
STAGES = tuple(rule for rule, _ in STAGE_OUTPUTS)
#: Bytes of a rendered frame copied for the planning benchmark: its header (a few FITS blocks).
HEADER_BYTES = 10 * 2880
#: the demo's star density: 3000 stars on 600 x 900 px
STARS_PER_PX = 3000 / (600 * 900)
#: what a job script imports before its stage starts: the Snakemake preamble and the stage module
JOB_IMPORTS = "import snakemake.script, snakemake.iocontainers, snakemake.logging; import nsgflow.jobserver"
#: what the job server (:mod:`nsgflow.jobserver`) imports once per run, before the jobs' forks
SERVER_IMPORTS = "import importlib, nsgflow.jobserver as s; [importlib.import_module(m) for m in s.PRELOAD]"
#: Frame-sized reads one rule per stage adds to one job per frame's one read of the target and the
#: reference: measure_photometry and sample_gradient each read both, normalize_frame the target and
#: the gradient.
EXTRA_FRAME_READS = 4


def parse_size(text: str) -> tuple[int, int]:
    """``'6000x4000'`` (width x height, as cameras are quoted) -> numpy shape ``(4000, 6000)``."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be WIDTHxHEIGHT, e.g. 6000x4000, not {text!r}") from None
    if width < 64 or height < 64:
        raise argparse.ArgumentTypeError("frames must be at least 64x64 px")
    return height, width


def make_frames(data: Path, n_frames: int, shape: tuple[int, int], seed: int) -> dict:
    """Render the frame set into ``data`` unless the same set is already there; return its truth."""
    n_stars = round(STARS_PER_PX * shape[0] * shape[1])
    scene = synthetic.SceneSpec(shape=shape, n_stars=n_stars, seed=seed)
    truth_path = data / "truth.json"
    if truth_path.is_file():
        truth = json.loads(truth_path.read_text())
        if (
            tuple(truth["scene"]["shape"]) == shape
            and truth["scene"]["n_stars"] == n_stars
            and len(truth["frames"]) == n_frames
            and all(Path(f["path"]).is_file() for f in truth["frames"].values())
        ):
            print(f"reusing {n_frames} frames in {data}/", flush=True)
            return truth
        shutil.rmtree(data)
    data.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    truth = synthetic.make_frame_set(data, scene, synthetic.demo_specs(n_frames, seed), reference="frame_01")
    took = time.perf_counter() - start
    print(f"rendered {n_frames} frames with {n_stars} stars in {took:.1f} s ({took / n_frames:.1f} s/frame)")
    return truth


def children_cpu() -> tuple[float, float]:
    """User and system CPU seconds of every child process waited for so far (and theirs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime, usage.ru_stime


def timed(
    command: list[str], cwd: Path, log: Path, timeout: float | None = None, env: dict | None = None
) -> float:
    """Run ``command`` in ``cwd`` with its output in ``log``; return the wall time, raise on failure."""
    cwd.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(log, "w") as out:
        status = subprocess.run(
            command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, timeout=timeout, env=env
        )
    took = time.perf_counter() - start
    if status.returncode != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-30:])
        raise SystemExit(f"failed ({status.returncode}): {' '.join(command)}\n--- {log} (end) ---\n{tail}")
    return took


def timed_cpu(command: list[str], cwd: Path, log: Path, **kwargs: Any) -> tuple[float, tuple[float, float]]:
    """:func:`timed`, with the user and system CPU time its processes took (:func:`children_cpu`)."""
    user, system = children_cpu()
    wall = timed(command, cwd, log, **kwargs)
    now = children_cpu()
    return wall, (now[0] - user, now[1] - system)


def requested_mem_mb(dry_run_log: Path) -> dict[str, int]:
    """The largest ``mem_mb`` each rule asks for, from the job list a dry run prints."""
    requested: dict[str, int] = {}
    rule = None
    for line in dry_run_log.read_text().splitlines():
        line = line.strip()
        if line.startswith(("rule ", "localrule ")):
            rule = line.split()[1].rstrip(":")
        elif line.startswith("resources:") and rule:
            for item in line.removeprefix("resources:").split(","):
                key, _, value = item.strip().partition("=")
                if key == "mem_mb" and value.isdigit():
                    requested[rule] = max(requested.get(rule, 0), int(value))
    return requested


def planned_jobs(dry_run_log: Path) -> int | None:
    """The job count of the "Job stats" table a dry run prints (its ``total`` row)."""
    for line in dry_run_log.read_text().splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[0] == "total" and fields[1].isdigit():
            return int(fields[1])
    return None


def read_benchmarks(results: Path) -> dict[str, list[dict[str, float]]]:
    """Rule -> one row per job of its benchmark TSV (``s``, ``max_rss`` in MB, ``cpu_time``...)."""
    rows: dict[str, list[dict[str, float]]] = {}
    for path in sorted((results / "benchmarks").glob("*/*.tsv")):
        with open(path, newline="") as handle:
            for row in csv.DictReader(handle, delimiter="\t"):
                values = {}
                for key in ("s", "max_rss", "cpu_time", "mean_load"):
                    try:
                        values[key] = float(row.get(key, "nan"))
                    except ValueError:  # "NA" / "-" when the job was too short to sample
                        values[key] = float("nan")
                values["frame"] = path.stem
                fork = _fork_usage(results / "logs" / path.parent.name / f"{path.stem}.log")
                if fork is not None:  # the job ran in a fork of the job server: its memory and CPU
                    values["max_rss"] = max(values["max_rss"], fork[0])
                    values["cpu_time"] += fork[1]
                rows.setdefault(path.parent.name, []).append(values)
    return rows


#: the last line of a job run by the job server: its fork's peak RSS (MB) and CPU time (s)
FORK_USAGE = re.compile(
    r"^INFO job process \(forked by the job server\): peak RSS ([0-9.]+) MB, CPU ([0-9.]+) s$"
)


def _fork_usage(log: Path) -> tuple[float, float] | None:
    """Peak RSS (MB) and CPU time (s) of the job server's fork that ran the job, if one did.

    Snakemake's benchmark file measures the job's own process, which only waits for the fork.
    """
    if log.is_file():
        for line in reversed(log.read_text().splitlines()):
            if match := FORK_USAGE.match(line):
                return float(match[1]), float(match[2])
    return None


#: The reruns timed after the first run, in order, each a settings file for Snakemake's --configfile:
#: what a user adjusting the gradient does (README, "Adjusting the smoothness"), then a samples setting
#: on top of it. Each setting is one the first run did not use.
RERUNS = {
    "smoothness": "gradient: {smoothness: 1.5}\n",
    "samples": "gradient: {smoothness: 1.5}\nsamples: {star_growth: 1.6}\n",
}


def rerun_times(out: Path, command: list[str], first_s: float, n_frames: int) -> dict[str, dict]:
    """Time each of :data:`RERUNS` after the first run (``command``, which took ``first_s``); print them.

    Returns, per rerun, its wall time, its fraction of the first run's and the jobs it ran per rule.
    """
    found = {}
    for name, settings in RERUNS.items():
        changes = out / f"rerun_{name}.yaml"
        changes.write_text(settings)
        log = out / f"rerun_{name}.log"
        at = command.index("--cores")  # --configfile before --cores: it takes every word up to an option
        wall = timed([*command[:at], "--configfile", str(changes), *command[at:]], out, log)
        jobs = dict(sorted(Counter(re.findall(r"^(?:local)?rule (\w+):$", log.read_text(), re.M)).items()))
        found[name] = {"wall_s": wall, "of_first": wall / first_s, "jobs": jobs}
        print(
            f"rerun after a {name} change: {wall:.1f} s ({wall / n_frames:.2f} s/frame), "
            f"{100 * wall / first_s:.0f} % of the first run; jobs: "
            + ", ".join(f"{rule} {n}" for rule, n in jobs.items())
        )
    return found


#: The environment Snakemake gives a one-thread job: its linear algebra libraries on one thread
#: (OpenBLAS's default, a thread per CPU, doubles the CPU time of the imports on this machine).
JOB_ENV = {
    name: "1"
    for name in (
        "OMP_NUM_THREADS",
        "GOTO_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "MKL_NUM_THREADS",
        "VECLIB_MAXIMUM_THREADS",
        "NUMEXPR_NUM_THREADS",
    )
}


#: one process of :func:`cpu_contention`: pinned to CPU ``argv[1]``, it waits until the time
#: ``argv[2]``, then prints the shortest of 5 star detections on the frame in ``argv[3]`` and the
#: shortest of 5 passes of m*T - R over 24-megapixel float32 frames, which the caches cannot hold (s)
CONTENTION_PROBE = """
import os, sys, time
os.sched_setaffinity(0, {int(sys.argv[1])})
import numpy as np
from nsgflow.detect import detect_stars
frame = np.load(sys.argv[3])
target, reference = np.ones((2, 4000, 6000), np.float32)
difference = np.empty_like(target)
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
def shortest(work):
    times = []
    for _ in range(5):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)
def stream():
    np.multiply(target, np.float32(1.3), out=difference)
    np.subtract(difference, reference, out=difference)
print(shortest(lambda: detect_stars(frame)), shortest(stream))
"""


def cpu_contention(out: Path) -> dict[str, float]:
    """Seconds of :data:`CONTENTION_PROBE`'s two pieces on one CPU alone, and on each when all run them.

    The detection shows CPUs that share a core; the pass over frames too
    large for the caches, CPUs that share the memory's bandwidth (the
    24-megapixel jobs' case). Each is the shorter of two rounds (alone,
    together, alone, together): a moment's load from elsewhere on the host
    lengthens one round, not both.
    """
    frame = out / "contention_probe.npy"
    scene = synthetic.SceneSpec(shape=(1000, 1500), n_stars=8000, seed=1)
    np.save(frame, synthetic.render_frame(scene, synthetic.FrameSpec("probe", seed=1)))

    def run(cpus: list[int]) -> list[float]:
        start = time.time() + 2.0  # after every process has loaded the frame
        probes = [
            subprocess.Popen(
                [sys.executable, "-c", CONTENTION_PROBE, str(cpu), str(start), str(frame)],
                stdout=subprocess.PIPE,
                text=True,
                env={**os.environ, **JOB_ENV},
            )
            for cpu in cpus
        ]
        outputs = [p.communicate()[0] for p in probes]
        if any(p.returncode for p in probes):
            sys.exit("speed: the CPU contention probe failed (its error is above)")
        return [tuple(map(float, text.split())) for text in outputs]

    cpus = sorted(os.sched_getaffinity(0))
    rounds = [(run(cpus[:1])[0], run(cpus)) for _ in range(2)]
    result: dict[str, float] = {"cpus": len(cpus)}
    for i, piece in enumerate(("detect", "stream")):
        result[f"{piece}_alone_s"] = min(alone[i] for alone, _ in rounds)
        result[f"{piece}_together_s"] = min(statistics.mean(t[i] for t in together) for _, together in rounds)
    return result


def steal_s() -> float | None:
    """CPU time the hypervisor gave to others so far, all CPUs (s; /proc/stat's steal); None: unknown."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def job_overhead(repeats: int = 5) -> dict[str, float]:
    """Median wall time of a bare interpreter, of the imports every job script does (as in a job), and of
    the job server's imports (once per run)."""
    probes = {"python_startup": "pass", "job_imports": JOB_IMPORTS, "server_imports": SERVER_IMPORTS}
    result = {}
    for name, code in probes.items():
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, **JOB_ENV})
            times.append(time.perf_counter() - start)
        result[name] = statistics.median(times)
    return result


def frame_read_s(path: str, repeats: int = 5) -> float:
    """Median time of reading a frame's pixels as the stages do (:func:`nsgflow.io.read_frame`), cached."""
    from nsgflow.io import read_frame

    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        read_frame(path)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


#: The rule that runs the stages after detection in one job per frame (:func:`compare_one_job`).
ONE_JOB_RULES = Path(__file__).resolve().with_name("one_job_per_frame.smk")


def one_job_workflow(folder: Path) -> Path:
    """A folder of links to the workflow's files whose Snakefile also includes :data:`ONE_JOB_RULES`."""
    source = workflow_dir()
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for entry in source.iterdir():
        if entry.name != "Snakefile":
            (folder / entry.name).symlink_to(entry.resolve())
    snakefile = (source / "Snakefile").read_text()
    (folder / "Snakefile").write_text(f'{snakefile}\n\ninclude: "{ONE_JOB_RULES}"\n')
    return folder


def compare_one_job(
    out: Path, frames_glob: str, n: int, reference: str, cores: str, extra: list[str], pairs: int
) -> dict:
    """Time first runs of one rule per stage and of one job per frame after detection, alternated; print them.

    Both run the same stage functions on the same frames from empty results
    folders; the one-job design is :data:`ONE_JOB_RULES`, whose job runs the
    stage rules' scripts in turn in one fork of the job server. The runs go
    A B, B A, A B, ...: the two runs of a pair follow each other, and each
    pair gives how much slower the rules are (the machine's speed drifts
    between pairs). Both designs read the frames in each stage; a single job
    could read them once, so the rules' :data:`EXTRA_FRAME_READS` reads are
    also charged to them once more. Returns each design's wall and CPU times
    (s per frame) and, per pair, how much slower the rules are.
    """
    designs = {
        "rule per stage": (workflow_dir(), dict(os.environ)),
        "one job per frame": (
            one_job_workflow(out / "one_job_workflow"),
            {
                **os.environ,
                "PYTHONPATH": os.pathsep.join(
                    filter(None, [str(ONE_JOB_RULES.parent), os.environ.get("PYTHONPATH")])
                ),
            },
        ),
    }
    found: dict[str, dict[str, list[float]]] = {name: {"wall_s": [], "cpu_s": []} for name in designs}
    for i in range(pairs):
        for name in list(designs)[:: 1 if i % 2 == 0 else -1]:
            folder, env = designs[name]
            results = out / "compare" / name.replace(" ", "_")
            if results.exists():
                shutil.rmtree(results)
            command = snakemake_command(frames_glob, reference, str(results), cores, None, extra, folder)
            wall, times = timed_cpu(command, out, out / f"compare_{i}_{name.replace(' ', '_')}.log", env=env)
            cpu = sum(times)
            found[name]["wall_s"].append(wall / n)
            found[name]["cpu_s"].append(cpu / n)
            print(
                f"pair {i + 1}, {name}: first run {wall / n:.2f} s/frame, CPU {cpu / n:.2f} s/frame",
                flush=True,
            )
    summary: dict = {name: dict(times) for name, times in found.items()}
    split, one = found["rule per stage"], found["one job per frame"]
    # the one-job design runs the stages' scripts, which read the frames as the rules do
    reads = EXTRA_FRAME_READS * frame_read_s(reference)
    summary["extra_frame_reads_s"] = reads
    for key, label in (("wall_s", "wall time"), ("cpu_s", "CPU time")):
        slower = [a / b - 1 for a, b in zip(split[key], one[key], strict=True)]
        charged = [(a + reads) / b - 1 for a, b in zip(split[key], one[key], strict=True)]
        summary[f"{key}_slower"] = slower
        summary[f"{key}_slower_reads_charged"] = charged
        pairwise = ", ".join(f"{100 * v:+.1f}" for v in slower)
        print(
            f"first run, {label}: one rule per stage against one job per frame after detection, each pair "
            f"{pairwise} %, median {100 * statistics.median(slower):+.1f} %; with the rules' "
            f"{EXTRA_FRAME_READS} more frame reads ({reads:.2f} s per frame) charged again, "
            f"median {100 * statistics.median(charged):+.1f} %"
        )
    return summary


def plan_time(out: Path, truth: dict, n_plan: int, repeats: int) -> list[float]:
    """Time ``snakemake --dry-run`` on ``n_plan`` frames: sparse copies of the rendered frames, cycled.

    Each is the rendered frame's header and a hole the size of its pixels
    (planning reads headers only): distinct files, as links are not (a link
    and its target are one frame), at no disk cost.
    """
    frames = out / f"plan{n_plan}" / "frames"
    if frames.exists():
        shutil.rmtree(frames)
    frames.mkdir(parents=True)
    paths = [Path(f["path"]).resolve() for f in truth["frames"].values()]
    ref_index = list(truth["frames"]).index(truth["reference"])
    for i in range(n_plan):
        source = paths[i % len(paths)]
        with open(source, "rb") as handle:
            header = handle.read(HEADER_BYTES)
        with open(frames / f"f{i:04d}.fits", "wb") as copy:
            copy.write(header)
            copy.truncate(source.stat().st_size)
    # the first copy of the reference frame
    reference = frames / f"f{ref_index:04d}.fits"
    results = out / f"plan{n_plan}" / "results"
    command = snakemake_command(
        str(frames / "*.fits"), str(reference), str(results), "1", None, ["--dry-run"]
    )
    work = out / f"plan{n_plan}"
    return [timed(command, work, work / "dry_run.log") for _ in range(repeats)]


def summarize(
    results: Path,
    shape: tuple[int, int],
    n_frames: int,
    cores: str,
    wall: float,
    requested: dict[str, int],
    overhead: float,
) -> dict:
    """Print the per-stage table and the totals; return them as a dict."""
    rows = read_benchmarks(results)
    frame_mb = shape[0] * shape[1] * 4 / 2**20
    summary: dict = {"stages": {}, "frame_mb_float32": frame_mb}
    print(
        f"\n{'stage':<20} {'jobs':>4} {'s/frame mean':>12} {'median':>7} {'max':>7} {'net s':>6} "
        f"{'cpu s':>7} {'peak RSS MB':>12} {'xframe':>7} {'mem_mb':>7}"
    )
    total_job_s = 0.0
    for rule in [*STAGES, *sorted(set(rows) - set(STAGES))]:
        jobs = rows.get(rule, [])
        if not jobs:
            continue
        secs = [j["s"] for j in jobs]
        rss = max((j["max_rss"] for j in jobs if j["max_rss"] == j["max_rss"]), default=float("nan"))
        cpu = statistics.fmean(j["cpu_time"] for j in jobs)
        total_job_s += sum(secs)
        stage = {
            "jobs": len(jobs),
            "s_mean": statistics.fmean(secs),
            "s_median": statistics.median(secs),
            "s_max": max(secs),
            "s_total": sum(secs),
            "s_net_mean": statistics.fmean(secs) - overhead,
            "cpu_s_mean": cpu,
            "max_rss_mb": rss,
            "max_rss_per_frame": rss / frame_mb,
            "requested_mem_mb": requested.get(rule),
        }
        summary["stages"][rule] = stage
        print(
            f"{rule:<20} {len(jobs):>4} {stage['s_mean']:>12.2f} {stage['s_median']:>7.2f} "
            f"{stage['s_max']:>7.2f} {stage['s_net_mean']:>6.2f} {cpu:>7.2f} {rss:>12.0f} "
            f"{rss / frame_mb:>7.1f} {requested.get(rule, '-')!s:>7}"
        )
    print(f"{'sum of stages':<20} {'':>4} {total_job_s / n_frames:>12.2f}")
    summary.update(
        wall_s=wall,
        wall_s_per_frame=wall / n_frames,
        job_s_total=total_job_s,
        job_s_per_frame=total_job_s / n_frames,
    )
    print(
        f"\nwall time {wall:.1f} s for {n_frames} frames with --cores {cores}: "
        f"{wall / n_frames:.2f} s/frame; the jobs' own time adds up to {total_job_s:.1f} s "
        f"({total_job_s / n_frames:.2f} s/frame)"
    )
    print(
        f"'net s' = mean job time less the per-job start-up ({overhead:.2f} s, below); "
        f"one frame in memory (float32): {frame_mb:.1f} MB; 'xframe' = peak RSS / that; "
        "'mem_mb' = what the rule requests (dry run)"
    )
    slowest = max(summary["stages"].items(), key=lambda kv: kv[1]["s_total"])
    print(
        f"dominant stage: {slowest[0]}, {slowest[1]['s_mean']:.2f} s/frame "
        f"({100 * slowest[1]['s_total'] / total_job_s:.0f} % of all job time)"
    )
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=8, help="number of synthetic frames (default 8)")
    parser.add_argument(
        "--size",
        type=parse_size,
        default=(600, 900),
        help="frame size WIDTHxHEIGHT (default 900x600, the demo's)",
    )
    parser.add_argument("--cores", default="1", help="Snakemake --cores (default 1)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/nsgflow-bench"), help="work folder")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the synthetic set")
    parser.add_argument(
        "--plan-frames", type=int, default=500, help="frames for the dry-run timing (0: skip)"
    )
    parser.add_argument("--plan-repeats", type=int, default=2, help="dry runs to time (default 2)")
    parser.add_argument(
        "--timeout", type=float, default=None, help="give up the workflow run after this many s"
    )
    parser.add_argument(
        "--compare-one-job",
        type=int,
        default=0,
        metavar="PAIRS",
        help="instead: time PAIRS first runs of each design, one rule per stage and one job per frame "
        "after detection, alternated",
    )
    args, extra = parser.parse_known_args(argv)
    if args.frames < 2:
        parser.error("--frames must be at least 2 (frame_01 is the reference)")

    out = args.out.resolve()
    shape = args.size
    print(f"nsgflow speed benchmark: {args.frames} frames of {shape[1]}x{shape[0]} px, --cores {args.cores}")
    print(f"load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())} ({os.cpu_count()} CPUs)")
    truth = make_frames(out / "data", args.frames, shape, args.seed)
    reference = truth["frames"][truth["reference"]]["path"]
    frames_glob = str(out / "data" / "*.fits")
    results = out / "results"
    if results.exists():
        shutil.rmtree(results)
    if args.compare_one_job:
        found = compare_one_job(
            out, frames_glob, args.frames, reference, args.cores, extra, args.compare_one_job
        )
        (out / "compare_one_job.json").write_text(json.dumps(found, indent=2) + "\n")
        print(f"summary: {out / 'compare_one_job.json'}")
        return 0

    dry_log = out / "dry_run.log"
    dry_s = timed(
        snakemake_command(frames_glob, reference, str(results), args.cores, None, ["--dry-run"]), out, dry_log
    )
    requested = requested_mem_mb(dry_log)
    print(f"dry run of {args.frames} frames: {dry_s:.1f} s")

    contention = cpu_contention(out)
    print(
        f"CPU contention, one CPU alone against each of {contention['cpus']} at once: star detection on a "
        f"1500x1000 synthetic frame {contention['detect_alone_s']:.3f} s, "
        f"{contention['detect_together_s']:.3f} s "
        f"({contention['detect_together_s'] / contention['detect_alone_s']:.2f}x); m*T - R over 24-megapixel "
        f"frames {contention['stream_alone_s']:.3f} s, {contention['stream_together_s']:.3f} s "
        f"({contention['stream_together_s'] / contention['stream_alone_s']:.2f}x)"
    )
    # start-up cost of one job, before and after the run (the load of the machine may change)
    before = job_overhead()
    print(f"running the workflow (log: {out / 'snakemake.log'}) ...", flush=True)
    command = snakemake_command(frames_glob, reference, str(results), args.cores, None, extra)
    stolen = steal_s()
    wall, (user, system) = timed_cpu(command, out, out / "snakemake.log", timeout=args.timeout)
    stolen_after = steal_s()
    stolen = None if stolen is None or stolen_after is None else stolen_after - stolen
    if stolen is not None:
        print(
            f"CPU time the host gave to others during the run (steal): {stolen:.1f} s, "
            f"{100 * stolen / (wall * os.cpu_count()):.1f} % of the CPUs' time"
        )
    after = job_overhead()
    overhead = {key: (before[key] + after[key]) / 2 for key in before}
    summary = summarize(results, shape, args.frames, args.cores, wall, requested, overhead["job_imports"])
    jobs_cpu = sum(stage["cpu_s_mean"] * stage["jobs"] for stage in summary["stages"].values())
    summary.update(run_cpu_user_s=user, run_cpu_system_s=system)
    n = args.frames
    print(
        f"CPU of the whole run (Snakemake, every job, the set-wide rules): {(user + system) / n:.2f} "
        f"s/frame (user {user / n:.2f}, system {system / n:.2f}); the per-frame jobs' own cpu_time "
        f"{jobs_cpu / n:.2f} s/frame; {os.cpu_count()} CPUs"
    )
    jobs_per_frame = sum(stage["jobs"] for stage in summary["stages"].values()) / n
    per_frame = overhead["job_imports"] * jobs_per_frame
    print(
        f"\nper-job overhead: interpreter start {overhead['python_startup']:.2f} s; interpreter plus the "
        f"imports of a job script ({JOB_IMPORTS}) {overhead['job_imports']:.2f} s; "
        f"x {jobs_per_frame:g} jobs = {per_frame:.1f} s per frame "
        f"({100 * per_frame / summary['job_s_per_frame']:.0f} % of the jobs' time); "
        f"{before['job_imports']:.2f} s before the run, {after['job_imports']:.2f} s after; "
        f"the job server's imports, once per run: {overhead['server_imports']:.2f} s"
    )
    summary["reruns"] = rerun_times(out, command, wall, args.frames)
    summary.update(
        frames=args.frames,
        shape=list(shape),
        cores=args.cores,
        snakemake_args=extra,
        dry_run_s=dry_s,
        overhead_s=overhead,
        overhead_s_before=before,
        overhead_s_after=after,
        cpu_contention=contention,
        steal_s=stolen,
        load_average_end=os.getloadavg(),
    )

    if args.plan_frames:
        times = plan_time(out, truth, args.plan_frames, args.plan_repeats)
        jobs = planned_jobs(out / f"plan{args.plan_frames}" / "dry_run.log")
        print(
            f"dry run (planning) of {args.plan_frames} frames, {jobs} jobs: "
            + ", ".join(f"{t:.1f} s" for t in times)
            + f" (vs {dry_s:.1f} s for {args.frames} frames)"
        )
        summary["plan"] = {"frames": args.plan_frames, "jobs": jobs, "dry_run_s": times}
    print(f"load average at end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"summary: {out / 'summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
