import subprocess
import sys

from nsgflow.cli import main


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
