"""The normalized frame T' = m*T - G and its header."""

from __future__ import annotations

import numpy as np
from astropy.io import fits

__all__ = ["normalize_frame", "normalized_header"]


def normalize_frame(data: np.ndarray, scale: float, gradient: np.ndarray) -> np.ndarray:
    """Return ``scale * data - gradient`` as float32, never clipped; no-data pixels stay 0.

    Examples
    --------
    >>> import numpy as np
    >>> normalize_frame(np.array([[0.0, 2.0]]), 1.5, np.array([[1.0, 1.0]])).tolist()
    [[0.0, 2.0]]
    """
    out = (np.float64(scale) * data - gradient).astype(np.float32)
    out[data == 0] = 0.0
    return out


def normalized_header(
    header: fits.Header,
    *,
    scale: float,
    scale_err: float,
    reference: str,
    history: list[str],
    provenance: dict[str, str] | None = None,
) -> fits.Header:
    """Copy of the input header with the normalization's keywords and HISTORY added.

    ``provenance`` may give ``NSGVER`` (package version), ``NSGHASH`` and
    ``NSGRHASH`` (SHA-256 of the frame and of the reference) and ``NSGSETT``
    (digest of the settings).
    """
    out = header.copy()
    out["NSGSCALE"] = (scale, "NSG photometric scale m: T' = m*T - G")
    out["NSGSERR"] = (scale_err, "1-sigma uncertainty of NSGSCALE")
    out["NSGREF"] = (reference, "NSG reference frame")
    comments = {
        "NSGVER": "nsgflow version",
        "NSGHASH": "SHA-256 of the input frame",
        "NSGRHASH": "SHA-256 of the reference frame",
        "NSGSETT": "digest of the settings (provenance.json)",
    }
    for key, value in (provenance or {}).items():
        out[key] = (value, comments[key])
    for line in history:
        out.add_history(line)
    return out
