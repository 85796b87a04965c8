"""Reruns scoped to what changed, new nights, determinism and provenance (through Snakemake)."""

import os
import re
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
from astropy.io import fits

from nsgflow import synthetic
from nsgflow.provenance import verify
from nsgflow.workflow import workflow_dir

SCENE = synthetic.SceneSpec(shape=(300, 450), n_stars=700, seed=11)
SPECS = synthetic.demo_specs(3, seed=5)
FRAMES = "data/**/*.fits"
REFERENCE = "data/night1/frame_01.fits"
#: rules that summarize the whole set: they rerun whenever any frame's outputs do
SET_WIDE = {"index_provenance": 1, "summarize": 1, "blink": 1, "all": 1}
#: what the set-wide rules write
SET_WIDE_FILES = {
    "provenance.json",
    "summary.csv",
    "summary.png",
    "weights.csv",
    "accepted.txt",
    "blink/index.html",
    "blink/inputs.gif",
    "blink/normalized.gif",
}
#: every per-frame rule and the files it writes ({} is the frame's name)
RULE_FILES = {
    "detect_stars": ["catalogs/{}.csv", "catalogs/{}.json", "defects/{}.csv"],
    "measure_photometry": ["photometry/{}.csv", "photometry/{}.json"],
    "fit_scale": ["scale/{}.json", "diagnostics/{}_photometry.png"],
    "sample_gradient": ["samples/{}.csv", "samples/{}.json", "diagnostics/{}_samples.png"],
    "fit_gradient": ["gradient/{}.fits", "gradient/{}_curvature.fits", "diagnostics/{}_gradient.png"],
    "normalize_frame": ["normalized/{}_nsg.fits", "provenance/{}.json", "blink/frames/{}.fits"],
}
# each stage's job records what it wrote
for _rule in list(RULE_FILES)[:-1]:
    RULE_FILES[_rule].append(f"provenance/{_rule}/{{}}.json")
ALL_RULES = list(RULE_FILES)
#: the rules from each stage on: what a change to that stage reruns
FROM_GRADIENT = ["fit_gradient", "normalize_frame"]
FROM_SAMPLES = ["sample_gradient", *FROM_GRADIENT]
FROM_SCALE = ["fit_scale", *FROM_SAMPLES]
FROM_PHOTOMETRY = ["measure_photometry", *FROM_SCALE]


@contextmanager
def working_directory(path: Path):
    cwd = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(cwd)


def snakemake(workdir: Path, *args: str, reference: str = REFERENCE, prelude: str = "") -> str:
    """Run Snakemake in ``workdir`` with relative paths; return its output. ``prelude`` runs first."""
    code = f"{prelude}\nimport sys\nfrom snakemake.cli import main\nsys.exit(main(sys.argv[1:]))"
    command = [
        sys.executable,
        "-c",
        code,
        "--snakefile",
        str(workflow_dir() / "Snakefile"),
        "--cores",
        "2",
        "--config",
        f"frames={FRAMES}",
        f"reference={reference}",
        "results=results",
        *args,
    ]
    out = subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout + out.stderr


def planned(workdir: Path, *args: str, **kwargs: str) -> dict[str, int]:
    """Jobs a dry run would execute, per rule (empty when nothing is to be done)."""
    text = snakemake(workdir, "--dry-run", *args, **kwargs)
    if "Nothing to be done" in text:
        return {}
    table = text.split("Job stats:")[1].split("total")[0]
    return {rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)\s*$", table, re.M) if rule != "job"}


