"""The compact display of nsgflow run: nsgflow.progress and its Snakemake logger plugin."""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from astropy.io import fits
from snakemake_interface_logger_plugins.common import LogEvent

from nsgflow.cli import main
from nsgflow.progress import PLAN_EVENT, Progress, format_duration
from nsgflow.workflow import workflow_dir
from snakemake_logger_plugin_nsgflow import LogHandler, LogHandlerSettings

#: Two rules per frame and one for the whole set, as the plan of a run logs them.
PLAN = [
    *({"rule": rule, "wildcards": {"frame": frame}} for frame in ("a", "b") for rule in ("detect", "fit")),
    {"rule": "summarize", "wildcards": {}},
]


def run_jobs(progress: Progress, jobs: list[tuple[str, str | None]], seconds: float = 10.0) -> float:
    """Run ``jobs`` (rule, frame) one after the other, ``seconds`` each, from time 0; the time at the end."""
    now = 0.0
    for jobid, (rule, frame) in enumerate(jobs):
        progress.started(jobid, rule, {"frame": frame} if frame else {}, now)
        now += seconds
        progress.finished(jobid, now)
    return now


class TestProgress:
    def test_a_frame_is_done_when_its_last_job_is(self):
        progress = Progress()
        progress.plan(PLAN)
        run_jobs(progress, [("detect", "a"), ("detect", "b")])
        assert progress.line(20.0).startswith("0/2 frames")
        run_jobs(progress, [("fit", "a")])
        assert progress.done == {"a"}

    def test_time_left_after_the_first_frame(self):
        # 5 jobs of 10 s one at a time: after 3 (one frame done) 2 are left, 20 s
        progress = Progress()
        progress.plan(PLAN)
        now = run_jobs(progress, [("detect", "a"), ("fit", "a"), ("detect", "b")])
        assert progress.seconds_left(now) == pytest.approx(20.0)
        assert progress.line(now) == "1/2 frames · less than a minute left"

    def test_no_estimate_before_enough_has_run(self):
        progress = Progress()
        progress.plan([{"rule": "detect", "wildcards": {"frame": str(i)}} for i in range(10)] * 2)
        run_jobs(progress, [("detect", "0")])
        assert progress.seconds_left(10.0) is None
        assert progress.line(10.0) == "0/10 frames"

    def test_each_rule_is_estimated_from_its_own_jobs_and_the_jobs_that_ran_at_once(self):
        # two cores: detect took 60 s twice at once, fit 600 s; left: one fit of 600 s, one core busy
        progress = Progress()
        progress.plan(PLAN[:4])
        progress.started(0, "detect", {"frame": "a"}, 0.0)
        progress.started(1, "detect", {"frame": "b"}, 0.0)
        progress.finished(0, 60.0)
        progress.finished(1, 60.0)
        progress.started(2, "fit", {"frame": "a"}, 60.0)
        progress.finished(2, 660.0)
        assert progress.seconds_left(660.0) == pytest.approx(600.0 / (720.0 / 660.0))
        assert progress.line(660.0) == "1/2 frames · about 10 min left"

    def test_a_failed_frame_leaves_the_plan(self):
        progress = Progress()
        progress.plan(PLAN)
        run_jobs(progress, [("detect", "a")])
        progress.started(7, "detect", {"frame": "b"}, 10.0)
        assert progress.failed_job(7) == "b"
        run_jobs(progress, [("fit", "a"), ("summarize", None)])
        assert progress.todo.total() == 0
        assert progress.line(30.0, final=True) == "1/2 frames · 1 failed · took 30 s"

    def test_a_run_of_set_wide_jobs_counts_jobs(self):
        progress = Progress()
        progress.plan(PLAN[4:])
        assert progress.line(0.0) == "0/1 jobs"


@pytest.mark.parametrize(
    ("seconds", "text"), [(42.4, "42 s"), (60.0, "1 min"), (179.0, "3 min"), (7500.0, "2 h 05 min")]
)
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


