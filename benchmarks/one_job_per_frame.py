"""Snakemake script of benchmarks/one_job_per_frame.smk: the stage rules' scripts, in one job.

Each stage's own script (``scripts/<rule>.py``) runs with that stage's part of
this job's inputs, outputs, params and logs; the stage calls they make go to
the job server together, as one request, so the whole chain runs in one
process as one job per frame would (:func:`run_stages`).
"""

import runpy
import types
from importlib import import_module
from typing import Any

from nsgflow import jobserver
from nsgflow.pipeline import run_step


def run_stages(calls: list[tuple[str, str, list, dict]]) -> None:
    """Run each ``(log, "module.function", args, kwargs)`` stage call as its own job would, in turn."""
    for log, step, args, kwargs in calls:
        module, name = step.rsplit(".", 1)
        run_step(log, getattr(import_module(module), name), *args, **kwargs)


def _stage_view(job: Any, stage: str) -> types.SimpleNamespace:
    """The ``snakemake`` object of one stage's job: this job's items named ``{stage}__{name}``."""
    from snakemake.iocontainers import Namedlist

    def part(items: Any) -> Namedlist:
        prefix = f"{stage}__"
        return Namedlist(fromdict={k[len(prefix) :]: v for k, v in items.items() if k.startswith(prefix)})

    inputs = {name: getattr(job, kind)[key] for name, kind, key in job.params.inputs[stage]}
    return types.SimpleNamespace(
        input=Namedlist(fromdict=inputs),
        output=part(job.output),
        params=part(job.params),
        log=Namedlist([job.log[f"{stage}__log"]]),
        wildcards=job.wildcards,
    )


def main(job: Any) -> None:
    """Collect every stage script's call, then run them all in one request to the job server."""
    calls = []
    real = jobserver.run_step
    jobserver.run_step = lambda log, step, *args, **kwargs: calls.append((log, step, args, kwargs))
    try:
        for stage, script in zip(job.params.stages, job.params.scripts, strict=True):
            runpy.run_path(script, init_globals={"snakemake": _stage_view(job, stage)})
    finally:
        jobserver.run_step = real
    real(job.log.one_job, "one_job_per_frame.run_stages", calls)  # benchmarks/ is on PYTHONPATH


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (Snakemake's script global)