def files(results: Path) -> dict[str, tuple[bytes, int]]:
    """Contents and mtime of every output, less timings and logs."""
    return {
        str(p.relative_to(results)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(results.rglob("*"))
        if p.is_file() and not {"benchmarks", "logs"} & set(p.relative_to(results).parts)
    }


def make_workdir(path: Path) -> Path:
    synthetic.make_frame_set(path / "data" / "night1", SCENE, SPECS, "frame_01")
    (path / "data" / "night1" / "truth.json").unlink()
    snakemake(path)
    return path


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return make_workdir(tmp_path_factory.mktemp("base"))


@pytest.fixture
def copy(base, tmp_path) -> Path:
    """A copy of the finished run (data, results, Snakemake metadata) with mtimes kept."""
    target = tmp_path / "copy"
    shutil.copytree(base, target, symlinks=True)
    return target


def _per_frame(rules, n=3):
    """The given per-frame rules, plus the set-wide rules."""
    return {rule: n for rule in rules} | SET_WIDE


def rule_files(rules: list[str], frames: list[str]) -> set[str]:
    """The files the given per-frame rules write for the given frames."""
    return {pattern.format(frame) for rule in rules for pattern in RULE_FILES[rule] for frame in frames}


def settings_files(stage: str) -> set[str]:
    """The settings files a change to ``stage``'s settings rewrites: its own, and the normalized frame's."""
    return {f"settings/{stage}.json", "settings/normalize.json"}


@pytest.mark.parametrize(
    ("settings", "stage", "rules"),
    [
        ("{}", None, []),
        ("gradient: {smoothness: -1.0}", "gradient", FROM_GRADIENT),
        ("samples: {box_px: 48}", "samples", FROM_SAMPLES),
        ("scale: {clip_sigma: 5.0}", "scale", FROM_SCALE),
        ("photometry: {min_snr: 12.0}", "photometry", FROM_PHOTOMETRY),
        ("match: {tolerance_px: 2.5}", "photometry", FROM_PHOTOMETRY),
        ("detect: {threshold_sigma: 6.0}", "detect", ALL_RULES),
    ],
)
def test_a_changed_setting_rewrites_only_what_uses_it(copy, tmp_path, settings, stage, rules):
    config = tmp_path / "change.yaml"
    config.write_text(settings + "\n")
    before = files(copy / "results")
    assert planned(copy, "--configfile", str(config)) == (_per_frame(rules) if rules else {})
    snakemake(copy, "--configfile", str(config))
    after = files(copy / "results")
    assert after.keys() == before.keys()
    rewritten = {name for name in before if before[name][1] != after[name][1]}
    frames = ["frame_00", "frame_01", "frame_02"]
    expected = rule_files(rules, frames) | SET_WIDE_FILES | settings_files(stage) if rules else set()
    assert rewritten == expected


def test_a_setting_changed_in_a_run_from_another_folder_is_applied(copy, tmp_path):
    # issue #25: Snakemake keeps each job's params in .snakemake of the folder a run starts from; the
    # settings kept in the results folder make a run from anywhere see the change
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    results = copy / "results"
    before = files(results)
    run = [sys.executable, "-m", "nsgflow.cli", "run", str(copy / FRAMES), "--results", str(results)]
    run += ["--reference", str(copy / REFERENCE), "--cores", "2", "--set", "gradient.smoothness=-1.0"]
    out = subprocess.run(run, cwd=elsewhere, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    after = files(results)
    rewritten = {name for name in before if before[name][1] != after[name][1]}
    frames = ["frame_00", "frame_01", "frame_02"]
    assert rewritten == rule_files(FROM_GRADIENT, frames) | SET_WIDE_FILES | settings_files("gradient")
    for name in frames:
        assert fits.getheader(results / "gradient" / f"{name}.fits")["NSGSMOOT"] == -1.0
    with working_directory(copy):  # the first run's records name files relative to it
        assert verify("results") == []
    # and back, from the first folder: Snakemake's record there is of the first settings
    assert planned(copy) == _per_frame(FROM_GRADIENT)


@pytest.mark.parametrize(
    ("rule", "rules"),
    [
        ("detect_stars", ALL_RULES),
        ("measure_photometry", FROM_PHOTOMETRY),
        ("fit_scale", FROM_SCALE),
        ("sample_gradient", FROM_SAMPLES),
        ("fit_gradient", FROM_GRADIENT),
        ("normalize_frame", ["normalize_frame"]),
    ],
)
def test_a_deleted_file_is_made_again_with_what_follows_it(copy, rule, rules):
    # issue #25: each stage's files are inputs of the next, so the same command again rebuilds them
    for pattern in RULE_FILES[rule]:
        (copy / "results" / pattern.format("frame_02")).unlink()
        assert planned(copy) == {name: 1 for name in rules} | SET_WIDE


def test_a_new_reference_keeps_the_catalogs(copy):
    assert planned(copy, reference="data/night1/frame_02.fits") == _per_frame(FROM_PHOTOMETRY)


def test_an_algorithm_version_bump_reruns_that_stage_on(copy):
    bump = "import nsgflow; nsgflow.ALGORITHM_VERSIONS['samples'] += 1"
    assert planned(copy, prelude=bump) == _per_frame(FROM_SAMPLES)


def test_a_new_night_adds_only_its_frames(copy):
    before = files(copy / "results")
    night2 = copy / "data" / "night2"
    synthetic.make_frame_set(
        night2,
        SCENE,
        [synthetic.FrameSpec(name="n2_001", scale=1.2, fwhm_px=3.3, sky_adu=700, seed=99)],
        "n2_001",
    )
    (night2 / "truth.json").unlink()
    assert planned(copy) == _per_frame(ALL_RULES, n=1)
    snakemake(copy)
    after = files(copy / "results")
    changed = {k for k in before if before[k] != after[k]}
    # only the set-wide files change (and the record of which frames the set has); every per-frame file
    # is untouched
    assert changed == SET_WIDE_FILES | {"settings/set.json"}
    assert {k for k in after if k not in before} == rule_files(ALL_RULES, ["n2_001"])


def test_same_file_name_in_two_nights_is_refused(copy):
    (copy / "data" / "night2").mkdir()
    shutil.copy(copy / "data" / "night1" / "frame_00.fits", copy / "data" / "night2" / "frame_00.fits")
    out = subprocess.run(
        [sys.executable, "-m", "nsgflow.cli", "run", FRAMES, "--reference", REFERENCE],
        cwd=copy,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 1
    assert (
        "two frames have the name 'frame_00': data/night1/frame_00.fits and data/night2/frame_00.fits"
        in out.stderr
    )


def test_removing_a_frame_leaves_the_rest_valid(copy):
    (copy / "data" / "night1" / "frame_02.fits").unlink()
    assert planned(copy) == SET_WIDE
    snakemake(copy)
    with working_directory(copy):
        assert verify("results") == []


def test_two_runs_from_scratch_are_bit_identical(base, tmp_path):
    again = make_workdir(tmp_path / "again")
    first, second = files(base / "results"), files(again / "results")
    assert first.keys() == second.keys()
    different = [k for k in first if first[k][0] != second[k][0]]
    assert different == []


def test_jobs_run_in_the_job_server_with_the_same_results_as_on_their_own(base, tmp_path):
    logs = sorted((base / "results" / "logs").rglob("*.log"))
    assert logs and all("forked by the job server" in log.read_text() for log in logs)
    alone = tmp_path / "alone"
    synthetic.make_frame_set(alone / "data" / "night1", SCENE, SPECS, "frame_01")
    (alone / "data" / "night1" / "truth.json").unlink()
    snakemake(alone, prelude="import os; os.environ['NSGFLOW_JOBSERVER'] = 'off'")
    assert not any("job server" in log.read_text() for log in (alone / "results" / "logs").rglob("*.log"))
    first, second = files(base / "results"), files(alone / "results")
    assert first.keys() == second.keys()
    assert [k for k in first if first[k][0] != second[k][0]] == []


def test_verify_catches_modified_input_and_output(copy):
    with working_directory(copy):
        assert verify("results") == []
        with open("data/night1/frame_00.fits", "r+b") as handle:
            handle.seek(10_000)
            handle.write(b"\x01\x02")
        scale = Path("results/scale/frame_02.json")
        scale.write_text(scale.read_text().replace('"scale": 1', '"scale": 2', 1))
        problems = verify("results")
    assert any("frame_00: input frame data/night1/frame_00.fits changed" in p for p in problems)
    assert any("frame_02: output scale results/scale/frame_02.json changed" in p for p in problems)
    out = subprocess.run(
        [sys.executable, "-m", "nsgflow.cli", "verify", "results"], cwd=copy, capture_output=True, text=True
    )
    assert out.returncode == 1 and "CHANGED" in out.stdout


def test_verify_names_a_table_edited_by_hand_even_after_a_rerun(copy):
    # issue #25: the later stages are made again from the edited table, and the frame's record hashes it
    catalog = copy / "results" / "catalogs" / "frame_02.csv"
    lines = catalog.read_text().splitlines(keepends=True)
    catalog.write_text("".join(lines[: len(lines) // 2]))
    assert planned(copy) == _per_frame(FROM_PHOTOMETRY, n=1)
    snakemake(copy)
    with working_directory(copy):
        assert verify("results") == [
            "frame_02: catalog results/catalogs/frame_02.csv changed since detect_stars wrote it"
        ]


def test_html_report(copy):
    snakemake(copy, "--report", "report.html")
    html = (copy / "report.html").read_text()
    assert "normalize_frame" in html and "NormalizeScaleGradient" in html


def test_every_detection_runs_before_the_normalize_jobs(copy):
    # the normalize jobs are the longer ones: run last, side by side, they end together, where
    # interleaved with the detections one of them was often left running alone at the end
    text = snakemake(copy, "--forceall", "--cores", "1")
    started = re.findall(r"^(?:local)?rule (detect_stars|normalize_frame):$", text, re.M)
    assert sorted(started) == ["detect_stars"] * 3 + ["normalize_frame"] * 3
    assert started == sorted(started)
