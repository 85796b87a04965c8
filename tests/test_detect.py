import numpy as np
import pandas as pd
import pytest

from nsgflow.detect import StarFlag, detect_stars, estimate_saturation, nodata_counts
from nsgflow.errors import FrameError

from .conftest import moffat_star


def _field(rng: np.random.Generator, shape=(200, 300), n=12):
    x = rng.uniform(20, shape[1] - 20, n)
    y = rng.uniform(20, shape[0] - 20, n)
    image = 100.0 + rng.normal(0, 5, shape)
    for xi, yi in zip(x, y, strict=True):
        image += moffat_star(shape, xi, yi, 2e4, 3.0)
    return image.astype(np.float32), x, y


def test_positions_match_injected_stars():
    rng = np.random.default_rng(0)
    image, x, y = _field(rng)
    cat = detect_stars(image)
    assert len(cat) == len(x)
    nearest = [np.min(np.hypot(cat["x"] - xi, cat["y"] - yi)) for xi, yi in zip(x, y, strict=True)]
    assert max(nearest) < 0.1
    assert (cat["flags"] == 0).all()
    # half-light radius of a Moffat(beta=3) star with FWHM 3: alpha*sqrt(2**0.5-1), alpha = FWHM/1.0197
    np.testing.assert_allclose(cat["hlr_px"].median(), 3.0 / 1.0197 * np.sqrt(np.sqrt(2) - 1), rtol=0.05)


def test_saturated_star_is_flagged():
    rng = np.random.default_rng(1)
    image, _, _ = _field(rng)
    image += moffat_star(image.shape, 150.3, 100.6, 5e6, 3.0)
    image = np.minimum(image, 30000.0).astype(np.float32)
    assert estimate_saturation(image) == pytest.approx(30000.0)
    cat = detect_stars(image)
    saturated = cat[(cat["flags"] & int(StarFlag.SATURATED)) != 0]
    assert len(saturated) == 1
    assert saturated.iloc[0][["x", "y"]].to_numpy() == pytest.approx([150.3, 100.6], abs=0.5)


def test_stars_just_reaching_the_clip_level_give_the_saturation_level():
    # two stars whose peaks only just pass the clip level: a pixel or two each, no plateau of 5
    rng = np.random.default_rng(4)
    image, _, _ = _field(rng)
    for x, y in ((60.2, 50.7), (220.6, 150.1)):
        image += moffat_star(image.shape, x, y, 4.4e5, 3.0)
    clipped = np.minimum(image, 30000.0).astype(np.float32)
    assert 2 <= np.count_nonzero(clipped == 30000.0) < 5
    assert estimate_saturation(clipped) == pytest.approx(30000.0)
    cat = detect_stars(clipped)
    assert ((cat["flags"] & int(StarFlag.SATURATED)) != 0).sum() == 2
    # the same stars unclipped: two different peaks, no saturation level
    assert estimate_saturation(image) == float("inf")


def test_unsaturated_frame_has_no_saturation_level():
    image, _, _ = _field(np.random.default_rng(2))
    assert estimate_saturation(image) == float("inf")


def test_star_near_no_data_border_is_flagged():
    rng = np.random.default_rng(3)
    image, _, _ = _field(rng, n=0)
    image += moffat_star(image.shape, 40.0, 100.0, 2e4, 3.0) + moffat_star(
        image.shape, 150.0, 100.0, 2e4, 3.0
    )
    image[:, :32] = 0.0
    cat = detect_stars(image.astype(np.float32))
    by_x = cat.sort_values("x")
    assert by_x["flags"].tolist() == [StarFlag.NEAR_BORDER, 0]


def test_nodata_counts_includes_outside_of_frame():
    nodata = np.zeros((10, 10), bool)
    nodata[5, 5] = True
    counts = nodata_counts(nodata, np.array([5.0, 0.0, 8.0]), np.array([5.0, 0.0, 2.0]), 1)
    assert counts.tolist() == [1, 5, 0]


