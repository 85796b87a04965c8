"""The normalized frame T' = m*T - G and its header.

(Named ``normalized``, not ``normalize``: ``nsgflow.normalize`` is the public function of :mod:`nsgflow.api`.)
"""

from __future__ import annotations

import numpy as np
from astropy.io import fits

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


def normalize_frame(data: np.ndarray, scale: float, gradient: np.ndarray) -> np.ndarray:
    """Return ``scale * data - gradient`` as float32, never clipped; no-data pixels stay 0.

    Examples
    --------
    >>> import numpy as np
    >>> normalize_frame(np.array([[0.0, 2.0]]), 1.5, np.array([[1.0, 1.0]])).tolist()
    [[0.0, 2.0]]
    """
    out = np.empty(np.broadcast_shapes(np.shape(data), np.shape(gradient)), dtype=np.float32)
    data, gradient = np.broadcast_to(data, out.shape), np.broadcast_to(gradient, out.shape)
    for start in range(0, out.shape[0], 256):  # float64 arithmetic a block of rows at a time
        rows = slice(start, start + 256)
        out[rows] = np.float64(scale) * data[rows] - gradient[rows]
        np.copyto(out[rows], 0.0, where=data[rows] == 0)
    return out


def normalized_header(
    header: fits.Header,
    *,
    scale: float,
    scale_err: float,
    reference: str,
    history: list[str],
    extra: dict[str, str | float] | None = None,
) -> fits.Header:
    """Copy of the input header with the normalization's keywords and HISTORY added.

    ``extra`` may hold any of :data:`KEYWORDS` (weight, noise, transmission,
    version, hashes, settings digest).
    """
    out = header.copy()
    out["NSGSCALE"] = (scale, "NSG photometric scale m: T' = m*T - G")
    out["NSGSERR"] = (scale_err, "1-sigma uncertainty of NSGSCALE")
    out["NSGREF"] = (fits_text(reference), "NSG reference frame")
    for key, value in (extra or {}).items():
        out[key] = (value, KEYWORDS[key])
    for line in history:
        out.add_history(fits_text(line))
    return out
