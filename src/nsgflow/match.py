"""Matching target stars to reference stars in registered frames."""

from __future__ import annotations

import numpy as np
import pandas as pd

from nsgflow.errors import FrameError

__all__ = ["estimate_offset", "match_stars"]


def match_stars(
    target: pd.DataFrame,
    reference: pd.DataFrame,
    *,
    tolerance_px: float = 2.0,
    neighbours: int = 4,
    bright_stars: int = 50,
) -> pd.DataFrame:
    """Pair each reference star with at most one target star within ``tolerance_px``.

    Frames are registered, so a star's partner lies within a few pixels. Among
    the candidates within the tolerance, the one whose flux ratio is closest
    to the typical ratio (the median over the ``bright_stars`` brightest
    nearest-neighbour pairs) wins; each target star is used once.

    Parameters
    ----------
    target, reference : pandas.DataFrame
        Catalogs with columns ``x, y, flux`` (see :func:`nsgflow.detect.detect_stars`).
    tolerance_px : float, default 2.0
        Largest distance between partners, px.
    neighbours : int, default 4
        Candidates considered per reference star.
    bright_stars : int, default 50
        Pairs used to find the typical flux ratio.

    Returns
    -------
    pandas.DataFrame
        Columns ``ref_index, target_index`` (row positions in the catalogs) and
        ``distance_px``, ordered by reference row.
    """
    empty = pd.DataFrame({"ref_index": [], "target_index": [], "distance_px": []})
    if len(reference) == 0 or len(target) == 0:
        return empty.astype({"ref_index": int, "target_index": int})
    from scipy.spatial import cKDTree  # here: the module is imported by jobs that do not match

    k = min(neighbours, len(target))
    tree = cKDTree(target[["x", "y"]].to_numpy())
    dist, idx = tree.query(reference[["x", "y"]].to_numpy(), k=k, distance_upper_bound=tolerance_px)
    dist, idx = dist.reshape(len(reference), k), idx.reshape(len(reference), k)
    ref_row, col = np.nonzero(np.isfinite(dist))
    if len(ref_row) == 0:
        return empty.astype({"ref_index": int, "target_index": int})
    tgt_row = idx[ref_row, col]
    log_ratio = np.log(
        np.maximum(reference["flux"].to_numpy()[ref_row], 1e-30)
        / np.maximum(target["flux"].to_numpy()[tgt_row], 1e-30)
    )
    nearest = col == 0
    brightest = np.argsort(-reference["flux"].to_numpy()[ref_row[nearest]])[:bright_stars]
    typical = np.median(log_ratio[nearest][brightest])
    cost = np.abs(log_ratio - typical) + 1e-6 * dist[ref_row, col]
    order = np.argsort(cost, kind="stable")
    pairs = pd.DataFrame(
        {
            "ref_index": ref_row[order],
            "target_index": tgt_row[order],
            "distance_px": dist[ref_row, col][order],
        }
    )
    pairs = pairs.drop_duplicates("target_index").drop_duplicates("ref_index")
    return pairs.sort_values("ref_index", kind="stable").reset_index(drop=True)


def estimate_offset(
    target: pd.DataFrame, reference: pd.DataFrame, *, search_px: float = 100.0, stars: int = 200
) -> tuple[float, float, int]:
    """Estimate the shift between two catalogs from their brightest stars.

    Returns the median ``(dx, dy)`` of target minus reference over
    nearest-neighbour pairs within ``search_px`` whose offsets agree, and
    the number of agreeing pairs. Used to tell "frames not registered" from
    "too few stars".
    """
    ref = reference.nlargest(stars, "flux")[["x", "y"]].to_numpy()
    tgt = target.nlargest(stars, "flux")[["x", "y"]].to_numpy()
    if len(ref) == 0 or len(tgt) == 0:
        raise FrameError("no stars to compare")
    from scipy.spatial import cKDTree

    # every pairwise offset within the search box votes; the mode is the shift
    tree = cKDTree(tgt)
    pairs = tree.query_ball_point(ref, r=search_px)
    offsets = np.array([tgt[j] - ref[i] for i, js in enumerate(pairs) for j in js])
    if len(offsets) == 0:
        return 0.0, 0.0, 0
    hist, xe, ye = np.histogram2d(
        offsets[:, 0], offsets[:, 1], bins=int(search_px), range=[[-search_px, search_px]] * 2
    )
    ix, iy = np.unravel_index(np.argmax(hist), hist.shape)
    near = (np.abs(offsets[:, 0] - (xe[ix] + xe[ix + 1]) / 2) < 3) & (
        np.abs(offsets[:, 1] - (ye[iy] + ye[iy + 1]) / 2) < 3
    )
    dx, dy = np.median(offsets[near], axis=0)
    return float(dx), float(dy), int(near.sum())
