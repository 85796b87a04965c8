"""A weighted, sigma-clipped mean of normalized frames (no further normalization)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["stack_frames"]


def stack_frames(
    frames: Sequence[np.ndarray],
    weights: Sequence[float],
    *,
    sigma: float = 3.0,
    iterations: int = 3,
    chunk_rows: int = 128,
) -> tuple[np.ndarray, np.ndarray]:
    """Stack frames of one shape: weighted mean per pixel after iterative sigma clipping.

    Pixels equal to 0 are no data and take no part. At each pass, values
    further than ``sigma`` weighted standard deviations from the weighted mean
    of a pixel are rejected (with at least 3 values left). Rows are processed
    ``chunk_rows`` at a time, so memory-mapped frames need not fit in memory.

    Parameters
    ----------
    frames : sequence of numpy.ndarray, shape (ny, nx) or (3, ny, nx)
        Normalized frames (arrays or memory maps), mono or colour.
    weights : sequence of float
        Their weights (WEIGHT keyword); non-positive weights drop a frame.

    Returns
    -------
    stack : numpy.ndarray, float32
        The weighted mean; 0 where no frame has data.
    rejected : numpy.ndarray, int16
        How many frames were rejected at each pixel.

    Examples
    --------
    >>> a, b, c = np.full((2, 2), 10.0), np.full((2, 2), 12.0), np.full((2, 2), 11.0)
    >>> c[0, 0] = 500.0  # a satellite trail in one frame
    >>> stack, rejected = stack_frames([a, b, c, a, b], [1, 1, 1, 1, 1], sigma=1.5)
    >>> float(stack[0, 0]), int(rejected[0, 0])
    (11.0, 1)
    """
    shape = frames[0].shape
    if len(shape) == 3:  # colour: stack the channels' rows one after another, as one tall image
        stack, rejected = stack_frames(
            [f.reshape(-1, shape[-1]) for f in frames],
            weights,
            sigma=sigma,
            iterations=iterations,
            chunk_rows=chunk_rows,
        )
        return stack.reshape(shape), rejected.reshape(shape)
    w = np.asarray(weights, dtype=np.float64)
    ny, nx = shape
    stack = np.zeros((ny, nx), np.float32)
    rejected = np.zeros((ny, nx), np.int16)
    for start in range(0, ny, chunk_rows):
        rows = slice(start, min(start + chunk_rows, ny))
        data = np.stack([np.asarray(f[rows], dtype=np.float64) for f in frames])
        keep = (data != 0) & (w[:, None, None] > 0)
        initial = keep.sum(axis=0)
        for _ in range(iterations):
            wk = np.where(keep, w[:, None, None], 0.0)
            total = wk.sum(axis=0)
            mean = np.divide((wk * data).sum(axis=0), total, out=np.zeros_like(total), where=total > 0)
            var = np.divide(
                (wk * (data - mean) ** 2).sum(axis=0), total, out=np.zeros_like(total), where=total > 0
            )
            outlier = keep & (np.abs(data - mean) > sigma * np.sqrt(var)) & (keep.sum(axis=0) > 3)
            if not outlier.any():
                break
            keep &= ~outlier
        wk = np.where(keep, w[:, None, None], 0.0)
        total = wk.sum(axis=0)
        stack[rows] = np.divide((wk * data).sum(axis=0), total, out=np.zeros_like(total), where=total > 0)
        rejected[rows] = initial - keep.sum(axis=0)
    return stack, rejected
