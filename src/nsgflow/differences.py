"""The difference m*T - R of a frame and the reference, the gradient samples' image.

Each channel's difference of the frames as they are
(:func:`channel_differences`), or of the frames convolved to one star
profile, each with the other's fitted profile, saturated stars' clipped cores
rebuilt first (:func:`matched_differences`); and the channels' mean,
computed for the rows and columns it is read at (:class:`MeanDifference`),
for the trail detection. The stage that samples them is
:func:`nsgflow.stages.gradient_samples`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from nsgflow.channels import channel_record, planes
from nsgflow.cores import ReplacedPixels, rebuilt_cores, saturated_positions
from nsgflow.detect import StarFlag
from nsgflow.gradient import matched_difference, moffat_radius, star_mask
from nsgflow.profiles import psf_image

__all__ = [
    "MeanDifference",
    "channel_differences",
    "matched_differences",
    "rebuilt_cores_reach",
    "stars_held_once",
]


def _difference(
    target: np.ndarray, reference: np.ndarray, scale: float, out: np.ndarray | None = None
) -> np.ndarray:
    """m*T - R of one plane (or part of one), float32; in ``out`` if given."""
    difference = np.multiply(target, scale, out=out, dtype=np.float32)
    difference -= reference
    return difference


def channel_differences(
    target: np.ndarray, reference: np.ndarray, scales: np.ndarray, *, overwrite: bool
) -> list[np.ndarray]:
    """Each channel's m*T - R, float32; in ``target``'s memory with ``overwrite`` (float32 only)."""
    overwrite = overwrite and target.dtype == np.float32
    return [
        _difference(t, r, m, out=t if overwrite else None)
        for m, t, r in zip(scales, planes(target), planes(reference), strict=True)
    ]


class MeanDifference:
    """The channels' mean of m*T - R, float32, computed for the rows and columns it is sliced at.

    Trail detection (:func:`nsgflow.trails.find_trails`) reads it in strips,
    so the difference never takes a frame's memory.
    """

    def __init__(self, target: np.ndarray, reference: np.ndarray, scales: np.ndarray) -> None:
        self.planes = list(zip(scales, planes(target), planes(reference), strict=True))
        self.shape = reference.shape[-2:]

    def __getitem__(self, index: Any) -> np.ndarray:
        total = None
        for m, t, r in self.planes:
            difference = _difference(t[index], r[index], m)
            total = difference if total is None else np.add(total, difference, out=total)
        if len(self.planes) > 1:
            total /= np.float32(len(self.planes))
        return total


#: Matched-difference kernels reach this many half-light radii of the broader frame's stars: a
#: beta-2 profile still holds 0.6 % of its light beyond.
KERNEL_HLR = 20.0


def matched_differences(
    target: np.ndarray,
    reference: np.ndarray,
    scales: np.ndarray,
    photometry: dict,
    data: tuple[np.ndarray, np.ndarray],
    catalogs: list[pd.DataFrame],
    stats: list[dict],
    *,
    overwrite: bool,
) -> tuple[list[np.ndarray], np.ndarray]:
    """Each channel's :func:`nsgflow.gradient.matched_difference`; the pixels defined in every channel.

    ``data`` holds the target's and the reference's valid pixels.

    Saturated stars' clipped cores are rebuilt first in both frames
    (:func:`_rebuilt_cores`); ``catalogs`` and ``stats`` are the target's and the reference's.
    The pixels that the light of a star only one frame holds reaches are not defined
    (:func:`stars_held_once`), nor those the error of a rebuilt core reaches (:func:`rebuilt_cores_reach`).
    With ``overwrite`` (float32 ``target`` only) each difference is written into the target's memory.
    """
    differences, defined = [], None
    x, y = saturated_positions(catalogs[::-1], int(StarFlag.SATURATED))  # the reference's first
    for channel, (m, t, r) in enumerate(zip(scales, planes(target), planes(reference), strict=True)):
        record = channel_record(photometry, channel)
        half = int(np.ceil(KERNEL_HLR * max(record["hlr_ref_px"], record["hlr_target_px"])))
        ref_kernel, target_kernel = (psf_image(np.asarray(p), half) for p in record["profile"])
        cores = _rebuilt_cores((t, r), x, y, record, stats, channel)
        into = t if overwrite and t.dtype == np.float32 else None
        noise = channel_record(stats[1], channel)["noise"]
        # before t is overwritten
        once = stars_held_once((t, r), data, catalogs, record, (m, noise), cores)
        uncertain = rebuilt_cores_reach((t, r), cores, record, (m, noise))
        difference, ok = matched_difference(t, r, m, target_kernel, ref_kernel, data, cores, out=into)
        for mask in (once, uncertain):
            if mask is not None:
                ok &= ~mask
        differences.append(difference)
        defined = ok if defined is None else np.logical_and(defined, ok, out=defined)
    return differences, defined


#: Light that one frame's convolution holds and the other's lacks (a star only one frame holds, the
#: error of a rebuilt core) is left out to where it falls below this many of the reference's noise sigmas.
REACH_SIGMA = 0.1
#: The share of a rebuilt saturated core's light it may be wrong by: the 90th percentile of whole
#: cores on the cores benchmark (``benchmarks/cores.py``) is 12.5 %.
REBUILT_CORE_ERROR = 0.1
#: Such a star's light is summed within this many of its frame's half-light radii, less the median of a
#: ring 2 to 3 times as far.
HELD_ONCE_APERTURE_HLR = 6.0


def stars_held_once(
    frames: tuple[np.ndarray, np.ndarray],
    data: tuple[np.ndarray, np.ndarray],
    catalogs: list[pd.DataFrame],
    record: dict,
    scale_noise: tuple[float, float],
    cores: tuple[ReplacedPixels | None, ReplacedPixels | None] = (None, None),
) -> np.ndarray | None:
    """Pixels reached by the light of stars that only one of two frames holds; None if there are none.

    A star on one frame's pixels with ``data`` where the other frame has none
    (its border) or leaves them out (a trail, a hot pixel) cannot cancel in
    the matched difference: the other frame lacks its light, and convolving
    with the wide kernel of a frame with broad wings spreads what it lacks
    far. Each such star's light is summed in the frame that holds it
    (saturated ``cores`` rebuilt), and its disc is left out as far as that
    frame's profile spreads it (:func:`_reach`).

    Parameters
    ----------
    frames, data, catalogs, cores
        The target's and the reference's plane, pixels with data (less their
        own masks), star catalog and rebuilt saturated cores.
    record
        The photometry record of the channel: ``profile`` (the reference's
        first) and ``hlr_target_px``, ``hlr_ref_px``.
    scale_noise
        The scale m and the reference's noise.
    """
    profiles = (record["profile"][1], record["profile"][0])
    hlrs = (record["hlr_target_px"], record["hlr_ref_px"])
    shape = data[0].shape
    found = []
    for k, stars in enumerate(catalogs):
        x, y = (stars[c].to_numpy(float) for c in ("x", "y"))
        col, row = (np.clip(np.rint(v).astype(int), 0, n - 1) for v, n in ((x, shape[1]), (y, shape[0])))
        once = data[k][row, col] & ~data[1 - k][row, col]
        if once.any():
            light = _star_light(frames[k], data[k], cores[k], x[once], y[once], hlrs[k])
            found.append((x[once], y[once], light, profiles[k], k == 0))
    return _reach(shape, found, scale_noise)


def rebuilt_cores_reach(
    frames: tuple[np.ndarray, np.ndarray],
    cores: tuple[ReplacedPixels | None, ReplacedPixels | None],
    record: dict,
    scale_noise: tuple[float, float],
) -> np.ndarray | None:
    """Pixels that the error of the rebuilt saturated cores reaches; None if no core was rebuilt.

    A rebuilt core (:func:`nsgflow.cores.saturated_cores`) may be wrong by
    :data:`REBUILT_CORE_ERROR` of the light it adds to the clipped pixels of
    ``frames`` (the target's and the reference's plane). Convolved with the
    other frame's profile, that error spreads like a star's light, and no
    light of the other frame cancels it: each core's disc is left out as far
    as the other frame's profile spreads it (:func:`_reach`). ``record`` and
    ``scale_noise`` are as for :func:`stars_held_once`.
    """
    found = []
    # the record lists the reference's profile first: the target's cores (k = 0) spread by it
    for k, replaced in enumerate(cores):
        if replaced is not None and replaced.rows.size:
            x, y, added = replaced.added_light(frames[k])
            found.append((x, y, REBUILT_CORE_ERROR * added, record["profile"][k], k == 0))
    return _reach(frames[0].shape, found, scale_noise)


def _reach(shape: tuple[int, int], found: list[tuple], scale_noise: tuple[float, float]) -> np.ndarray | None:
    """Pixels where some light, spread by a profile, is at least :data:`REACH_SIGMA` of the reference's noise.

    ``found`` lists ``(x, y, light, profile, in_target)``: positions and light
    spread by one round Moffat profile (the ``alpha`` and ``beta`` of
    ``profile``), the target's light (``in_target``) in the reference's units
    after the scale m. ``scale_noise`` is m and the reference's noise. None if
    ``found`` is empty.
    """
    if not found:
        return None
    scale, noise = scale_noise
    parts = []
    for x, y, light, profile, in_target in found:
        alpha, beta = profile[0], profile[1]
        peak = light * (scale if in_target else 1.0) * (beta - 1) / (np.pi * alpha**2 * REACH_SIGMA * noise)
        with np.errstate(invalid="ignore"):
            parts.append((x, y, moffat_radius(np.maximum(peak, 1.0), alpha, beta)))
    x, y, radius = (np.concatenate(part) for part in zip(*parts, strict=True))
    return star_mask(shape, x, y, radius)


def _star_light(
    plane: np.ndarray,
    valid: np.ndarray,
    cores: ReplacedPixels | None,
    x: np.ndarray,
    y: np.ndarray,
    hlr_px: float,
) -> np.ndarray:
    """Each star's light within :data:`HELD_ONCE_APERTURE_HLR` half-light radii, less its ring's median."""
    radius = HELD_ONCE_APERTURE_HLR * hlr_px
    half = int(np.ceil(3 * radius)) + 1
    light = np.zeros(len(x))
    for i, (x0, y0) in enumerate(zip(x, y, strict=True)):
        col, row = round(x0), round(y0)
        r0, r1 = max(row - half, 0), min(row + half + 1, plane.shape[0])
        c0, c1 = max(col - half, 0), min(col + half + 1, plane.shape[1])
        stamp = plane[r0:r1, c0:c1] if cores is None else cores.read_block(plane, (r0, r1), (c0, c1))
        ok = valid[r0:r1, c0:c1]
        yy, xx = np.ogrid[r0:r1, c0:c1]
        distance = np.hypot(xx - x0, yy - y0)
        ring = ok & (distance >= 2 * radius) & (distance < 3 * radius)
        disc = ok & (distance < radius)
        if ring.any() and disc.any():
            light[i] = np.sum(stamp[disc] - np.median(stamp[ring]))
    return light


def _rebuilt_cores(
    frames: tuple[np.ndarray, np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
    record: dict,
    stats: list[dict],
    channel: int,
) -> tuple[ReplacedPixels | None, ReplacedPixels | None]:
    """The target's and the reference's saturated cores at ``x, y`` (:func:`nsgflow.cores.rebuilt_cores`).

    Each frame's own profile and half-light radius come from the photometry
    ``record``, its clip level from its ``stats`` (:func:`clip_level`).
    """
    target, reference = rebuilt_cores(
        frames,
        x,
        y,
        record["profile"][::-1],  # the record lists the reference's first
        (record["hlr_target_px"], record["hlr_ref_px"]),
        [clip_level(frame_stats, channel) for frame_stats in stats],
    )
    return target, reference


def channel_saturation(stats: dict, channel: int) -> float | None:
    """A frame's saturation level in one channel; None if unsaturated.

    ``stats`` are the frame's statistics (:func:`nsgflow.stages.detect_frame`).
    """
    return stats["channels"][channel]["saturation"] if "channels" in stats else stats["saturation"]


def clip_level(stats: dict, channel: int) -> float | None:
    """The level at which a channel's stars are clipped (``linear_range`` of its saturation); None: none."""
    level = channel_saturation(stats, channel)
    return None if level is None else stats["linear_range"] * level
