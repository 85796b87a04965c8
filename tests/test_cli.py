import io
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from nsgflow import synthetic
from nsgflow.cli import main

#: A small field for the runs that go to the end: a few seconds per frame.
SCENE = synthetic.SceneSpec(shape=(300, 450), n_stars=700, seed=21)


def test_help_explains_the_commands():
    out = subprocess.run(
        [sys.executable, "-m", "nsgflow.cli", "run", "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0
    for text in ("--reference", "--results", "--dry-run", "--report", "stack", "T' = m*T - G"):
        assert text in out.stdout


def test_bad_setting_stops_before_any_job(frame_set, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("gradient:\n  smoothness: 42\n")
    ref = frame_set["frames"]["frame_01"]["path"]
    status = main(
        ["run", ref, "--reference", ref, "--results", str(tmp_path / "out"), "--configfile", str(bad)]
    )
    assert status == 1
    assert "config key 'gradient.smoothness': 42 is not valid" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_missing_reference_is_one_line(tmp_path, capsys):
    status = main(["run", str(tmp_path / "*.fits"), "--reference", str(tmp_path / "r.fits")])
    assert status == 1
    err = capsys.readouterr().err
    assert err.startswith("nsgflow: error: no FITS frames match") and "Traceback" not in err


def tiny_frames(folder: Path) -> None:
    """Two small frames, a.fits and b.fits: enough for every check made before the workflow starts."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("a", "b"):
        fits.PrimaryHDU(np.ones((40, 60), np.float32)).writeto(folder / f"{name}.fits")


def nsgflow_run(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "nsgflow.cli", "run", "*.fits", "--reference", "a.fits", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (
            ["--config", "gradient.smoothness=2"],
            2,
            "--config is Snakemake's option; give settings to nsgflow "
            "run as --set SECTION.KEY=VALUE (e.g. --set gradient.smoothness=2) or --configfile FILE",
        ),
        (
            ["--configfile", "missing.yaml"],
            2,
            "--configfile missing.yaml: no such file; give the path of a YAML settings file",
        ),
        (["--configfile", "broken.yaml"], 1, "--configfile broken.yaml: not valid YAML at line 2, column 1"),
        (
            ["--configfile", "list.yaml"],
            1,
            "--configfile list.yaml: holds a list, not settings by name; write settings as config.yaml does",
        ),
        (["--results", "taken"], 2, "--results taken is a file; give a folder"),
        (
            ["--cores", "0"],
            2,
            "argument --cores: '0' is not a number of cores; give a whole number of at least 1, or all",
        ),
        (["--cores", "two"], 2, "'two' is not a number of cores"),
        (
            ["--set", "gradient.smoothness=abc"],
            2,
            "--set gradient.smoothness=abc: gradient.smoothness must be a number from -6 to 6, or auto",
        ),
        (
            ["--set", "gradient.smooth=1"],
            2,
            "--set gradient.smooth=1: no setting 'gradient.smooth'; the keys "
            "of gradient are smoothness, clip_sigma, max_points, grid_px, degree",
        ),
        (["--set", "detect.max_stars=5"], 2, "detect.max_stars must be a whole number from 10 to 1000000"),
        (["--set", "diagnostics.plots=maybe"], 2, "diagnostics.plots must be true or false"),
        (["--set", "gradient=1"], 2, "gradient is a section; set one of its keys, e.g. gradient.smoothness"),
        (["--set", "smoothness"], 2, "--set smoothness: write SECTION.KEY=VALUE"),
    ],
)
def test_a_wrong_command_line_or_settings_file_is_one_line(tmp_path, args, status, message):
    tiny_frames(tmp_path)
    (tmp_path / "broken.yaml").write_text("gradient:\n\tsmoothness: 1\n")  # a tab
    (tmp_path / "list.yaml").write_text("- gradient\n- detect\n")
    (tmp_path / "taken").write_text("")
    out = nsgflow_run(tmp_path, *args)
    assert out.returncode == status, out.stderr
    assert out.stderr.count("\n") == 1 and message in out.stderr, out.stderr
    assert not (tmp_path / "results").exists()


def test_set_reaches_the_run_and_an_empty_settings_file_changes_nothing(tmp_path):
    synthetic.make_frame_set(tmp_path, SCENE, synthetic.demo_specs(2, seed=3), "frame_01")
    (tmp_path / "empty.yaml").write_text("")
    command = [sys.executable, "-m", "nsgflow.cli", "run", "*.fits", "--reference", "frame_01.fits"]
    settings = ["--set", "gradient.smoothness=1.5", "--set", "diagnostics.plots=false"]
    command += ["--configfile", "empty.yaml", *settings, "--set", "diagnostics.blink=false", "--cores", "2"]
    out = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    record = json.loads((tmp_path / "results" / "provenance" / "frame_00.json").read_text())
    assert record["settings"]["gradient"]["smoothness"] == 1.5
    assert record["settings"]["detect"]["threshold_sigma"] == 5.0  # config.yaml's
    assert fits.getheader(tmp_path / "results" / "gradient" / "frame_00.fits")["NSGSMOOT"] == 1.5
    assert not (tmp_path / "results" / "diagnostics").exists()


@pytest.mark.parametrize("later", [0.0, 0.5])  # 0: while Snakemake starts; 0.5: while nsgflow waits for it
def test_ctrl_c_taken_by_another_thread_reaches_snakemake(monkeypatch, later):
    # A Ctrl-C goes to any thread that does not block it (numpy starts threads): it must neither be
    # raised inside Popen, leaving Snakemake running unwatched, nor wait for Snakemake's end to be seen.
    from nsgflow.cli import _run_snakemake

    go, sent = threading.Event(), threading.Event()

    def ctrl_c() -> None:  # a Ctrl-C this thread takes: Python's C-level handler runs here
        go.wait()
        time.sleep(later)
        signal.pthread_kill(threading.get_ident(), signal.SIGINT)
        sent.set()

    real_popen = subprocess.Popen
    started = []

    def popen_then_ctrl_c(*args: object, **kwargs: object) -> subprocess.Popen:
        started.append(real_popen(*args, **kwargs))
        go.set()
        if not later:
            sent.wait()
        for _ in range(1000):  # bytecode, at which the main thread runs the signal's handler
            pass
        return started[0]

    helper = threading.Thread(target=ctrl_c)
    helper.start()
    monkeypatch.setattr(subprocess, "Popen", popen_then_ctrl_c)
    waits_for_sigint = (
        "import signal, sys, time\n"
        "try:\n"
        "    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})\n"
        "    time.sleep(120)\n"
        "except KeyboardInterrupt:\n"
        "    sys.exit(130)\n"
    )
    begun = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        _run_snakemake([sys.executable, "-c", waits_for_sigint])
    helper.join()
    assert time.monotonic() - begun < 60
    assert started[0].returncode == 130  # stopped by the Ctrl-C sent on, and waited for


def test_a_ctrl_c_while_snakemake_writes_its_log_stops_it_all_the_same():
    # Snakemake's text log handler ignores a KeyboardInterrupt raised while it writes: the run went on
    from snakemake.logging import ColorizingTextHandler

    from nsgflow.snakemake_main import stop

    class CtrlCWhileWriting(io.StringIO):
        def write(self, text: str) -> int:
            if not self.tell():  # once: a later Ctrl-C would reach pytest
                os.kill(os.getpid(), signal.SIGINT)
            return super().write(text)

    handler = ColorizingTextHandler(stream=CtrlCWhileWriting())
    record = logging.LogRecord("snakemake", logging.INFO, __file__, 1, "job finished", None, None)
    previous = signal.signal(signal.SIGINT, stop)
    try:
        with pytest.raises(KeyboardInterrupt):
            handler.emit(record)
            time.sleep(5)  # the Ctrl-C is taken again once the handler has written
        assert "job finished" in handler.stream.getvalue()
    finally:
        signal.signal(signal.SIGINT, previous)


def test_importing_the_command_loads_no_libraries():
    # Ctrl-C while numpy or pandas load would end in an import's traceback: the command loads them in main()
    code = "import sys, nsgflow.cli; print(sorted({'numpy', 'pandas', 'yaml', 'astropy'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "[]", out.stderr


def test_ctrl_c_during_the_checks_is_one_line(tmp_path, monkeypatch, capsys):
    import nsgflow.settings

    def interrupted(*args: object) -> None:
        raise KeyboardInterrupt

    tiny_frames(tmp_path)
    monkeypatch.setattr(nsgflow.settings, "run_settings", interrupted)
    assert main(["run", str(tmp_path / "*.fits"), "--reference", str(tmp_path / "a.fits")]) == 130
    assert capsys.readouterr().err == "nsgflow: interrupted; run the same command again to go on\n"


@pytest.mark.parametrize("ignored", [False, True])  # True: started as a script's `nsgflow run ... &` is
def test_ctrl_c_while_snakemake_starts_is_one_line(tmp_path, ignored):
    tiny_frames(tmp_path)
    command = [sys.executable, "-m", "nsgflow.cli", "run", "*.fits", "--reference", "a.fits", "--dry-run"]
    process = subprocess.Popen(
        command,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if ignored else None,
    )
    first = process.stderr.readline()  # printed just before Snakemake starts
    assert first.startswith("nsgflow "), first
    os.killpg(process.pid, signal.SIGINT)  # as Ctrl-C does: to the whole process group
    rest = process.stderr.read()
    assert process.wait(timeout=120) == 130
    assert "Traceback" not in rest and "Fatal Python error" not in rest, rest
    assert rest.endswith("nsgflow: interrupted; run the same command again to go on\n"), rest
