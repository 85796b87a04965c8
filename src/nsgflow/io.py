"""Reading frames and writing every output atomically.

All file access of the package lives here. Outputs are written to a temporary
file in the destination folder and renamed into place, so an interrupted job
never leaves a half-written file that looks finished.

Pixel convention: arrays are indexed ``[y, x]``; catalog positions are 0-based
with (0, 0) at the centre of the first pixel (FITS is 1-based).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from astropy.io import fits

from nsgflow.channels import unsupported_shape
from nsgflow.errors import FrameError

__all__ = [
    "FRAME_SUFFIXES",
    "atomic_path",
    "clean_frame",
    "fits_text",
    "frame_name",
    "is_xisf",
    "read_frame",
    "read_header",
    "read_json",
    "write_csv",
    "write_fits",
    "write_json",
    "write_xisf",
]

#: The process's file-creation mask (read once: reading it means setting it).
_UMASK = os.umask(0o022)
os.umask(_UMASK)

#: File name endings recognised as frames (FITS, tile-compressed FITS, PixInsight XISF), longest first.
FRAME_SUFFIXES = (".fits.fz", ".fit.fz", ".fts.fz", ".fits", ".fit", ".fts", ".xisf")


def frame_name(path: str | os.PathLike) -> str:
    """Return the frame's name: its file name without the FITS extension.

    Examples
    --------
    >>> frame_name("data/night1/m31_003.fits")
    'm31_003'
    >>> frame_name("m31.v2.fits.fz")
    'm31.v2'
    """
    name = Path(path).name
    for suffix in FRAME_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def fits_text(text: str) -> str:
    r"""Make text safe for a FITS header value (printable ASCII), escaping other characters.

    Examples
    --------
    >>> fits_text("nébuleuse 01.fits")
    'n\\xe9buleuse 01.fits'
    """
    return "".join(c if " " <= c <= "~" else c.encode("unicode_escape").decode("ascii") for c in text)


def _image_hdu(hdul: fits.HDUList, path: str | os.PathLike) -> fits.hdu.base.ExtensionHDU:
    for hdu in hdul:
        if hdu.is_image and hdu.header.get("NAXIS", 0) >= 2:
            return hdu
    raise FrameError(f"{path}: no image data found in any HDU; is this a light frame?")


def is_xisf(path: str | os.PathLike) -> bool:
    """True for a PixInsight XISF file (by its name)."""
    return str(path).lower().endswith(".xisf")


def _fits_value(text: str) -> str | int | float | bool:
    """An XISF FITSKeyword value (always text) as the FITS value it stands for."""
    text = text.strip()
    if text in ("T", "F"):
        return text == "T"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text.strip("'").strip()


def _xisf_header(metadata: dict) -> fits.Header:
    """A FITS header from an XISF image's metadata: its FITS keywords and its shape as NAXISn."""
    width, height, channels = metadata["geometry"]
    header = fits.Header()
    header["NAXIS"] = 2 if channels == 1 else 3
    header["NAXIS1"], header["NAXIS2"] = width, height
    if channels != 1:
        header["NAXIS3"] = channels
    for key, values in metadata.get("FITSKeywords", {}).items():
        if key in ("SIMPLE", "BITPIX", "EXTEND") or key.startswith("NAXIS"):
            continue
        for item in values:
            text = item["comment"] or item["value"]
            try:
                if key == "HISTORY":
                    header.add_history(text)
                elif key == "COMMENT":
                    header.add_comment(text)
                else:
                    header[key] = (_fits_value(item["value"]), item.get("comment", ""))
            except ValueError:  # a keyword or value FITS cannot hold: leave it out
                continue
    return header


def read_header(path: str | os.PathLike) -> fits.Header:
    """Read the header of a frame's image without reading its pixels (FITS, or XISF's FITS keywords)."""
    try:
        if is_xisf(path):
            from xisf import XISF

            return _xisf_header(XISF(str(path)).get_images_metadata()[0])
        with fits.open(path, memmap=False) as hdul:
            return _image_hdu(hdul, path).header.copy()
    except FrameError:
        raise
    except Exception as exc:  # astropy raises many types for damaged files
        raise FrameError(f"{path}: cannot read the header ({exc}); is the file complete?") from exc


