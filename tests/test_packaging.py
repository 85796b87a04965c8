"""nsgflow installed from a wheel runs its workflow from any folder, with the files the wheel carries.

:func:`test_wheel_runs_the_demo_from_any_folder` builds the wheel from a copy
of the repository's files (``pip wheel``, which needs setuptools 77 from the
package index, as ``pip install .`` does), installs it with its dependencies
into a new virtual environment that sees nothing of this one (``pip install
--constraint requirements.lock``: the dependencies the wheel declares are
exactly what it gets), and from a temporary folder runs ``nsgflow demo`` on
two frames, ``nsgflow run --dry-run`` with the workflow's own profile, and
the Python API. It takes about 40 s on 2 cores, most of it installing the
dependencies (numpy, scipy, astropy, pandas, matplotlib, Snakemake) and
running the demo.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nsgflow
from nsgflow.cli import _workflow_profiles
from nsgflow.provenance import _git_commit
from nsgflow.workflow import WORKFLOW_ENV, WORKFLOW_FILES, workflow_dir

ROOT = Path(__file__).resolve().parents[1]
#: What building the package reads besides the workflow's files (the links' targets).
BUILD_FILES = ("pyproject.toml", "README.md", "LICENSE", "src")
#: Left out of the copy that the wheel is built from: made by installs, tests and runs.
NOT_COPIED = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "dist")

#: Prints where the installed package and its workflow are, and the default settings.
WHERE = """\
import json, sysconfig
import nsgflow
from nsgflow.workflow import workflow_dir
print(json.dumps({
    "package": nsgflow.__file__,
    "workflow": str(workflow_dir()),
    "site": sysconfig.get_path("purelib"),
    "settings": nsgflow.default_settings(),
}))
"""


def _links() -> dict[str, Path]:
    """The package's workflow entries and the repository files each one links to."""
    folder = ROOT / "src" / "nsgflow" / WORKFLOW_FILES
    return {entry.name: entry.resolve() for entry in sorted(folder.iterdir())}


def _copy_sources(to: Path) -> None:
    """Copy what the build reads, links kept as links, as a clone of the repository has it."""
    for name in (*BUILD_FILES, *(target.relative_to(ROOT) for target in _links().values())):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, to / name, symlinks=True, ignore=NOT_COPIED)
        else:
            shutil.copy2(source, to / name)


