"""The normalized frame T' = m*T - G and its header.

(Named ``normalized``, not ``normalize``: ``nsgflow.normalize`` is the public function of :mod:`nsgflow.api`.)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from astropy.io import fits

from nsgflow.channels import planes
from nsgflow.io import fits_text

__all__ = ["KEYWORDS", "normalize_frame", "normalized_header"]

#: Keywords nsgflow may add to a normalized frame, with their comments.
KEYWORDS = {
    "WEIGHT": "NSG weight: (noise_ref / (m * noise))**2",
    "NSGNOISE": "background noise of the input frame, ADU",
    "NSGTRANS": "transmission 1/m relative to the reference",
    "NSGTREXP": "transmission per second of exposure, 1/s",
    "NSGVER": "nsgflow version",
    "NSGHASH": "SHA-256 of the input frame",
    "NSGRHASH": "SHA-256 of the reference frame",
    "NSGSETT": "digest of the settings (provenance.json)",
}


def normalize_frame(
    data: np.ndarray, scale: float | Sequence[float], gradient: np.ndarray, out: np.ndarray | None = None
) -> np.ndarray:
    """Return ``scale * data - gradient`` as float32, never clipped; no-data pixels stay 0.

    A colour frame (channels, ny, nx) takes one scale per channel and a
    gradient of the same shape. ``out`` (float32, the result's shape) may be
    ``data`` itself, to save a frame's memory.

    Examples
    --------
    >>> import numpy as np
    >>> normalize_frame(np.array([[0.0, 2.0]]), 1.5, np.array([[1.0, 1.0]])).tolist()
    [[0.0, 2.0]]
    >>> normalize_frame(np.ones((2, 1, 2)), [1.0, 3.0], np.zeros((2, 1, 2))).tolist()
    [[[1.0, 1.0]], [[3.0, 3.0]]]
    >>> frame = np.array([[0.0, 2.0]], dtype=np.float32)
    >>> normalize_frame(frame, 1.5, np.array([[1.0, 1.0]]), out=frame) is frame, frame.tolist()
    (True, [[0.0, 2.0]])
    """
    shape = np.broadcast_shapes(np.shape(data), np.shape(gradient))
    out = np.empty(shape, dtype=np.float32) if out is None else out
    data, gradient = np.broadcast_to(data, out.shape), np.broadcast_to(gradient, out.shape)
    scales = np.broadcast_to(np.asarray(scale, np.float64), (len(planes(out)),))
    for o, d, g, m in zip(planes(out), planes(data), planes(gradient), scales, strict=True):
        for start in range(0, o.shape[0], 256):  # float64 arithmetic a block of rows at a time
            rows = slice(start, start + 256)
            nodata = d[rows] == 0  # before o is written: o may be d
            o[rows] = m * d[rows] - g[rows]
            np.copyto(o[rows], 0.0, where=nodata)
    return out


def normalized_header(
    header: fits.Header,
    *,
    scale: float,
    scale_err: float,
    reference: str,
    history: list[str],
    extra: dict[str, str | float] | None = None,
    channel_scales: Sequence[tuple[float, float]] = (),
) -> fits.Header:
    """Copy of the input header with the normalization's keywords and HISTORY added.

    ``extra`` may hold any of :data:`KEYWORDS` (weight, noise, transmission,
    version, hashes, settings digest). ``channel_scales``, each channel's
    scale and uncertainty, become NSGSCLn and NSGSERn for colour frames, whose
    NSGSCALE is the mean over channels.
    """
    out = header.copy()
    colour = len(channel_scales) > 1
    out["NSGSCALE"] = (scale, "mean of NSGSCLn" if colour else "NSG photometric scale m: T' = m*T - G")
    out["NSGSERR"] = (scale_err, "1-sigma uncertainty of NSGSCALE")
    for channel, (m, m_err) in enumerate(channel_scales if colour else ()):
        out[f"NSGSCL{channel}"] = (m, f"NSG scale m of channel {channel}")
        out[f"NSGSER{channel}"] = (m_err, f"1-sigma uncertainty of NSGSCL{channel}")
    out["NSGREF"] = (fits_text(reference), "NSG reference frame")
    for key, value in (extra or {}).items():
        out[key] = (value, KEYWORDS[key])  # a SHA-256 leaves no room for its comment: write_fits drops it
    for line in history:
        out.add_history(fits_text(line))
    return out
