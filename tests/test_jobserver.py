"""The local job server: stages run in its forks give what they give in their own process."""

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from nsgflow import jobserver
from nsgflow.io import read_json

FORKED = "forked by the job server"


@pytest.fixture
def server(tmp_path, monkeypatch):
    """A server for this test's process; its socket path in the environment, as a local run has it."""
    path = str(tmp_path / "socket")
    process = subprocess.Popen([sys.executable, "-m", "nsgflow.jobserver", path, str(os.getpid())])
    deadline = time.monotonic() + 60
    while not Path(path).exists():
        assert process.poll() is None and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    monkeypatch.setenv(jobserver.SOCKET_ENV, path)
    yield process
    process.terminate()
    process.wait(timeout=10)


def _records(tmp_path):
    record = tmp_path / "frame.json"
    record.write_text('{"frame": "f1", "inputs": {}, "outputs": {}}')
    return [str(record)]


def test_a_stage_runs_in_a_fork_of_the_server(server, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the fork works in the job's folder: a relative output lands here
    jobserver.run_step("stage.log", "nsgflow.provenance.write_index", _records(tmp_path), "index.json")
    assert list(read_json(tmp_path / "index.json")["frames"]) == ["f1"]
    assert FORKED in (tmp_path / "stage.log").read_text()


def test_a_failed_stage_fails_the_job(server, tmp_path):
    log = tmp_path / "stage.log"
    with pytest.raises(SystemExit) as exit_:
        jobserver.run_step(str(log), "nsgflow.provenance.write_index", [str(tmp_path / "none.json")], "x")
    assert exit_.value.code == 1
    text = log.read_text()
    assert "none.json" in text and FORKED in text


@pytest.mark.parametrize("why", ["no server", "other source", "not plain data"])
def test_the_job_runs_the_stage_itself_when_the_server_cannot(server, tmp_path, monkeypatch, why):
    if why == "no server":
        monkeypatch.setenv(jobserver.SOCKET_ENV, str(tmp_path / "nothing"))
    elif why == "other source":  # e.g. nsgflow edited while a server was running
        monkeypatch.setattr(jobserver, "fingerprint", lambda: "another version")
    records = _records(tmp_path)
    output = tmp_path / "index.json"
    if why == "not plain data":
        records = [Path(records[0])]  # a Path is not JSON: the server could not be sent it as it is
    jobserver.run_step(str(tmp_path / "stage.log"), "nsgflow.provenance.write_index", records, str(output))
    assert list(read_json(output)["frames"]) == ["f1"]
    assert FORKED not in (tmp_path / "stage.log").read_text()


def test_a_stopped_job_stops_its_fork(server, tmp_path):
    env = {**os.environ}
    code = "from nsgflow.jobserver import run_step; run_step('stage.log', 'time.sleep', 60)"
    job = subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path, env=env)
    deadline = time.monotonic() + 30
    while not psutil.Process(server.pid).children():
        assert time.monotonic() < deadline and job.poll() is None, "the stage did not start in a fork"
        time.sleep(0.05)
    (fork,) = psutil.Process(server.pid).children()
    job.kill()
    job.wait()
    fork.wait(timeout=10)  # raises if it is still running
    assert server.poll() is None  # the server goes on serving
