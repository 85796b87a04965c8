"""Frame weights for the stacker, and frame rejection."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from nsgflow.channels import channel_values

__all__ = ["frame_weight", "rejection_reasons", "stats_weight", "weight_noise"]


def frame_weight(
    noise_target: float | Sequence[float], noise_ref: float | Sequence[float], scale: float | Sequence[float]
) -> float:
    """NormalizeScaleGradient's weight: ``(noise_ref / (scale * noise_target))**2``, averaged over channels.

    After normalization a target's noise is ``scale * noise_target``; the
    weight is its inverse variance relative to the reference's, so it is
    proportional to the light the frame collected: a frame that needed a
    large scale (cloud, low altitude) gets a small weight. For a colour frame
    pass each channel's noises and scale; NaN if any is not positive.

    Examples
    --------
    >>> frame_weight(10.0, 10.0, 2.0)
    0.25
    >>> frame_weight([10.0, 5.0], [10.0, 10.0], [2.0, 2.0])
    0.625
    """
    noise_target, noise_ref, scale = (np.asarray(v, np.float64) for v in (noise_target, noise_ref, scale))
    if not (np.all(noise_ref > 0) and np.all(noise_target > 0) and np.all(scale > 0)):
        return float("nan")
    return float(np.mean((noise_ref / (scale * noise_target)) ** 2))


def stats_weight(target_stats: dict, ref_stats: dict, scale: dict) -> float:
    """:func:`frame_weight` of a target from both frames' statistics and its scale record (per channel)."""
    return frame_weight(weight_noise(target_stats), weight_noise(ref_stats), channel_values(scale, "scale"))


def rejection_reasons(row: dict, settings: dict) -> list[str]:
    """Why a frame should be left out of the stack, per the ``reject`` settings (empty: accept).

    ``row`` holds the frame's ``weight``, ``transmission_per_s`` (may be None
    without EXPTIME), ``stars_used`` and ``scale_err`` / ``scale``.
    """
    reasons = []
    if row["weight"] is None or not math.isfinite(row["weight"]) or row["weight"] < settings["min_weight"]:
        reasons.append(f"weight {row['weight']} < {settings['min_weight']}")
    per_s = row.get("transmission_per_s")
    if (
        settings["min_transmission_per_s"] > 0
        and per_s is not None
        and per_s < settings["min_transmission_per_s"]
    ):
        reasons.append(f"transmission per second {per_s:.4g} < {settings['min_transmission_per_s']}")
    if row["stars_used"] < settings["min_stars"]:
        reasons.append(f"{row['stars_used']} stars used < {settings['min_stars']}")
    if row["scale"] and row["scale_err"] / row["scale"] > settings["max_scale_err"]:
        reasons.append(
            f"scale uncertainty {row['scale_err'] / row['scale']:.2%} > {settings['max_scale_err']:.2%}"
        )
    return reasons


def weight_noise(stats: dict) -> list[float]:
    """Each channel's noise for the weight: its header's NOISExx value when present, else the measured one."""
    return [c.get("noise_header") or c["noise"] for c in stats.get("channels", [stats])]
