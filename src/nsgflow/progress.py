"""The compact display of ``nsgflow run``: frames done of those to do, failed frames, time left.

The Snakefile's ``onstart`` calls :func:`log_plan`, which logs the jobs the
run will run as one Snakemake log record (event :data:`PLAN_EVENT`). The
logger plugin :mod:`snakemake_logger_plugin_nsgflow` feeds that record and
Snakemake's job events to a :class:`Progress` and shows :meth:`Progress.line`.

A frame is one value of the ``frame`` wildcard: it is done when every job of
the plan with that wildcard has finished, and failed when one of them failed.
Counting jobs per frame, not a fixed number per frame, keeps the display right
whatever the rules are and whichever of them a rerun needs.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from statistics import fmean
from typing import Any

__all__ = [
    "NOTICE_EVENT",
    "PLAN_EVENT",
    "Progress",
    "format_duration",
    "job_key",
    "log_plan",
    "logged_error",
    "notify",
]

#: The ``event`` of the log record that carries the plan: ``jobs``, a list of ``{"rule", "wildcards"}``.
PLAN_EVENT = "nsgflow_plan"
#: The ``event`` of a line the workflow has for the user (:func:`notify`), such as a failed frame.
NOTICE_EVENT = "nsgflow_notice"

#: Fraction of the plan's jobs that must have finished before a time left is shown, if no frame is done.
ESTIMATE_AFTER = 0.2

#: A job as the plan and Snakemake's job events both name it: its rule and its wildcards.
JobKey = tuple[str, tuple[tuple[str, str], ...]]


def job_key(rule: str, wildcards: Mapping[str, Any]) -> JobKey:
    """The key of the job of rule ``rule`` with ``wildcards``; the same before and after a checkpoint."""
    return rule, tuple(sorted((name, str(value)) for name, value in wildcards.items()))


def log_plan(dag: Any) -> None:
    """Log the jobs this run will run, for the display; call it from the Snakefile's ``onstart``.

    Parameters
    ----------
    dag : snakemake.dag.DAG
        ``workflow.dag``. Jobs that run nothing (the target rule ``all``) are left out.
    """
    from snakemake.logging import logger

    jobs = [
        {"rule": job.rule.name, "wildcards": dict(job.wildcards_dict)}
        for job in dag.needrun_jobs()
        if not job.is_norun
    ]
    frames = {job["wildcards"]["frame"] for job in jobs if "frame" in job["wildcards"]}
    logger.info(
        f"nsgflow: {len(jobs)} jobs for {len(frames)} frames", extra={"event": PLAN_EVENT, "jobs": jobs}
    )


def notify(text: str) -> None:
    """Log a line for the user through Snakemake's logger: the display shows it, and so does ``--verbose``."""
    from snakemake.logging import logger

    logger.warning(text, extra={"event": NOTICE_EVENT})


def logged_error(log: Path) -> str | None:
    """The last ERROR line of a job's log, without its level; None if there is none or no log."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return None
    errors = [line[6:] for line in text.splitlines() if line.startswith("ERROR ")]
    return errors[-1] if errors else None


def format_duration(seconds: float) -> str:
    """A duration for people: ``42 s``, ``3 min``, ``2 h 05 min``."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = math.ceil(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def _time_left(seconds: float) -> str:
    """The estimate shown: coarse, so that a line per change stays a line per frame or minute."""
    return "less than a minute left" if seconds < 60 else f"about {format_duration(seconds)} left"


