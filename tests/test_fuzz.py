"""Random small frames through every stage: valid results or a FrameError, and a share normalized."""

import os

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from nsgflow.detect import detect_stars
from nsgflow.errors import FrameError
from nsgflow.gradient import background_noise, sample_background, star_mask, star_radius
from nsgflow.io import clean_frame
from nsgflow.match import match_stars
from nsgflow.normalized import normalize_frame
from nsgflow.photometry import frame_hlr, measure_photometry
from nsgflow.scale import fit_scale
from nsgflow.spline import fit_gradient

from .conftest import moffat_star


@st.composite
def frames(draw):
    ny, nx = draw(st.integers(24, 120)), draw(st.integers(24, 120))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    sky, noise = draw(st.floats(0, 2000)), draw(st.floats(0, 50))
    image = sky + rng.normal(0, noise, (ny, nx)) if noise else np.full((ny, nx), sky)
    for _ in range(draw(st.integers(0, 25))):
        image += moffat_star(
            (ny, nx),
            rng.uniform(-5, nx + 5),
            rng.uniform(-5, ny + 5),
            draw(st.floats(10, 1e6)),
            draw(st.floats(1.2, 6.0)),
        )
    border = draw(st.integers(0, min(ny, nx) // 2))
    if border:
        image[:, :border] = 0
    if draw(st.booleans()):
        image[rng.random((ny, nx)) < 0.02] = np.nan
    if draw(st.booleans()):
        image = np.minimum(image, draw(st.floats(100, 5e4)))
    return clean_frame(image)


def _through_every_stage(frame: np.ndarray, m: float) -> str:
    """Run ``frame`` and ``frame / m`` through every stage; the last stage reached (``"normalized"``: all).

    A stage may refuse the pair with a FrameError (too few stars, too few samples); anything else
    fails the test, and so do invalid results.
    """
    target = frame * np.float32(1 / m)
    try:
        cat_r, cat_t = detect_stars(frame), detect_stars(target)
    except FrameError:
        return "detect"
    assert np.isfinite(cat_r[["x", "y", "flux"]].to_numpy()).all()
    pairs = match_stars(cat_t, cat_r)
    assert pairs["ref_index"].is_unique and pairs["target_index"].is_unique
    try:
        table, info = measure_photometry(target, frame, cat_t, cat_r, pairs)
    except FrameError:
        return "photometry"
    assert len(table) == len(pairs) and np.isfinite(info["profile_error"])
    used = table[table["status"] == "used"]
    try:
        fit = fit_scale(used["flux_target"], used["flux_ref"], used["flux_err_target"], used["flux_err_ref"])
        scale = fit.scale
        assert np.isfinite(scale) and np.isfinite(fit.scale_err)
    except FrameError:
        scale = m
    noise = background_noise(frame)
    radii = star_radius(np.maximum(cat_r["peak"] - cat_r["sky"], 0), frame_hlr(cat_r), noise or 1.0)
    mask = star_mask(frame.shape, cat_r["x"].to_numpy(), cat_r["y"].to_numpy(), radii)
    samples = sample_background(np.float32(scale) * target - frame, (frame != 0) & ~mask, box_px=16)
    assert isinstance(samples, pd.DataFrame)
    ok = samples[samples["status"] == "used"]
    try:
        model = fit_gradient(
            ok["x"].to_numpy(),
            ok["y"].to_numpy(),
            ok["value"].to_numpy(),
            ok["weight"].to_numpy(),
            frame.shape,
            grid_px=8,
        )
    except FrameError:
        return "gradient"
    assert np.isfinite(model).all()
    out = normalize_frame(target, scale, model)
    assert out.dtype == np.float32 and ((out == 0) | (target != 0)).all()
    return "normalized"


#: Share of the random examples that must normalize end to end: a stage that refuses every
#: frame (detection always raising, say) must not pass as "a FrameError, nothing else". Local runs
#: draw new examples, whose share varies from run to run (0.18-0.54), so the bar sits well below.
MIN_SHARE_NORMALIZED = 0.1


def test_every_stage_returns_valid_results_or_a_frame_error():
    reached = []

    # CI replays the same examples (a red CI must be reproducible); local runs explore new ones
    @settings(
        max_examples=100,
        deadline=None,
        derandomize=os.environ.get("CI") == "true",
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(frames(), st.floats(0.3, 3.0))
    def check(frame, m):
        stage = _through_every_stage(frame, m)
        event(f"reached {stage}")
        reached.append(stage)

    check()
    share = reached.count("normalized") / len(reached)
    assert share >= MIN_SHARE_NORMALIZED, {stage: reached.count(stage) for stage in set(reached)}