def test_nodata_counts_equal_a_direct_count():
    # boxes inside, across and outside the edges, over masks from a few scattered pixels to a
    # border of several blocks (nodata_counts looks in 32-px blocks first)
    rng = np.random.default_rng(7)
    ny, nx = 150, 110
    for nodata in (
        rng.random((ny, nx)) < 0.002,
        np.pad(np.zeros((ny, nx - 70), bool), ((0, 0), (70, 0)), constant_values=True),
    ):
        x, y = rng.uniform(-10, nx + 10, 300), rng.uniform(-10, ny + 10, 300)
        half = rng.integers(0, 40, 300)
        padded = np.pad(nodata, 60, constant_values=True)  # outside the frame counts as no data
        ix, iy = np.rint(x).astype(int) + 60, np.rint(y).astype(int) + 60
        direct = [
            padded[j - h : j + h + 1, i - h : i + h + 1].sum() for i, j, h in zip(ix, iy, half, strict=True)
        ]
        assert nodata_counts(nodata, x, y, half).tolist() == direct


@pytest.mark.parametrize("value", [0.0, 7.0])
def test_empty_or_constant_frame_is_a_clear_error(value):
    with pytest.raises(FrameError, match=r"no data|no background noise|no stars"):
        detect_stars(np.full((64, 64), value, np.float32))


def test_catalog_columns():
    cat = detect_stars(_field(np.random.default_rng(4))[0])
    assert isinstance(cat, pd.DataFrame)
    assert list(cat.columns) == ["id", "x", "y", "flux", "peak", "sky", "a", "b", "theta", "hlr_px", "flags"]
    assert cat["flux"].is_monotonic_decreasing


def test_sizes_of_the_brightest_and_sky_at_the_peaks(monkeypatch):
    import sep

    import nsgflow.detect

    rng = np.random.default_rng(3)
    image, _, _ = _field(rng)
    image += np.linspace(0, 50, image.shape[1], dtype=np.float32)  # a sky that is not flat
    monkeypatch.setattr(nsgflow.detect, "SIZED_STARS", 5)
    cat = detect_stars(image)
    assert np.isfinite(cat["hlr_px"][:5]).all() and cat["hlr_px"][5:].isna().all()
    back = sep.Background(image, bw=64, bh=64).back()
    for star in cat.itertuples():
        iy, ix = round(star.y), round(star.x)
        box = image[iy - 2 : iy + 3, ix - 2 : ix + 3]
        dy, dx = np.unravel_index(np.argmax(box), box.shape)  # the star's brightest pixel
        assert star.sky == pytest.approx(back[iy - 2 + dy, ix - 2 + dx], rel=1e-5)


def test_tall_frames_are_searched_in_strips_with_every_star_once(monkeypatch):
    import nsgflow.detect

    rng = np.random.default_rng(4)
    shape = (700, 200)
    image = (100.0 + rng.normal(0, 5, shape)).astype(np.float32)
    x = rng.uniform(15, 185, 40)
    y = np.concatenate([[127.6, 128.2, 255.9, 384.0, 511.5], rng.uniform(15, 685, 35)])  # on strip edges too
    for xi, yi in zip(x, y, strict=True):
        image += moffat_star(shape, xi, yi, 2e4, 3.0).astype(np.float32)
    whole = detect_stars(image)
    monkeypatch.setattr(nsgflow.detect, "STRIP_ROWS", 128)
    monkeypatch.setattr(nsgflow.detect, "STRIP_OVERLAP", 24)
    strips = detect_stars(image)
    assert len(whole) == len(strips) == 40
    whole, strips = (cat.sort_values("y", ignore_index=True).drop(columns="id") for cat in (whole, strips))
    # the same stars; sep splits the light of a blend a little differently (its flux and shape)
    blended = (whole["flags"] & int(StarFlag.BLENDED)) != 0
    assert 0 < blended.sum() < 10
    pd.testing.assert_frame_equal(strips[~blended], whole[~blended])
    same = ["x", "y", "peak", "sky", "flags"]
    pd.testing.assert_frame_equal(strips.loc[blended, same], whole.loc[blended, same])
    np.testing.assert_allclose(strips["flux"], whole["flux"], rtol=0.03)
