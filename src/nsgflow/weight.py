"""Frame weights for the stacker, and frame rejection."""

from __future__ import annotations

import math

__all__ = ["frame_weight", "rejection_reasons", "weight_noise"]


def frame_weight(noise_ref: float, noise_target: float, scale: float) -> float:
    """NormalizeScaleGradient's weight: ``(noise_ref / (scale * noise_target))**2``.

    After normalization a target's noise is ``scale * noise_target``; the
    weight is its inverse variance relative to the reference's, so it is
    proportional to the light the frame collected: a frame that needed a
    large scale (cloud, low altitude) gets a small weight.

    Examples
    --------
    >>> frame_weight(10.0, 10.0, 2.0)
    0.25
    """
    if not (noise_ref > 0 and noise_target > 0 and scale > 0):
        return float("nan")
    return (noise_ref / (scale * noise_target)) ** 2


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


def weight_noise(stats: dict) -> float:
    """The noise a frame's weight uses: its header's NOISExx value when present, else the measured one."""
    return stats["noise_header"] if stats.get("noise_header") else stats["noise"]
