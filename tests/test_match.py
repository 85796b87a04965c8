import numpy as np
import pandas as pd

from nsgflow.match import estimate_offset, match_stars


def _catalog(rng, n=300, size=1000.0):
    return pd.DataFrame(
        {"x": rng.uniform(0, size, n), "y": rng.uniform(0, size, n), "flux": 10 ** rng.uniform(3, 6, n)}
    )


def test_match_with_jitter_and_missing_stars():
    rng = np.random.default_rng(0)
    ref = _catalog(rng)
    keep = rng.permutation(len(ref))[:250]  # 50 reference stars not detected in the target
    tgt = ref.iloc[keep].copy()
    tgt[["x", "y"]] += rng.normal(0, 0.3, (len(tgt), 2))
    tgt["flux"] *= 0.8
    tgt = pd.concat([tgt, _catalog(rng, 40)]).sample(frac=1, random_state=1).reset_index()
    pairs = match_stars(tgt, ref)
    assert pairs["ref_index"].is_unique and pairs["target_index"].is_unique
    truth = dict(zip(keep, range(250), strict=True))
    correct = [
        truth.get(r) is not None and tgt.loc[t, "index"] == r
        for r, t in zip(pairs["ref_index"], pairs["target_index"], strict=True)
    ]
    assert sum(correct) >= 245
    assert len(pairs) - sum(correct) <= 3


def test_tie_is_broken_by_flux():
    ref = pd.DataFrame({"x": [10.0], "y": [10.0], "flux": [1000.0]})
    tgt = pd.DataFrame({"x": [10.5, 9.8], "y": [10.0, 10.1], "flux": [50.0, 500.0]})
    pairs = match_stars(tgt, ref)
    # with one pair, the typical ratio comes from the nearest; build a field so the ratio is known
    assert len(pairs) == 1
    many_ref = pd.concat([ref, pd.DataFrame({"x": np.arange(100, 1000, 20.0), "y": 500.0, "flux": 2000.0})])
    many_tgt = pd.concat([tgt, pd.DataFrame({"x": np.arange(100, 1000, 20.0), "y": 500.0, "flux": 1000.0})])
    pairs = match_stars(many_tgt.reset_index(drop=True), many_ref.reset_index(drop=True))
    assert pairs.loc[pairs["ref_index"] == 0, "target_index"].item() == 1


def test_no_match_beyond_tolerance():
    ref = pd.DataFrame({"x": [10.0], "y": [10.0], "flux": [1.0]})
    tgt = pd.DataFrame({"x": [13.0], "y": [10.0], "flux": [1.0]})
    assert len(match_stars(tgt, ref, tolerance_px=2.0)) == 0


def test_offset_of_unregistered_frames():
    rng = np.random.default_rng(5)
    ref = _catalog(rng)
    tgt = ref.copy()
    tgt["x"] += 25.0
    tgt["y"] -= 12.0
    dx, dy, votes = estimate_offset(tgt, ref)
    assert (dx, dy) == (25.0, -12.0)
    assert votes > 100
