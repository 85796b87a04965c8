"""Snakemake's scheduler runs when jobs start or end, not a round a second for each finished job."""

import subprocess
import sys

JOBS = 6

SNAKEFILE = """
from nsgflow.workflow import unthrottle_scheduler

onstart:
    unthrottle_scheduler(workflow)

rule all:
    input: expand("out/{i}.txt", i=range(JOBS))

rule job:
    output: "out/{i}.txt"
    shell: "sleep 0.7; touch {output}"
"""


def _rounds(tmp_path, *options: str) -> int:
    """Scheduler rounds (Snakemake's debug line 'Ready jobs') of JOBS jobs run one at a time."""
    snakefile = tmp_path / "Snakefile"
    snakefile.write_text(SNAKEFILE.replace("JOBS", str(JOBS)))
    command = [sys.executable, "-m", "snakemake", "-s", str(snakefile), "-d", str(tmp_path), "--cores", "1"]
    done = subprocess.run([*command, "--verbose", *options], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return (done.stdout + done.stderr).count("Ready jobs")


def test_default_rate_limit_is_turned_off(tmp_path):
    # a round when the run starts and after each job (7); with the default limiter each finished
    # job also starts a chain of rounds a second apart while others wait (15 in all)
    assert _rounds(tmp_path) <= JOBS + 2


def test_a_rate_limit_set_by_hand_is_kept(tmp_path):
    # the limiter's chains of rounds, as with the default before
    assert _rounds(tmp_path, "--max-jobs-per-timespan", "50/1s") > JOBS + 2
