"""One run at a time per results folder, any number side by side into different ones (issue #25).

A second run into a results folder is refused and names the run that holds it,
whatever folder either started from; stopping ``nsgflow`` stops its Snakemake
and its jobs, and the next run completes the results.
"""

import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nsgflow import synthetic
from nsgflow.provenance import verify

SCENE = synthetic.SceneSpec(shape=(300, 450), n_stars=700, seed=31)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("locks") / "data"
    synthetic.make_frame_set(folder, SCENE, synthetic.demo_specs(3, seed=8), "frame_01")
    (folder / "truth.json").unlink()
    return folder


def command(data: Path, results: Path) -> list[str]:
    """``nsgflow run`` of the frames in ``data`` into ``results``, absolute paths, 1 core."""
    frames, reference = str(data / "*.fits"), str(data / "frame_01.fits")
    run = ["run", frames, "--reference", reference, "--results", str(results), "--cores", "1"]
    return [sys.executable, "-m", "nsgflow.cli", *run]


def start(data: Path, results: Path, cwd: Path) -> subprocess.Popen:
    """Start a run in its own session (a signal to it reaches nsgflow alone), with SIGINT ignored as a
    shell script's background command has it: stopping nsgflow must stop the run all the same."""
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        command(data, results),
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )


def run_output(run: subprocess.Popen, results: Path) -> str:
    """What a finished run printed, then Snakemake's full log of it: in full, for a failure's message."""
    logs = "".join(log.read_text(errors="replace") for log in sorted((results / "logs").glob("run-*.log")))
    return f"--- {results}: exit status {run.returncode}\n{run.stderr.read()}{logs}"


def wait_for_photometry(results: Path, run: subprocess.Popen) -> None:
    """Wait until the run has measured a frame (it is well under way)."""
    deadline = time.monotonic() + 300
    while not list((results / "photometry").glob("*.csv")) and run.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert run.poll() is None, run.stderr.read()


def test_a_second_run_into_the_same_results_is_refused_naming_the_first(data, tmp_path):
    results = tmp_path / "results"
    first = start(data, results, tmp_path / "a")
    wait_for_photometry(results, first)
    second = subprocess.run(
        command(data, results), cwd=data.parent, capture_output=True, text=True, timeout=120
    )
    assert second.returncode == 1
    assert second.stderr.strip().endswith(
        f"the nsgflow run of process {first.pid}, started in {tmp_path / 'a'} is writing into "
        f"{results}; wait for it to finish or give another --results"
    )
    assert first.wait(timeout=600) == 0, first.stderr.read()


def test_runs_into_different_results_go_side_by_side(data, tmp_path):
    # started together, the runs also end together: neither may remove what the other holds
    runs = [start(data, tmp_path / f"results{i}", tmp_path) for i in (1, 2)]
    statuses = [run.wait(timeout=600) for run in runs]
    outputs = [run_output(run, tmp_path / f"results{i}") for i, run in enumerate(runs, 1)]
    assert statuses == [0, 0], "\n".join(outputs)
    for i in (1, 2):
        assert verify(tmp_path / f"results{i}") == []


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_stopping_nsgflow_stops_its_run_and_the_next_run_completes_it(data, tmp_path, stop):
    results = tmp_path / "results"
    run = start(data, results, tmp_path)
    wait_for_photometry(results, run)
    os.kill(run.pid, stop)  # nsgflow alone, not its process group
    assert run.wait(timeout=120) != 0
    assert stop != signal.SIGINT or run.returncode == 130  # as after Ctrl-C
    # Snakemake held the results folder's lock too: it has ended, and nothing else holds the folder
    with open(results / ".nsgflow" / "lock") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    assert not (results / "provenance.json").exists()  # it was stopped mid-way
    again = subprocess.run(command(data, results), cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert verify(results) == []
