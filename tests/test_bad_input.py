"""Messy frame folders: the good frames finish, the bad ones are reported with a reason."""

import errno
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from xisf import XISF

from nsgflow import api, io, synthetic
from nsgflow.pipeline import run_detect, run_step
from nsgflow.provenance import verify

SCENE = synthetic.SceneSpec(shape=(300, 450), n_stars=700, seed=21)


def nsgflow(cwd: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "nsgflow.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def write(path: Path, data: np.ndarray, header: fits.Header | None = None) -> None:
    fits.PrimaryHDU(data, header=header).writeto(path)


@pytest.fixture(scope="module")
def messy(tmp_path_factory):
    """A read-only folder of good frames with awkward names and formats, and bad frames; run once."""
    root = tmp_path_factory.mktemp("messy")
    data = root / "data"
    specs = synthetic.demo_specs(3, seed=8)
    frames = {spec.name: synthetic.render_frame(SCENE, spec) for spec in specs}
    data.mkdir()
    write(data / "ref frame.fits", frames["frame_01"], fits.Header({"EXPTIME": 60.0}))  # no FOCALLEN etc.
    write(data / "m31.v2 é.fit", frames["frame_00"])
    u16 = fits.PrimaryHDU(np.clip(frames["frame_02"], 0, 65535).astype(np.float64))
    u16.scale("int16", bzero=32768)  # 16-bit unsigned, as cameras write
    u16.writeto(data / "frame_u16.fts")
    compressed = fits.CompImageHDU(frames["frame_02"] * 0.5, compression_type="RICE_1", quantize_level=64)
    fits.HDUList([fits.PrimaryHDU(), compressed]).writeto(data / "frame_c.fits.fz")
    XISF.write(
        str(data / "pixinsight.xisf"),
        frames["frame_02"][:, :, None],
        "test",
        image_metadata={
            "FITSKeywords": {"OBJECT": [{"value": "'M31'", "comment": ""}]},
            "XISFProperties": {
                "Instrument:Camera:Name": {"id": "Instrument:Camera:Name", "type": "String", "value": "cam"}
            },
        },
    )
    nan = frames["frame_00"].copy()
    nan[:, :30] = np.nan
    nan[5, 200] = np.inf
    write(data / "frame_nan.fits", nan)
    write(data / "shifted.fits", np.roll(frames["frame_00"], (30, -22), axis=(0, 1)))
    rng = np.random.default_rng(0)
    write(data / "few_stars.fits", (500 + rng.normal(0, 10, SCENE.shape)).astype(np.float32))
    write(data / "zeros.fits", np.zeros(SCENE.shape, np.float32))
    write(data / "constant.fits", np.full(SCENE.shape, 65535.0, np.float32))
    write(data / "truncated.fits", frames["frame_00"])
    full = (data / "truncated.fits").read_bytes()
    (data / "truncated.fits").write_bytes(full[: len(full) // 2])
    (data / "not_fits.fits").write_text("exposure notes, saved with the wrong name\n")
    (data / "z_link.fits").symlink_to("ref frame.fits")  # the same file twice: normalized once
    hashes = {p.name: p.read_bytes() for p in data.iterdir()}
    data.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP)
    for path in data.iterdir():
        path.chmod(stat.S_IRUSR | stat.S_IRGRP)
    out = nsgflow(
        root, "run", "data/*", "--reference", "data/ref frame.fits", "--results", "out", "--cores", "2"
    )
    summary = pd.read_csv(root / "out" / "summary.csv").set_index("frame")
    yield {"root": root, "out": out, "summary": summary, "hashes": hashes}
    data.chmod(0o755)


GOOD = ["ref frame", "m31.v2 é", "frame_u16", "frame_c", "frame_nan", "pixinsight"]
BAD = {
    "shifted": r"shifted by dx=-22.0, dy=30.0 px. Register the frames",
    "few_stars": r"usable star|too few|no stars",
    "zeros": r"no data",
    "constant": r"no background noise|no stars",
    "truncated": r"truncated.fits: cannot read the image data .*is the file complete",
    "not_fits": r"not_fits.fits: cannot read the image data .*is the file complete",
}


def test_good_frames_finish_and_the_run_reports_failure(messy):
    assert messy["out"].returncode != 0  # some frames failed
    summary = messy["summary"]
    assert summary.loc[GOOD, "status"].eq("ok").all(), summary.loc[GOOD, ["status", "reason"]]
    for name in GOOD:
        assert (messy["root"] / "out" / "normalized" / f"{name}_nsg.fits").is_file()
    assert "6 of 12 frames failed" in messy["out"].stderr


def test_an_unreadable_file_and_a_link_are_named_in_one_line_each(messy):
    lines = messy["out"].stderr.splitlines()
    assert (
        "nsgflow: data/z_link.fits is the same file as data/ref frame.fits: skipped, it is normalized once"
        in lines
    )
    unreadable = [
        line for line in lines if line.startswith("nsgflow: data/not_fits.fits: cannot read the header")
    ]
    assert len(unreadable) == 1 and unreadable[0].endswith("; this frame fails, the others are normalized")
    assert "z_link" not in messy["summary"].index


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_frame_is_flagged_with_a_reason(messy, name):
    row = messy["summary"].loc[name]
    assert row["status"] == "failed" and not row["accepted"]
    assert pd.Series([row["reason"]]).str.contains(BAD[name]).item(), row["reason"]
    assert f"FAILED {name}:" in messy["out"].stderr
    assert (
        "Traceback"
        not in (messy["root"] / "out" / "logs")
        .joinpath(row["reason"].split(":")[0], f"{name}.log")
        .read_text()
    )


def test_awkward_formats_are_read_right(messy):
    out = messy["root"] / "out" / "normalized"
    summary = messy["summary"]
    # the uint16 copy and the float original of the same frame normalize to the same scale
    assert summary.loc["frame_u16", "scale"] == pytest.approx(summary.loc["frame_c", "scale"] / 2, rel=0.01)
    assert fits.getdata(out / "frame_u16_nsg.fits").dtype == np.dtype(">f4")
    nan_out = fits.getdata(out / "frame_nan_nsg.fits")
    assert np.isfinite(nan_out).all() and (nan_out[:, :30] == 0).all() and nan_out[5, 200] == 0


def test_xisf_input_gets_an_xisf_output_too(messy):
    out = messy["root"] / "out" / "normalized"
    metadata: dict = {}
    xisf_data = XISF.read(str(out / "pixinsight_nsg.xisf"), image_metadata=metadata)[:, :, 0]
    np.testing.assert_array_equal(xisf_data, fits.getdata(out / "pixinsight_nsg.fits"))
    keywords = metadata["FITSKeywords"]
    assert keywords["OBJECT"][0]["value"] == "M31" and "NSGSCALE" in keywords and "WEIGHT" in keywords
    assert metadata["XISFProperties"]["Instrument:Camera:Name"]["value"] == "cam"
    assert messy["summary"].loc["pixinsight", "scale"] == pytest.approx(
        messy["summary"].loc["frame_u16", "scale"], rel=0.01
    )


def test_inputs_untouched_and_missing_headers_reported(messy):
    data = messy["root"] / "data"
    assert {p.name: p.read_bytes() for p in data.iterdir()} == messy["hashes"]
    log = (messy["root"] / "out" / "logs" / "detect_stars" / "ref frame.log").read_text()
    assert "header has no focallen, xpixsz, altitude" in log


def test_different_sizes_stop_before_any_job(tmp_path):
    write(tmp_path / "a.fits", np.ones((40, 60), np.float32))
    write(tmp_path / "b.fits", np.ones((40, 61), np.float32))
    out = nsgflow(tmp_path, "run", "*.fits", "--reference", "a.fits", "--results", "out")
    assert out.returncode == 1
    assert (
        "frames differ in size: 1 of shape (40, 60) (e.g. a.fits); 1 of shape (40, 61) (e.g. b.fits)"
        in out.stderr
    )
    assert not (tmp_path / "out").exists()


def test_colour_mixed_with_mono_is_refused(tmp_path):
    write(tmp_path / "mono.fits", np.ones((40, 60), np.float32))
    write(tmp_path / "rgb.fits", np.ones((3, 40, 60), np.float32))
    out = nsgflow(tmp_path, "run", "*.fits", "--reference", "mono.fits")
    assert out.returncode == 1 and "colour and mono frames are mixed" in out.stderr


def test_frames_of_two_filters_stop_before_any_job_unless_allowed(tmp_path):
    for name, band in [("a", "Ha"), ("b", "Ha"), ("c", "OIII")]:
        write(tmp_path / f"{name}.fits", np.ones((40, 60), np.float32), fits.Header({"FILTER": band}))
    out = nsgflow(tmp_path, "run", "*.fits", "--reference", "a.fits", "--results", "out")
    assert out.returncode == 1
    assert (
        "frames have different FILTER values: Ha (2 frames: a.fits, b.fits), OIII (1 frame: c.fits); "
        "normalize each filter separately, or set mixed_filters: true to allow it" in out.stderr
    )
    assert not (tmp_path / "out").exists()
    (tmp_path / "mixed.yaml").write_text("mixed_filters: true\n")
    allowed = nsgflow(tmp_path, "run", "*.fits", "--reference", "a.fits", "--configfile", "mixed.yaml", "-n")
    assert allowed.returncode == 0, allowed.stderr
    assert "normalize_frame" in allowed.stdout + allowed.stderr


def test_a_killed_run_completes_when_run_again(tmp_path):
    synthetic.make_frame_set(tmp_path / "data", SCENE, synthetic.demo_specs(4, seed=9), "frame_01")
    command = [
        sys.executable,
        "-m",
        "nsgflow.cli",
        "run",
        "data/*.fits",
        "--reference",
        "data/frame_01.fits",
        "--results",
        "out",
        "--cores",
        "2",
    ]
    proc = subprocess.Popen(
        command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 300
    while len(list((tmp_path / "out" / "photometry").glob("*.csv"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "out" / "provenance.json").exists()  # it really was stopped mid-way
    again = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert verify("out") == []
    finally:
        os.chdir(cwd)
    shutil.rmtree(tmp_path / "out")


def test_a_bad_frame_does_not_stop_the_automatic_reference_choice(tmp_path):
    specs = synthetic.demo_specs(3, seed=4)
    synthetic.make_frame_set(tmp_path / "data", SCENE, specs, "frame_01")
    write(tmp_path / "data" / "zeros.fits", np.zeros(SCENE.shape, np.float32))
    out = nsgflow(tmp_path, "run", "data/*.fits", "--results", "out", "--cores", "2")
    assert out.returncode == 1 and "FAILED zeros: measure_photometry:" in out.stderr
    assert (tmp_path / "out" / "reference.txt").read_text().strip() == "frame_01"  # CENTALT 70
    ranking = pd.read_csv(tmp_path / "out" / "reference.csv")
    assert ranking.set_index("frame").loc["zeros", "eligible"] == False  # noqa: E712
    summary = pd.read_csv(tmp_path / "out" / "summary.csv").set_index("frame")
    assert summary["status"].to_dict() == {
        "frame_00": "ok",
        "frame_01": "ok",
        "frame_02": "ok",
        "zeros": "failed",
    }


def test_reason_of_a_failed_frame_is_the_error_its_stage_logged(tmp_path):
    from nsgflow.summary import failure_reason

    for stage in ("catalogs/f.csv", "photometry/f.csv", "scale/f.json", "samples/f.csv"):
        (tmp_path / stage).parent.mkdir()
        (tmp_path / stage).write_text("id\n")
    log = tmp_path / "logs" / "fit_gradient" / "f.log"
    assert failure_reason(tmp_path, "f").startswith("fit_gradient did not run")
    log.parent.mkdir(parents=True)
    log.write_text("INFO f: 300 samples\n")
    assert failure_reason(tmp_path, "f").startswith("fit_gradient failed or was interrupted")
    log.write_text("INFO f: 300 samples\nERROR f.fits: 2 gradient sample(s); need at least 3\n")
    assert failure_reason(tmp_path, "f") == "fit_gradient: f.fits: 2 gradient sample(s); need at least 3"
    (tmp_path / "gradient").mkdir()
    (tmp_path / "gradient" / "f.fits").write_bytes(b"")
    assert failure_reason(tmp_path, "f").startswith("normalize_frame did not run")
    (tmp_path / "normalized").mkdir()
    (tmp_path / "normalized" / "f_nsg.fits").write_bytes(b"")
    assert failure_reason(tmp_path, "f") is None


def tiny_frames(data: Path) -> None:
    """Two small frames, a.fits and b.fits, and a link to a.fits: enough for a dry run."""
    data.mkdir()
    for name in ("a", "b"):
        write(data / f"{name}.fits", np.ones((40, 60), np.float32))
    (data / "z_link.fits").symlink_to("a.fits")


def test_results_inside_the_glob_and_a_link_are_not_more_frames(tmp_path):
    tiny_frames(tmp_path / "data")
    outputs = tmp_path / "data" / "out" / "normalized"  # the results folder, inside the frames' glob
    outputs.mkdir(parents=True)
    write(outputs / "a_nsg.fits", np.ones((40, 60), np.float32))
    out = nsgflow(
        tmp_path,
        "run",
        "data/**/*.fits",
        "--reference",
        "data/z_link.fits",
        "--results",
        "data/out",
        "--dry-run",
    )
    assert out.returncode == 0, out.stderr
    assert (
        "nsgflow: data/z_link.fits is the same file as data/a.fits: skipped, it is normalized once"
        in out.stderr
    )
    assert ": 2 frames, reference data/z_link.fits" in out.stderr
    assert re.search(r"^detect_stars\s+2$", out.stdout, re.M), out.stdout


def test_temporary_files_of_a_killed_run_are_removed(tmp_path):
    tiny_frames(tmp_path / "data")
    outputs = tmp_path / "out" / "normalized"
    outputs.mkdir(parents=True)
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    host = socket.gethostname()
    left = outputs / f".b_nsg.fits.nsgflow-{host}-{ended.stdout.strip()}-k2x9_q7a.tmp"  # of a killed job
    live = outputs / f".a_nsg.fits.nsgflow-{host}-{os.getpid()}-k2x9_q7a.tmp"  # being written
    other = outputs / ".notes.tmp"  # not nsgflow's
    for path in (left, live, other):
        path.write_bytes(b"")
    out = nsgflow(
        tmp_path, "run", "data/*.fits", "--reference", "data/a.fits", "--results", "out", "--dry-run"
    )
    assert out.returncode == 0, out.stderr
    assert "nsgflow: removed the temporary files of an interrupted run" in out.stderr
    assert not left.exists() and live.exists() and other.exists()


def test_a_full_disk_fails_that_frame_in_one_line_and_the_next_finishes(tmp_path, monkeypatch):
    frame = tmp_path / "f.fits"
    write(frame, synthetic.render_frame(SCENE, synthetic.demo_specs(1, seed=8)[0]))
    atomic_path, failed = io.atomic_path, []

    @contextmanager
    def disk_full_once(path):
        with atomic_path(path) as tmp:
            if not failed:
                failed.append(path)
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as write() raises it: no file named
            yield tmp

    monkeypatch.setattr(io, "atomic_path", disk_full_once)
    out = tmp_path / "out"
    (out / "logs").mkdir(parents=True)

    def detect(name: str) -> None:
        outputs = {
            "catalog": out / "catalogs" / f"{name}.csv",
            "stats": out / "catalogs" / f"{name}.json",
            "defects": out / "defects" / f"{name}.csv",
            "provenance": out / "provenance" / "detect_stars" / f"{name}.json",
        }
        settings = api.default_settings()["detect"]
        run_step(out / "logs" / f"{name}.log", run_detect, str(frame), outputs, settings)

    with pytest.raises(SystemExit) as stopped:
        detect("f")
    assert stopped.value.code == 1
    log = (out / "logs" / "f.log").read_text()
    assert [line for line in log.splitlines() if not line.startswith("INFO ")] == [
        f"ERROR no space left on {out / 'catalogs'} (No space left on device); free space there or give "
        "--results on another disk, then run the same command again"
    ]
    assert list((out / "catalogs").iterdir()) == []  # nor a temporary file
    detect("g")  # the next frame's job finishes
    assert (out / "catalogs" / "g.csv").is_file()


def test_api_takes_any_layout_and_byte_order(pair):
    plain = api.normalize(pair["tgt"], pair["ref"])
    fortran_target = np.asfortranarray(pair["tgt"])
    transposed_big_endian_reference = np.ascontiguousarray(pair["ref"].T).T.astype(">f8")
    other = api.normalize(fortran_target, transposed_big_endian_reference)
    assert other.scale == plain.scale
    np.testing.assert_array_equal(other.normalized, plain.normalized)


@pytest.mark.parametrize("kind", ["colour target", "colour reference", "narrower target"])
def test_api_names_both_shapes_before_any_work(pair, monkeypatch, kind):
    def detect_frame(*args, **kwargs):
        raise AssertionError("detection ran")

    monkeypatch.setattr(api, "detect_frame", detect_frame)
    target, reference = pair["tgt"], pair["ref"]
    if kind == "colour target":
        target = np.stack([target] * 3)
    elif kind == "colour reference":
        reference = np.stack([reference] * 3)
    else:
        target = target[:, :-1]
    message = (
        f"the target has shape {target.shape} but the reference {reference.shape}; give frames of one shape"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        api.normalize(target, reference)
