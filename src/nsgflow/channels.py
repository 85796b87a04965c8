"""Mono and colour frames: one convention for channels, used by every stage.

A mono frame is an array of shape ``(ny, nx)``; a colour frame (RGB, e.g. a
debayered one-shot-colour frame) has shape ``(3, ny, nx)``, channels first as
in FITS. Stars are detected once, on the luminance, so every channel shares one
star catalog; photometry, scale, gradient samples and gradient model are made
per channel, as NormalizeScaleGradient does.

Per-frame records (the JSON of a stage) are one channel's dict for a mono
frame; for a colour frame they are the values all channels share, a summary,
and ``channels``: the list of each channel's dict (:func:`combine`,
:func:`channel_values`). Tables get a ``channel`` column (0 for mono).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "COLOUR_CHANNELS",
    "channel_record",
    "channel_values",
    "combine",
    "luminance",
    "planes",
    "unsupported_shape",
]

#: Number of channels of a colour frame.
COLOUR_CHANNELS = 3


def unsupported_shape(shape: tuple[int, ...]) -> str | None:
    """Why a frame of this array shape cannot be normalized; None if it can (mono or 3-channel colour).

    Examples
    --------
    >>> unsupported_shape((3, 400, 600)) is None, unsupported_shape((400, 600)) is None
    (True, True)
    >>> unsupported_shape((4, 400, 600))
    'image has shape (4, 400, 600); only mono (ny, nx) and colour (3, ny, nx) frames are supported'
    """
    if len(shape) == 2 or (len(shape) == 3 and shape[0] == COLOUR_CHANNELS):
        return None
    return f"image has shape {tuple(shape)}; only mono (ny, nx) and colour (3, ny, nx) frames are supported"


def planes(data: np.ndarray) -> list[np.ndarray]:
    """The frame's channels as 2-D arrays: one for mono, three for colour (views, no copies).

    Examples
    --------
    >>> [p.shape for p in planes(np.zeros((3, 4, 5)))]
    [(4, 5), (4, 5), (4, 5)]
    >>> len(planes(np.zeros((4, 5))))
    1
    """
    return list(data) if data.ndim == 3 else [data]


def luminance(data: np.ndarray) -> np.ndarray:
    """The mean of the channels, 0 (no data) where any channel has no data; a mono frame as it is.

    Examples
    --------
    >>> luminance(np.array([[[1.0, 0.0]], [[3.0, 2.0]], [[2.0, 2.0]]])).tolist()
    [[2.0, 0.0]]
    """
    if data.ndim == 2:
        return data
    lum = data.mean(axis=0, dtype=np.float32)
    lum[(data == 0).any(axis=0)] = 0.0
    return lum


def combine(records: Sequence[dict], summary: dict | None = None) -> dict:
    """One record for a frame from its channels' records.

    One channel: its record (plus ``summary``). Several: the values every
    channel shares, then ``summary``, then ``channels``, the list of records.

    Examples
    --------
    >>> combine([{"radius": 4.0, "m": 1.0}])
    {'radius': 4.0, 'm': 1.0}
    >>> combine([{"radius": 4.0, "m": 1.0}, {"radius": 4.0, "m": 2.0}], {"m": 1.5})
    {'radius': 4.0, 'm': 1.5, 'channels': [{'radius': 4.0, 'm': 1.0}, {'radius': 4.0, 'm': 2.0}]}
    """
    if len(records) == 1:
        return {**records[0], **(summary or {})}
    shared = {k: v for k, v in records[0].items() if all(k in r and r[k] == v for r in records[1:])}
    return {**shared, **(summary or {}), "channels": list(records)}


def channel_record(record: dict, channel: int) -> dict:
    """One channel's record out of a frame's (:func:`combine`)."""
    return record["channels"][channel] if "channels" in record else record


def channel_values(record: dict, key: str) -> list[Any]:
    """``key`` of every channel's record, in channel order.

    Examples
    --------
    >>> channel_values({"m": 1.0}, "m")
    [1.0]
    >>> channel_values({"m": 1.5, "channels": [{"m": 1.0}, {"m": 2.0}]}, "m")
    [1.0, 2.0]
    """
    return [r[key] for r in record["channels"]] if "channels" in record else [record[key]]