def record(
    event: str | None, level: int = logging.INFO, msg: str = "", **fields: object
) -> logging.LogRecord:
    """A log record as Snakemake's logger makes it, ``fields`` in its ``extra``."""
    made = logging.LogRecord("snakemake.logging", level, "", 0, msg, None, None)
    made.__dict__.update(event=event, **fields)
    return made


def _read_all(controller: int) -> bytes:
    """Everything written to a pseudo-terminal whose other end is closed (a read may return part of it)."""
    chunks = []
    while True:
        try:
            chunk = os.read(controller, 10_000)
        except OSError:  # EIO: nothing more, the terminal's end is closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def test_on_a_terminal_the_line_is_redrawn_and_an_error_goes_above_it(tmp_path):
    (tmp_path / "b.log").write_text("INFO starting\nERROR b.fits: no stars above the threshold\n")
    controller, terminal = os.openpty()
    handler = LogHandler(SimpleNamespace(dryrun=False), LogHandlerSettings(fd=terminal))
    handler.emit(record(PLAN_EVENT, jobs=PLAN[:4]))
    handler.emit(record(LogEvent.JOB_INFO, jobid=1, rule_name="detect", wildcards={"frame": "b"}))
    handler.emit(
        record(
            LogEvent.JOB_ERROR,
            level=logging.ERROR,
            jobid=1,
            rule_name="detect",
            log=[str(tmp_path / "b.log")],
        )
    )
    handler.emit(record(None, level=logging.ERROR, msg="RuleException: shown in the log only"))
    handler.close()
    os.close(terminal)
    shown = _read_all(controller).decode()
    os.close(controller)
    assert shown.startswith(
        "\r\x1b[K0/2 frames\r\x1b[Knsgflow: FAILED b: detect: b.fits: no stars above the threshold"
    )
    assert "RuleException" not in shown
    assert re.search(r"\r\x1b\[K0/2 frames · 1 failed · took \d+ s\r\n$", shown), shown


def test_a_failed_cluster_job_of_several_rules_is_one_line_with_the_reason(tmp_path):
    (tmp_path / "fit.log").write_text("ERROR a.fits: too few stars\n")
    (tmp_path / "detect.log").write_text("INFO done\n")
    with open(tmp_path / "shown.txt", "w") as shown:
        handler = LogHandler(SimpleNamespace(dryrun=False), LogHandlerSettings(fd=shown.fileno()))
        handler.emit(record(PLAN_EVENT, jobs=PLAN[:4]))
        for jobid, rule in enumerate(("detect", "fit")):
            handler.emit(record(LogEvent.JOB_INFO, jobid=jobid, rule_name=rule, wildcards={"frame": "a"}))
        jobs = [
            {"jobid": jobid, "rule_name": rule, "log": [str(tmp_path / f"{rule}.log")]}
            for jobid, rule in enumerate(("detect", "fit"))
        ]
        handler.emit(record(LogEvent.GROUP_ERROR, level=logging.ERROR, job_error_info=jobs))
        handler.close()
    lines = (tmp_path / "shown.txt").read_text().splitlines()
    assert [line for line in lines if "FAILED" in line] == ["nsgflow: FAILED a: fit: a.fits: too few stars"]
    assert lines[-1].startswith("0/2 frames · 1 failed")


#: A workflow of nsgflow's shape without its science: two jobs per frame, the second writes the
#: normalized frame; frame "bad" fails with a reason in its log.
TINY_SNAKEFILE = """
from nsgflow import progress
from nsgflow.workflow import find_frames

FRAMES = find_frames(config["frames"], config["reference"], config["results"])
R = config["results"]

rule all:
    input: expand(f"{R}/normalized/{{frame}}_nsg.fits", frame=FRAMES)

rule detect:
    output: f"{R}/catalogs/{{frame}}.csv"
    log: f"{R}/logs/detect/{{frame}}.log"
    shell: "echo 'detected on {wildcards.frame}' >&2; touch {output}"

rule normalize:
    input: rules.detect.output
    output: f"{R}/normalized/{{frame}}_nsg.fits"
    log: f"{R}/logs/normalize/{{frame}}.log"
    shell: "if [ {wildcards.frame} = bad ]; then echo 'ERROR bad.fits: no stars' > {log}; exit 1; fi; "
           "touch {output}"

onstart:
    progress.log_plan(workflow.dag)
"""


