import copy
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from xisf import XISF

from nsgflow.errors import ConfigError
from nsgflow.workflow import (
    check_frames,
    find_frames,
    load_config,
    load_schema,
    validate_config,
    workflow_dir,
)

DEFAULTS = load_config(workflow_dir() / "config.yaml")


def test_shipped_config_is_valid_and_complete():
    config = copy.deepcopy(DEFAULTS) | {"reference": "x.fits"}
    filled = validate_config(copy.deepcopy(config))
    assert filled == config  # every default in the schema is written in config.yaml


#: What a setting's schema may say; anything else is a mistake, such as a description cut at a comma
#: by YAML's flow style ("{description: a, b}" makes b a key).
SETTING_KEYWORDS = {
    "type",
    "description",
    "default",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "oneOf",
    "const",
}


def test_every_setting_has_a_whole_description_and_nothing_else():
    schema = load_schema()
    for name, section in schema["properties"].items():
        for key, spec in section.get("properties", {}).items():
            assert set(spec) <= SETTING_KEYWORDS, f"{name}.{key}: {sorted(set(spec) - SETTING_KEYWORDS)}"
            assert isinstance(spec["description"], str) and spec["description"], f"{name}.{key}"


def test_defaults_fill_missing_sections():
    config = validate_config({"frames": "*.fits", "reference": "a.fits"})
    assert config["results"] == "results"
    assert config["gradient"] == DEFAULTS["gradient"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"gradient": {"smoothnes": 1.0}}, r"config key 'gradient'.*'smoothnes' was unexpected.*smoothness"),
        (
            {"gradient": {"smoothness": 9.0}},
            r"config key 'gradient.smoothness': 9.0 is not valid.*'maximum': 6.*'const': 'auto'",
        ),
        (
            {"samples": {"box_px": "big"}},
            r"config key 'samples.box_px': 'big' is not valid.*'minimum': 4.*'const': 'auto'",
        ),
        (
            {"samples": {"min_valid_fraction": "big"}},
            r"'samples.min_valid_fraction': 'big' is not of type 'number'",
        ),
        ({"colour": True}, r"config key '\(top level\)'.*'colour' was unexpected"),
    ],
)
def test_bad_values_name_key_value_and_range(change, message):
    config = {"frames": "*.fits", "reference": "a.fits", **change}
    with pytest.raises(ConfigError, match=message):
        validate_config(config)


def test_find_frames(tmp_path):
    for name in ("a.fits", "b.fit", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "night2").mkdir()
    (tmp_path / "night2" / "c.fits.fz").write_bytes(b"")
    frames = find_frames(str(tmp_path / "**" / "*"), str(tmp_path / "a.fits"))
    assert frames == {
        "a": str(tmp_path / "a.fits"),
        "b": str(tmp_path / "b.fit"),
        "c": str(tmp_path / "night2" / "c.fits.fz"),
    }


def test_same_name_in_two_folders_is_an_error(tmp_path):
    for night in ("n1", "n2"):
        (tmp_path / night).mkdir()
        (tmp_path / night / "m31_001.fits").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"two frames have the name 'm31_001'.*n1.*n2"):
        find_frames(str(tmp_path / "*" / "*.fits"), str(tmp_path / "n1" / "m31_001.fits"))


def test_reference_must_be_a_frame(tmp_path):
    (tmp_path / "a.fits").write_bytes(b"")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "r.fits").write_bytes(b"")
    with pytest.raises(ConfigError, match="is not among the 1 frames"):
        find_frames(str(tmp_path / "*.fits"), str(tmp_path / "other" / "r.fits"))
    with pytest.raises(ConfigError, match="does not exist"):
        find_frames(str(tmp_path / "*.fits"), str(Path(tmp_path) / "missing.fits"))
    with pytest.raises(ConfigError, match="no FITS frames match"):
        find_frames(str(tmp_path / "*.fts"), str(tmp_path / "a.fits"))


def _frame(path: Path, filter_name: str | None, dtype: str = "float32") -> str:
    header = fits.Header({"FILTER": filter_name} if filter_name is not None else {})
    fits.PrimaryHDU(np.ones((4, 6), dtype), header=header).writeto(path)
    return str(path)


def test_frames_of_different_filters_are_named_by_group(tmp_path):
    frames = {
        "a": _frame(tmp_path / "a.fits", "Ha"),
        "b": _frame(tmp_path / "b.fits", " Ha "),  # padding does not count
        "c": _frame(tmp_path / "c.fits", "OIII"),
        "d": _frame(tmp_path / "d.fits", "Ha", "int16"),  # read by astropy, not as a plain header
        "e": _frame(tmp_path / "e.fits", None),
        "f": str(tmp_path / "f.xisf"),
    }
    XISF.write(
        frames["f"],
        np.ones((4, 6, 1), np.float32),
        "test",
        image_metadata={"FITSKeywords": {"FILTER": [{"value": "'Ha'", "comment": ""}]}},
    )
    message = (
        "frames have different FILTER values: Ha (4 frames: a.fits, b.fits, d.fits, …), "
        "OIII (1 frame: c.fits), none (1 frame: e.fits); normalize each filter separately, "
        "or set mixed_filters: true to allow it"
    )
    with pytest.raises(ConfigError, match=re.escape(message)):
        check_frames(frames)
    check_frames(frames, mixed_filters=True)


def test_frames_of_one_filter_or_none_pass(tmp_path):
    check_frames({name: _frame(tmp_path / f"{name}.fits", "L") for name in "ab"})
    check_frames({name: _frame(tmp_path / f"n{name}.fits", None) for name in "ab"})
    with pytest.raises(ConfigError, match=re.escape("L (1 frame: x.fits), none (1 frame: na.fits)")):
        check_frames({"x": _frame(tmp_path / "x.fits", "L"), "na": str(tmp_path / "na.fits")})


def test_function_defaults_agree_with_config_yaml():
    """The science functions' keyword defaults are the documented defaults (box_px: the resolved size)."""
    import inspect

    import nsgflow

    functions = {
        "detect": nsgflow.detect_stars,
        "match": nsgflow.match_stars,
        "photometry": nsgflow.measure_photometry,
        "scale": nsgflow.fit_scale,
        "samples": nsgflow.sample_background,
        "gradient": nsgflow.fit_gradient,
    }
    for section, function in functions.items():
        defaults = {
            name: p.default
            for name, p in inspect.signature(function).parameters.items()
            if p.default is not inspect.Parameter.empty
        }
        shared = {key for key in DEFAULTS[section] if key in defaults} - {"box_px"}
        assert shared, section
        assert {k: defaults[k] for k in shared} == {k: DEFAULTS[section][k] for k in shared}, section


def test_the_workflow_passes_snakemakes_lint(frame_set, tmp_path):
    """Every rule declares the files it reads and writes (``snakemake --lint`` finds nothing)."""
    folder = Path(next(iter(frame_set["frames"].values()))["path"]).parent
    command = [
        sys.executable,
        "-c",
        "import sys\nfrom snakemake.cli import main\nsys.exit(main(sys.argv[1:]))",
        "--snakefile",
        str(workflow_dir() / "Snakefile"),
        "--lint",
        "--config",
        f"frames={folder}/*.fits",
        f"results={tmp_path / 'results'}",
    ]
    out = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Lints for" not in out.stdout + out.stderr