def _run(command: list, cwd: Path, env: dict, timeout: float = 600) -> subprocess.CompletedProcess:
    out = subprocess.run(
        [str(word) for word in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert out.returncode == 0, f"{command} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


def _listing(folder: Path) -> dict[str, int]:
    """Every file under ``folder`` but compiled Python, with its size."""
    return {
        str(path.relative_to(folder)): path.stat().st_size
        for path in folder.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }


def test_package_links_lead_to_the_repository_files():
    links = _links()
    assert set(links) == {"Snakefile", "config.yaml", "workflow", "scripts", "envs", "profiles"}
    for name, target in links.items():
        assert (ROOT / "src" / "nsgflow" / WORKFLOW_FILES / name).is_symlink()
        assert target == ROOT / name  # one copy of each file: the repository's own
    if not os.environ.get(WORKFLOW_ENV):
        assert workflow_dir() == ROOT  # the editable install runs the repository's files


def test_workflow_profiles_are_found_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = ROOT
    slurm = str(folder / "profiles" / "slurm")
    assert _workflow_profiles(["--profile", "profiles/slurm", "-n"], folder) == ["--profile", slurm, "-n"]
    assert _workflow_profiles(["--profile=profiles/slurm"], folder) == [f"--profile={slurm}"]
    (tmp_path / "profiles" / "slurm").mkdir(parents=True)  # the working directory's own comes first
    assert _workflow_profiles(["--profile", "profiles/slurm"], folder) == ["--profile", "profiles/slurm"]
    assert _workflow_profiles(["--profile", "mine", "stack"], folder) == ["--profile", "mine", "stack"]
    assert _workflow_profiles(["--profile"], folder) == ["--profile"]


def test_workflow_commit_only_of_a_repository_root(tmp_path):
    repo = tmp_path / "repo"
    (repo / "site-packages").mkdir(parents=True)
    (repo / "file").write_text("x")
    git = ["git", "-C", repo, "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    for args in (["init", "-q"], ["add", "file"], ["commit", "-q", "-m", "x"]):
        _run([*git, *args], tmp_path, dict(os.environ))
    assert len(_git_commit(repo)) == 40
    (repo / "file").write_text("y")
    assert _git_commit(repo).endswith("-dirty")
    # a package installed inside another project's repository is not that project's commit
    assert _git_commit(repo / "site-packages") is None
    assert _git_commit(tmp_path) is None


def test_wheel_runs_the_demo_from_any_folder(tmp_path):
    source, wheels, venv, elsewhere = (tmp_path / name for name in ("source", "wheels", "venv", "elsewhere"))
    source.mkdir()
    elsewhere.mkdir()
    _copy_sources(source)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", WORKFLOW_ENV)}
    pip = [sys.executable, "-m", "pip"]
    _run([*pip, "wheel", "--quiet", "--no-deps", "--wheel-dir", wheels, source], source, env)
    (wheel,) = wheels.glob("nsgflow-*.whl")
    _run([sys.executable, "-m", "venv", "--without-pip", venv], tmp_path, env)
    python = venv / "bin" / "python"
    _run(
        [*pip, "--python", python, "install", "--quiet", "--constraint", ROOT / "requirements.lock", wheel],
        tmp_path,
        env,
    )

    where = json.loads(_run([python, "-c", WHERE], elsewhere, env).stdout)
    site = Path(where["site"])
    assert site.is_relative_to(venv)
    assert Path(where["package"]).is_relative_to(site)  # not the repository's src/
    assert Path(where["workflow"]) == site / "nsgflow" / WORKFLOW_FILES
    # the config.yaml and schema the wheel carries
    assert where["settings"] == json.loads(json.dumps(nsgflow.default_settings()))
    installed = Path(where["workflow"])
    for name, target in _links().items():  # every file of the repository's workflow, copied
        copied = installed / name
        assert not copied.is_symlink()
        if target.is_file():
            assert copied.read_bytes() == target.read_bytes()
        else:
            assert _listing(copied) == _listing(target)
            assert all((copied / f).read_bytes() == (target / f).read_bytes() for f in _listing(target))
    before = _listing(installed)

    demo = _run(
        [venv / "bin" / "nsgflow", "demo", "--frames", "2", "--cores", "2", "--out", "d"], elsewhere, env
    )
    rows = [line.split() for line in demo.stdout.splitlines() if line.startswith("frame_0")]
    assert [row[0] for row in rows] == ["frame_00", "frame_01"]
    assert abs(float(rows[0][4])) < 1.0  # the scale found within 1 % of the truth
    for name in ("frame_00", "frame_01"):
        assert (elsewhere / "d" / "results" / "normalized" / f"{name}_nsg.fits").is_file()
    assert (elsewhere / "d" / "results" / "stack" / "stack.fits").is_file()
    assert (elsewhere / ".snakemake").is_dir()  # Snakemake's records in the working directory

    dry = _run(
        [
            venv / "bin" / "nsgflow",
            "run",
            "d/data/*.fits",
            "--reference",
            "d/data/frame_01.fits",
            "--results",
            "again",
            "--profile",
            "profiles/default",
            "--dry-run",
        ],
        elsewhere,
        env,
    )
    assert f"Using profiles {installed / 'profiles' / 'default'}" in dry.stdout + dry.stderr
    assert "This was a dry-run" in dry.stdout + dry.stderr
    assert _listing(installed) == before  # nothing written into the installed package