@pytest.fixture
def tiny_workflow(tmp_path, monkeypatch) -> Path:
    """A folder with the tiny workflow (nsgflow's settings and schema) and frames a, b and bad."""
    folder = tmp_path / "workflow"
    shutil.copytree(workflow_dir() / "workflow" / "schemas", folder / "workflow" / "schemas")
    shutil.copy(workflow_dir() / "config.yaml", folder)
    (folder / "Snakefile").write_text(TINY_SNAKEFILE)
    monkeypatch.setenv("NSGFLOW_WORKFLOW", str(folder))
    monkeypatch.chdir(tmp_path)
    for name in ("a", "b", "bad"):
        fits.PrimaryHDU(np.ones((40, 60), np.float32)).writeto(tmp_path / f"{name}.fits")
    return tmp_path


def test_a_run_shows_frames_and_failures_and_logs_the_rest(tiny_workflow, capfd):
    status = main(["run", "*.fits", "--reference", "a.fits", "--cores", "1", "--keep-going"])
    shown = capfd.readouterr().err.splitlines()
    assert status == 1
    log = Path(re.search(r"^nsgflow: Snakemake's full log: (\S+) ", shown[1])[1])
    assert log.parent == Path("results", "logs")
    status_lines = shown[2:-2]
    assert status_lines[0] == "0/3 frames"
    assert status_lines.count("nsgflow: FAILED bad: normalize: bad.fits: no stars") == 1
    for line in status_lines:
        assert re.fullmatch(
            r"[0-2]/3 frames( · 1 failed)?( · less than a minute left)?|nsgflow: FAILED .*", line
        )
    assert re.fullmatch(r"2/3 frames · 1 failed · took \d+ s", shown[-2])
    assert shown[-1] == f"nsgflow: the run did not finish cleanly; the full log is {log}"
    assert len(shown) <= 12
    text = log.read_text()
    assert "detected on bad" in text and "Error in rule normalize" in text  # the jobs' and Snakemake's


def test_verbose_shows_snakemake_as_it_comes(tiny_workflow, capfd):
    assert main(["run", "[ab].fits", "--reference", "a.fits", "--cores", "1", "--verbose"]) == 0
    shown = capfd.readouterr().err
    assert "detected on b" in shown and "Finished job" in shown
    assert not list(Path("results", "logs").glob("run-*.log"))


def test_a_quiet_run_counts_no_frames_it_cannot_see_finish(tiny_workflow, capfd):
    """Snakemake's --quiet sends no job-finished events: no line may say 0 of the frames are done."""
    assert main(["run", "*.fits", "--reference", "a.fits", "--cores", "1", "--keep-going", "--quiet"]) == 1
    shown = capfd.readouterr().err.splitlines()[2:]
    assert shown[0] == "nsgflow: FAILED bad: normalize: bad.fits: no stars"
    assert re.fullmatch(r"1 failed · took \d+ s", shown[1]), shown
    assert shown[2].startswith("nsgflow: the run did not finish cleanly")


def test_a_run_with_nothing_to_do_says_so(tiny_workflow, capfd):
    arguments = ["run", "a.fits", "--reference", "a.fits", "--cores", "1"]
    assert main(arguments) == 0
    capfd.readouterr()
    assert main(arguments) == 0
    assert capfd.readouterr().err.splitlines()[2:] == [
        "Nothing to be done (all requested files are present and up to date)."
    ]