def read_frame(path: str | os.PathLike) -> tuple[np.ndarray, fits.Header]:
    """Read a mono or colour frame as float32, with non-finite pixels set to 0 (no data).

    Parameters
    ----------
    path : path-like
        FITS file (``.fits``, ``.fit``, ``.fts``, tile-compressed ``.fz``);
        integer data are scaled by BZERO/BSCALE.

    Returns
    -------
    data : numpy.ndarray, shape (ny, nx) or (3, ny, nx), float32
        Pixel values, colour channels first; 0 marks "no data" (registration
        borders, NaN, inf).
    header : astropy.io.fits.Header
        The image HDU's header.

    Raises
    ------
    FrameError
        The file cannot be read, holds no image, or is neither mono nor 3-channel colour.
    """
    try:
        if is_xisf(path):
            from xisf import XISF

            metadata: dict = {}
            data = np.moveaxis(
                XISF.read(str(path), image_metadata=metadata), -1, 0
            )  # channels first, as FITS
            header = _xisf_header(metadata)
        else:
            with fits.open(path, memmap=False) as hdul:
                hdu = _image_hdu(hdul, path)
                data = np.asarray(hdu.data)
                header = hdu.header.copy()
    except FrameError:
        raise
    except Exception as exc:
        raise FrameError(f"{path}: cannot read the image data ({exc}); is the file complete?") from exc
    if data.ndim == 3 and data.shape[0] == 1:
        data = data[0]
    if unsupported_shape(data.shape):
        raise FrameError(f"{path}: {unsupported_shape(data.shape)}")
    return clean_frame(data), header


def clean_frame(data: np.ndarray) -> np.ndarray:
    """Return a float32 copy in native byte order with non-finite pixels set to 0 (no data)."""
    data = np.asarray(data).astype(np.float32)
    data[~np.isfinite(data)] = 0.0
    return data


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    The temporary file is removed if the block raises, so ``path`` either holds
    a complete file or does not exist.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes the file private; outputs get the usual permissions
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_fits(path: str | os.PathLike, data: np.ndarray, header: fits.Header | None = None) -> None:
    """Write ``data`` as a float32 primary HDU with checksums, atomically.

    The CHECKSUM and DATASUM cards carry a fixed comment instead of astropy's
    time stamp, so the same data and header give the same bytes on every run.
    """
    hdu = fits.PrimaryHDU(np.asarray(data, dtype=np.float32), header=header)
    for key in ("BZERO", "BSCALE", "BLANK"):
        hdu.header.remove(key, ignore_missing=True)
    hdu.add_checksum(when="nsgflow")
    with atomic_path(path) as tmp:
        hdu.writeto(tmp, overwrite=True, checksum=False)


def write_xisf(path: str | os.PathLike, data: np.ndarray, header: fits.Header, properties: dict) -> None:
    """Write a float32 image (mono, or colour channels first) as XISF with the header's keywords and
    XISF ``properties``, atomically."""
    from xisf import XISF

    keywords: dict[str, list[dict]] = {}
    for card in header.cards:
        if card.keyword in (
            "",
            "SIMPLE",
            "BITPIX",
            "EXTEND",
            "CHECKSUM",
            "DATASUM",
        ) or card.keyword.startswith("NAXIS"):
            continue
        value = card.value
        text = (
            ("T" if value else "F")
            if isinstance(value, bool)
            else (
                f"'{value}'"
                if isinstance(value, str) and card.keyword not in ("HISTORY", "COMMENT")
                else str(value)
            )
        )
        if card.keyword in ("HISTORY", "COMMENT"):
            keywords.setdefault(card.keyword, []).append({"value": "", "comment": str(value)})
        else:
            keywords.setdefault(card.keyword, []).append({"value": text, "comment": card.comment})
    metadata = {"FITSKeywords": keywords, "XISFProperties": properties}
    with atomic_path(path) as tmp:
        pixels = np.asarray(data, np.float32)
        pixels = np.moveaxis(pixels, 0, -1) if pixels.ndim == 3 else pixels[:, :, None]  # XISF: channels last
        XISF.write(str(tmp), pixels, "nsgflow", image_metadata=metadata)


def write_csv(path: str | os.PathLike, table: pd.DataFrame) -> None:
    """Write a table as CSV (fixed float format, no index), atomically."""
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.10g")


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file written by :func:`write_json`."""
    return json.loads(Path(path).read_text())
