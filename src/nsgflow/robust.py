"""Medians, quantiles and MADs of many small samples at once: rows of an array, NaN for values left out.

``numpy.nanmedian`` along the rows of a 2-D array runs Python code per row, which
costs seconds for the tens of thousands of sample boxes or star annuli of a
24-megapixel frame. Here each row is sorted once (NaN sorts last) and the
values wanted are picked by the row's count: medians and MADs are the same
numbers as ``numpy.median`` of each row's valid values.
"""

from __future__ import annotations

import numpy as np

__all__ = ["IQR_TO_SIGMA", "MAD_TO_SIGMA", "mad_sigma", "sorted_mad", "sorted_median", "sorted_quantile"]

#: A normal distribution's sigma is this many times its median absolute deviation (MAD).
#: (astropy's ``mad_std`` uses 1.482602...; this rounded factor keeps the pipeline's numbers.)
MAD_TO_SIGMA = 1.4826
#: A normal distribution's interquartile range is this many sigmas.
IQR_TO_SIGMA = 1.349


def mad_sigma(values: np.ndarray, centre: float | None = None) -> float:
    """Robust standard deviation of ``values``: :data:`MAD_TO_SIGMA` times their MAD.

    Parameters
    ----------
    values : numpy.ndarray
        Finite values, any shape; float64 for a float64 result.
    centre : float, optional
        The values' median when the caller has it already; ``None`` computes it.

    Returns
    -------
    float
        ``MAD_TO_SIGMA * median(|values - centre|)``.

    Examples
    --------
    >>> mad_sigma(np.array([1.0, 2.0, 3.0, 4.0, 100.0]))
    1.4826
    """
    if centre is None:
        centre = np.median(values)
    return MAD_TO_SIGMA * float(np.median(np.abs(values - centre)))


def sorted_median(ordered: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Per-row median of rows sorted ascending, each with its ``count`` valid values first (NaN after).

    The same number as :func:`numpy.median` of the valid values: the middle
    value, or the mean of the two middle values computed in the rows' dtype.
    Rows with no valid value give an arbitrary number: mask them.

    Examples
    --------
    >>> rows = np.sort(np.array([[3.0, 1.0, np.nan], [4.0, 1.0, 2.0]]), axis=1)
    >>> sorted_median(rows, np.array([2, 3])).tolist()
    [2.0, 2.0]
    """
    rows = np.arange(len(ordered))
    low = ordered[rows, np.maximum(count - 1, 0) // 2]
    high = ordered[rows, np.maximum(count, 1) // 2]
    return np.where(count % 2 == 1, low, (low + high) / ordered.dtype.type(2))


def sorted_quantile(ordered: np.ndarray, count: np.ndarray, q: float) -> np.ndarray:
    """Per-row quantile ``q`` (float64) of rows as for :func:`sorted_median`, interpolated linearly.

    The value at position ``q * (count - 1)`` of the row's valid values, between
    the two nearest ones: numpy's default (``linear``) quantile, to rounding.
    Rows with no valid value give an arbitrary number: mask them.

    Examples
    --------
    >>> rows = np.sort(np.array([[4.0, 1.0, 2.0, np.nan], [1.0, 2.0, 3.0, 4.0]]), axis=1)
    >>> sorted_quantile(rows, np.array([3, 4]), 0.25).tolist()
    [1.5, 1.75]
    """
    last = np.maximum(count - 1, 0)
    pos = q * last
    low = np.floor(pos).astype(np.int64)
    high = np.minimum(low + 1, last)
    rows = np.arange(len(ordered))
    return (1 - (pos - low)) * ordered[rows, low] + (pos - low) * ordered[rows, high]


def sorted_mad(ordered: np.ndarray, count: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Per-row median of ``|value - centre|`` (float64), rows as for :func:`sorted_median`.

    ``centre`` is usually the rows' median, in the rows' dtype. The deviations below and above it
    are two ascending runs of each sorted row, so their median is selected by
    bisecting on how many of the smaller half come from each run, not by
    sorting them: the same number as :func:`numpy.median` of the deviations.

    Examples
    --------
    >>> values = np.array([[1.0, 2.0, 4.0, 8.0, np.nan]])
    >>> sorted_mad(values, np.array([4]), np.array([3.0])).tolist()
    [1.5]
    """
    n_rows, width = ordered.shape
    flat = ordered.ravel()
    base = np.arange(n_rows) * width
    below = np.minimum((ordered < np.asarray(centre, ordered.dtype)[:, None]).sum(axis=1), count)
    above = count - below
    centre = np.asarray(centre, np.float64)

    def lower(t: np.ndarray) -> np.ndarray:  # the t-th smallest deviation below the centre
        return centre - flat[base + np.clip(below - 1 - t, 0, width - 1)]

    def upper(t: np.ndarray) -> np.ndarray:  # the t-th smallest deviation above the centre
        return flat[base + np.clip(below + t, 0, width - 1)] - centre

    # the k-th and (k+1)-th smallest deviation: the smallest i (deviations taken from below)
    # with upper(k - i) <= lower(i), bisected over the rows at once
    k = np.maximum(count - 1, 0) // 2
    lo, hi = np.maximum(0, k + 1 - above), np.minimum(below, k + 1)
    while np.any(lo < hi):
        mid = (lo + hi) // 2
        done = (mid >= below) | (upper(k - mid) <= lower(mid))
        active = lo < hi
        hi = np.where(active & done, mid, hi)
        lo = np.where(active & ~done, mid + 1, lo)
    i, j = lo, k + 1 - lo
    kth = np.maximum(np.where(i > 0, lower(i - 1), -np.inf), np.where(j > 0, upper(j - 1), -np.inf))
    after = np.minimum(np.where(i < below, lower(i), np.inf), np.where(j < above, upper(j), np.inf))
    return np.where(count % 2 == 1, kth, (kth + after) / 2)
