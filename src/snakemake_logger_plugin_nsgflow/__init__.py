"""Snakemake logger plugin ``nsgflow``: the compact progress display of ``nsgflow run``.

``snakemake --logger nsgflow --logger-nsgflow-fd 3`` writes to file
descriptor 3, for a normal run: the frames done of those to do, the failed
frames and the time left (:class:`nsgflow.progress.Progress`), in place on a
terminal and one line per change elsewhere, and one line per error: a failed
job's frame, rule and the error its log ends with, or Snakemake's own error.
In a dry run it shows nothing. With Snakemake's ``--quiet`` (quiet about
progress) Snakemake sends no job-finished events, so the display counts no
frames: it shows the errors and, at the end, the failed frames and the time
taken.

It leaves Snakemake's own output as it is: ``nsgflow run`` sends that, with
the jobs' output, to a log file (see :func:`nsgflow.cli.run_workflow`).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from snakemake.settings.enums import Quietness
from snakemake_interface_logger_plugins.base import LogHandlerBase
from snakemake_interface_logger_plugins.common import LogEvent
from snakemake_interface_logger_plugins.settings import LogHandlerSettingsBase

from nsgflow.progress import NOTICE_EVENT, PLAN_EVENT, Progress, logged_error

__all__ = ["LogHandler", "LogHandlerSettings", "failure_line", "logged_reason"]


@dataclass
class LogHandlerSettings(LogHandlerSettingsBase):
    """The plugin's one setting: where the display goes."""

    fd: int = field(
        default=2,
        metadata={
            "help": "File descriptor to write the display to (default 2, standard error).",
            "type": int,
        },
    )


def logged_reason(logs: list[str]) -> str | None:
    """The error a failed job's logs end with (the first log that has one); None if none has."""
    return next((error for log in logs if (error := logged_error(Path(log)))), None)


def failure_line(frame: str | None, rule: str, logs: list[str]) -> str:
    """One line for a failed job: ``nsgflow: FAILED <frame>: <rule>: <the error its log ends with>``."""
    reason = logged_reason(logs) or (f"failed; see {logs[0]}" if logs else "failed")
    return f"nsgflow: FAILED {frame + ': ' if frame else ''}{rule}: {reason}"


class LogHandler(LogHandlerBase):
    """Feeds Snakemake's job events to a :class:`~nsgflow.progress.Progress` and draws its line."""

    def __post_init__(self) -> None:
        fd = self.settings.fd if isinstance(self.settings, LogHandlerSettings) else 2
        self.stream = open(fd, "w", buffering=1, closefd=False)
        self.tty = os.isatty(fd)
        self.progress = Progress()
        self.shown = ""  # the last status line written
        self.errors: set[str] = set()  # error lines written, each once
        self.last_info = ""  # Snakemake's last message, shown at the end of a run that ran no job
        # quiet about progress, Snakemake logs no finished jobs: the frames done cannot be counted
        self.counting = Quietness.PROGRESS not in (getattr(self.common_settings, "quiet", None) or ())

    # Snakemake's own stream handler stays (nsgflow run sends it to the log file); this one writes
    # to its own file descriptor and formats and filters its records itself.
    writes_to_stream = False
    writes_to_file = False
    has_filter = True
    has_formatter = True
    needs_rulegraph = False

    def emit(self, record: logging.LogRecord) -> None:
        """Update the display with one of Snakemake's log records."""
        if self.common_settings.dryrun:
            return
        event = getattr(record, "event", None)
        fields: dict[str, Any] = record.__dict__
        if event == PLAN_EVENT:
            self.progress.plan(fields["jobs"])
        elif event == LogEvent.JOB_INFO:
            self.progress.started(fields["jobid"], fields["rule_name"], fields["wildcards"], record.created)
        elif event == LogEvent.JOB_FINISHED:
            self.progress.finished(fields["job_id"], record.created)
        elif event == LogEvent.JOB_ERROR:
            self._job_failed(fields["jobid"], fields["rule_name"], fields["log"])
        elif event == LogEvent.GROUP_ERROR:  # a cluster job of several rules: the one with a reason first
            for job in sorted(fields["job_error_info"], key=lambda job: logged_reason(job["log"]) is None):
                self._job_failed(job["jobid"], job["rule_name"], job["log"])
        elif event == NOTICE_EVENT or (record.levelno >= logging.ERROR and not self.progress.planned):
            # Snakemake's own errors before the jobs start (once they run, their errors are the jobs')
            self._error(record.getMessage().strip())
        elif event is None and record.levelno == logging.INFO and record.msg:
            self.last_info = record.getMessage().strip()
        if self.progress.planned and self.counting:
            self._status(self.progress.line(record.created))

    def _job_failed(self, jobid: int, rule: str, logs: list[str]) -> None:
        """One line for a failed job, unless its frame has failed already."""
        failed = set(self.progress.failed)
        frame = self.progress.failed_job(jobid)
        if frame is None or frame not in failed:
            self._error(failure_line(frame, rule, logs))

    def _error(self, text: str) -> None:
        """Write an error line, once, above the status line."""
        if text in self.errors:
            return
        self.errors.add(text)
        self.stream.write(("\r\033[K" if self.tty and self.shown else "") + text + "\n")
        if self.tty and self.shown:
            self.stream.write(self.shown)

    def _status(self, line: str) -> None:
        """Write the status line if it changed: over the last one on a terminal, on a new line elsewhere."""
        if line == self.shown:
            return
        self.shown = line
        self.stream.write(f"\r\033[K{line}" if self.tty else f"{line}\n")

    def close(self) -> None:
        """End the display with the final line: frames done, failed and the time taken."""
        if self.progress.planned:
            line = self.progress.line(time.time(), final=True, counted=self.counting)
            self.stream.write(f"\r\033[K{line}\n" if self.tty else f"{line}\n")
        elif self.last_info and not self.errors and not self.common_settings.dryrun:
            self.stream.write(f"{self.last_info}\n")  # e.g. nothing to be done, or the report written
        self.stream.close()
        super().close()