@dataclass
class Progress:
    """What a run has done of its plan, from Snakemake's job events; times are in seconds."""

    #: Job key -> planned jobs not finished yet.
    todo: Counter = field(default_factory=Counter)
    #: Frame -> its planned jobs not finished yet.
    frames: Counter = field(default_factory=Counter)
    #: Frames whose jobs have all finished, and frames of which a job failed.
    done: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)
    #: Snakemake's job id -> the job's key and start time, for every job started.
    started_jobs: dict[int, tuple[JobKey, float]] = field(default_factory=dict)
    #: Rule -> wall times of its finished jobs.
    durations: defaultdict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    planned: int = 0
    start: float | None = None

    def plan(self, jobs: Iterable[Mapping[str, Any]]) -> None:
        """Take the run's jobs: dicts of ``rule`` and ``wildcards``, as :func:`log_plan` logs them."""
        for job in jobs:
            self.todo[job_key(job["rule"], job["wildcards"])] += 1
            if "frame" in job["wildcards"]:
                self.frames[str(job["wildcards"]["frame"])] += 1
        self.planned = sum(self.todo.values())

    def started(self, jobid: int, rule: str, wildcards: Mapping[str, Any], now: float) -> None:
        """Job ``jobid`` of ``rule`` with ``wildcards`` started at ``now``."""
        self.started_jobs[jobid] = (job_key(rule, wildcards), now)
        if self.start is None:
            self.start = now

    def finished(self, jobid: int, now: float) -> None:
        """Job ``jobid`` finished at ``now``: its frame is done if it was that frame's last job."""
        if jobid not in self.started_jobs:
            return
        key, began = self.started_jobs.pop(jobid)
        self.durations[key[0]].append(now - began)
        if self.todo[key] == 0:  # not in the plan
            return
        self.todo[key] -= 1
        frame = dict(key[1]).get("frame")
        if frame is not None:
            self.frames[frame] -= 1
            if self.frames[frame] == 0 and frame not in self.failed:
                self.done.add(frame)

    def failed_job(self, jobid: int) -> str | None:
        """Job ``jobid`` failed: its frame (returned; None for a job of the whole set) fails with it.

        The frame's jobs that were still to run leave the plan: they will not run.
        """
        key, _ = self.started_jobs.pop(jobid, (None, 0.0))
        frame = dict(key[1]).get("frame") if key else None
        if frame is not None:
            self.failed.add(frame)
            for other in [k for k in self.todo if dict(k[1]).get("frame") == frame]:
                del self.todo[other]
        elif key is not None:
            self.todo[key] = max(0, self.todo[key] - 1)
        return frame

    def seconds_left(self, now: float) -> float | None:
        """Estimated time to the end, or None before there is enough to go on.

        The jobs still to run at their rule's mean time (the mean of every
        finished job for a rule none of whose jobs has finished), less what
        the running jobs have done, divided by the number of jobs that ran at
        once on average. Shown once a frame is done or :data:`ESTIMATE_AFTER`
        of the jobs have finished.
        """
        finished = [d for times in self.durations.values() for d in times]
        if not finished or self.start is None or now <= self.start:
            return None
        if not self.done and len(finished) < ESTIMATE_AFTER * self.planned:
            return None
        overall = fmean(finished)

        def mean(rule: str) -> float:
            return fmean(self.durations[rule]) if self.durations.get(rule) else overall

        running = [(key[0], now - began) for key, began in self.started_jobs.values()]
        work = sum(count * mean(key[0]) for key, count in self.todo.items())
        work -= sum(min(elapsed, mean(rule)) for rule, elapsed in running)
        parallel = max(1.0, (sum(finished) + sum(elapsed for _, elapsed in running)) / (now - self.start))
        return max(0.0, work / parallel)

    def line(self, now: float, *, final: bool = False, counted: bool = True) -> str:
        """The display: ``12/40 frames · 1 failed · about 3 min left``; at the end, the time taken.

        A plan without frames (only jobs of the whole set) counts jobs instead;
        without ``counted`` (no finished jobs were reported) nothing is counted.
        """
        if not counted:
            parts = []
        elif self.frames:
            parts = [f"{len(self.done)}/{len(self.frames)} frames"]
        else:
            parts = [f"{self.planned - sum(self.todo.values())}/{self.planned} jobs"]
        if self.failed:
            parts.append(f"{len(self.failed)} failed")
        if final:
            parts.append(f"took {format_duration(now - self.start)}" if self.start is not None else "")
        else:
            left = self.seconds_left(now)
            parts.append(_time_left(left) if left is not None else "")
        return " · ".join(part for part in parts if part)
