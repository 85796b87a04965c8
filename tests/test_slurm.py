"""The workflow on a real SLURM cluster gives the same normalized frames as a local run.

Runs ``tests/slurm/run_slurm_test.sh``: it installs Debian's slurm-wlm and munge if they are
missing, starts a one-node cluster of its own (munged, slurmctld, slurmd), runs three small demo
frames locally and through ``--executor slurm --profile profiles/slurm`` and compares the
normalized FITS data. Part of ``make test`` and so of CI. It needs about 160 CPU-seconds
(mostly Python starting: 3 times in each of 22 SLURM jobs): at least 1.5 minutes on 2 cores;
measured 3.5-4.5 minutes on the shared 2-core machine (load 6-9). Installing Slurm, the first
time, took 10 s of that.

It needs root (apt-get, daemons, /etc/slurm/slurm.conf) and either Slurm or apt-get. Where it
cannot run it is skipped, with the reason. ``NSGFLOW_SLURM_TEST`` decides:

- unset or ``auto``: run where it can, skip elsewhere;
- ``0``: skip (e.g. ``NSGFLOW_SLURM_TEST=0 make test`` for a quick run);
- ``1``: must run: fail, not skip, where it cannot (``.ci/run`` sets this).

``NSGFLOW_SLURM_TEST_TIMEOUT`` (seconds, default 1800) bounds the whole script. At the timeout
the script gets SIGTERM, which stops the workflow run (cancelling its Slurm jobs) and then the
daemons; anything it started that is still alive 60 s later, daemons and jobs included, is
killed: all of it carries a token in its environment that this test looks for.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent / "slurm" / "run_slurm_test.sh"
ETC_CONF = Path("/etc/slurm/slurm.conf")
#: first line of the slurm.conf the script writes
MARK = "# written by tests/slurm/run_slurm_test.sh"
TOKEN_VAR = "NSGFLOW_SLURM_TEST_TOKEN"


def _own_etc_conf() -> bool:
    """Whether /etc/slurm/slurm.conf is missing or a link the script made (and may replace)."""
    if not ETC_CONF.is_symlink():
        return not ETC_CONF.exists()
    try:
        with ETC_CONF.open() as f:
            return f.readline().startswith(MARK)
    except FileNotFoundError:  # dangling: left by a run that was killed
        return True


def why_not_here() -> str | None:
    """Why the SLURM test cannot run on this machine, or None if it can."""
    if sys.platform != "linux":
        return "the SLURM test needs Linux"
    if os.geteuid() != 0:
        return "the SLURM test needs root (it installs slurm-wlm and munge, starts munged, slurmctld, slurmd)"
    missing = [tool for tool in ("bash", "timeout", "flock", "setsid", "getent") if not shutil.which(tool)]
    if missing:
        return f"the SLURM test needs {', '.join(missing)}"
    installed = all(shutil.which(tool) for tool in ("slurmctld", "slurmd", "sbatch", "munged"))
    if not installed and not shutil.which("apt-get"):
        return "Slurm is not installed and there is no apt-get to install it"
    if not _own_etc_conf():
        return f"{ETC_CONF} exists: this machine has a Slurm of its own, which the test leaves alone"
    return None


def _processes_with(token: str) -> list[int]:
    """Pids of the processes whose environment carries the token: all that the script started."""
    needle = f"{TOKEN_VAR}={token}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                pids.append(int(entry.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return pids


def _kill_leftovers(token: str) -> list[int]:
    """SIGTERM, then SIGKILL, what the script started and left running; returns their pids."""
    pids = _processes_with(token)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _processes_with(token):
            time.sleep(0.2)
        if not _processes_with(token):
            break
    return pids


def _stop(proc: subprocess.Popen, grace: float = 60) -> None:
    """End the script: SIGTERM to its process group (its trap then cleans up), SIGKILL after grace."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def test_demo_set_on_slurm_same_as_local(tmp_path):
    setting = os.environ.get("NSGFLOW_SLURM_TEST", "auto").strip().lower() or "auto"
    if setting not in ("0", "1", "auto"):
        pytest.fail(f"NSGFLOW_SLURM_TEST must be 0, 1 or auto, not {setting!r}")
    if setting == "0":
        pytest.skip("NSGFLOW_SLURM_TEST=0")
    reason = why_not_here()
    if reason:
        if setting == "1":
            pytest.fail(f"NSGFLOW_SLURM_TEST=1, but {reason}")
        pytest.skip(reason)

    timeout = float(os.environ.get("NSGFLOW_SLURM_TEST_TIMEOUT", "1800"))
    token = uuid.uuid4().hex
    # the venv running the tests, so CI's fresh .venv is the one tested
    env = {**os.environ, "NSGFLOW_VENV": sys.prefix, TOKEN_VAR: token}
    log = tmp_path / "run_slurm_test.log"
    start = time.monotonic()
    status = None
    try:
        with log.open("w") as out:
            proc = subprocess.Popen(
                ["bash", str(SCRIPT)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # its own process group, to signal it and its steps at once
            )
            try:
                status = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass  # status None: reported below, with the log
            finally:
                if proc.poll() is None:  # timed out, or pytest was interrupted
                    _stop(proc)
    finally:
        leftovers = _kill_leftovers(token)
    seconds = time.monotonic() - start
    text = log.read_text(errors="replace")
    tail = "\n".join(text.splitlines()[-60:])
    if leftovers:
        tail += f"\n(test: killed what the script left running: pids {leftovers})"
    assert status is not None, f"not done in {timeout:.0f} s (NSGFLOW_SLURM_TEST_TIMEOUT); log {log}:\n{tail}"
    assert status == 0, f"run_slurm_test.sh exited {status} after {seconds:.0f} s; log {log}:\n{tail}"
    assert not leftovers, f"processes the script started were still running after it ended: {leftovers}"
    assert "data identical" in text, tail
