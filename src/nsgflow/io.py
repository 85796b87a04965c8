"""Reading and writing nsgflow's files, every output atomically.

The files nsgflow reads and writes (frames, tables, JSON and YAML records,
lists of lines, pages) are read and written here; locks, logs and the hashing
of a file's bytes for provenance stay with the code they serve, and graphs are
saved by the libraries that draw them into :func:`atomic_path`. Outputs are
written to a temporary file in the destination folder and renamed into place,
so an interrupted job never leaves a half-written file that looks finished.

Pixel convention: arrays are indexed ``[y, x]``; catalog positions are 0-based
with (0, 0) at the centre of the first pixel (FITS is 1-based).
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import socket
import sys
import tempfile
import warnings
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import yaml

from nsgflow.channels import unsupported_shape
from nsgflow.errors import FrameError

if TYPE_CHECKING:
    from astropy.io import fits  # imported where used: importing nsgflow does without it

__all__ = [
    "FRAME_SUFFIXES",
    "atomic_path",
    "clean_frame",
    "fits_text",
    "frame_name",
    "header_shape",
    "is_xisf",
    "map_pixels",
    "read_fits",
    "read_frame",
    "read_header",
    "read_json",
    "read_lines",
    "read_shape",
    "read_table",
    "read_yaml",
    "remove_stale_temporaries",
    "write_csv",
    "write_fits",
    "write_json",
    "write_lines",
    "write_text",
    "write_xisf",
]

#: The process's file-creation mask (read once: reading it means setting it).
_UMASK = os.umask(0o022)
os.umask(_UMASK)

#: This machine's name, in the names of the temporary files :func:`atomic_path` makes.
_HOST = socket.gethostname()

#: A temporary file of :func:`atomic_path`: ``.{name}.nsgflow-{host}-{pid}-{8 random characters}.tmp``.
_TEMPORARY = re.compile(r"\..+\.nsgflow-(?P<host>.+)-(?P<pid>\d+)-\w{8}\.tmp")

#: errno values of a full disk or an exhausted quota.
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)

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
    from astropy.io import fits

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


def _fits_image_header(path: str | os.PathLike) -> tuple[fits.Header, int | None]:
    """The header of a FITS file's image HDU and where its float32 pixels start (:func:`_float32_offset`)."""
    from astropy.io import fits

    try:
        with fits.open(path, memmap=False) as hdul:  # HDUs are loaded lazily: only up to the image's header
            hdu = _image_hdu(hdul, path)
            return hdu.header, _float32_offset(hdu)
    except FrameError:
        raise
    except Exception as exc:  # astropy raises many types for damaged files
        raise FrameError(f"{path}: cannot read the header ({exc}); is the file complete?") from exc


def read_header(path: str | os.PathLike) -> fits.Header:
    """Read the header of a frame's image without reading its pixels (FITS, or XISF's FITS keywords)."""
    if not is_xisf(path):
        return _fits_image_header(path)[0]
    from xisf import XISF

    try:
        return _xisf_header(XISF(str(path)).get_images_metadata()[0])
    except Exception as exc:
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
    from astropy.io import fits

    fresh = None  # the pixels as read by _read_float32: native float32, ours to clean in place
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
                header = hdu.header
                offset = _float32_offset(hdu)
                if offset is None:
                    data = np.asarray(hdu.data)
                else:
                    data = fresh = _read_float32(path, offset, header_shape(header))
    except FrameError:
        raise
    except Exception as exc:
        raise FrameError(f"{path}: cannot read the image data ({exc}); is the file complete?") from exc
    if data.ndim == 3 and data.shape[0] == 1:
        data = data[0]
    if unsupported_shape(data.shape):
        raise FrameError(f"{path}: {unsupported_shape(data.shape)}")
    return (clean_frame(data) if fresh is None else _cleaned(data)), header


def _float32_offset(hdu: fits.hdu.base.ExtensionHDU) -> int | None:
    """Where the pixels of an uncompressed, unscaled float32 image HDU start in its file; None for any
    other kind of HDU (integers, scaling, tile or gzip compression), whose pixels astropy reads."""
    from astropy.io import fits

    header = hdu.header
    info = hdu.fileinfo()
    if (
        type(hdu) not in (fits.PrimaryHDU, fits.ImageHDU)
        or header.get("BITPIX") != -32
        or header.get("BSCALE", 1) != 1
        or header.get("BZERO", 0) != 0
        or info is None
        or getattr(info["file"], "compression", None)
    ):
        return None
    return info["datLoc"]


def _read_float32(path: str | os.PathLike, offset: int, shape: tuple[int, ...]) -> np.ndarray:
    """Float32 pixels in FITS byte order from ``offset`` of a file, read straight into one native array.

    astropy would hold the file's big-endian array and a native copy at the same
    time; this reads the bytes into the array that is returned and swaps them in
    place, so a frame costs its own size in memory once.
    """
    count = int(np.prod(shape))
    with open(path, "rb") as handle:
        handle.seek(offset)
        data = np.fromfile(handle, dtype=">f4", count=count)
    if data.size != count:
        raise FrameError(f"{path}: cannot read the image data (the file ends early); is the file complete?")
    data.byteswap(inplace=True)
    return data.view(np.float32).reshape(shape)


def header_shape(keywords: Mapping[str, Any]) -> tuple[int, ...]:
    """The image shape, numpy order (e.g. ``(ny, nx)``), that a header's NAXIS keywords give."""
    return tuple(int(keywords[f"NAXIS{i}"]) for i in range(int(keywords["NAXIS"]), 0, -1))


def read_shape(path: str | os.PathLike) -> tuple[int, ...]:
    """The shape of a frame's image, numpy order (e.g. ``(ny, nx)``), without reading its pixels."""
    return header_shape(read_header(path))


def map_pixels(path: str | os.PathLike) -> tuple[np.ndarray, fits.Header]:
    """A frame's pixels mapped from the file (read only as they are used) and its header.

    For a mono FITS image of uncompressed, unscaled float32 pixels the array is
    a read-only memory map in the file's byte order, with non-finite pixels as
    they are: pass what is used through :func:`clean_frame`. Other frames are
    read whole by :func:`read_frame`.
    """
    if is_xisf(path):
        return read_frame(path)
    header, offset = _fits_image_header(path)
    shape = header_shape(header)
    if offset is None or len(shape) != 2 or os.path.getsize(path) < offset + 4 * math.prod(shape):
        return read_frame(path)  # its errors for colour frames and short files
    return np.memmap(path, dtype=">f4", mode="r", offset=offset, shape=shape), header


def read_fits(path: str | os.PathLike) -> tuple[np.ndarray, fits.Header]:
    """The pixels and header of a FITS file's primary HDU, as :func:`write_fits` wrote them.

    The pixels are mapped from the file (read only as they are used), in FITS
    byte order, with non-finite values as they are: this reads nsgflow's own
    outputs (normalized frames, blink thumbnails), while frames to normalize
    are read by :func:`read_frame`.
    """
    from astropy.io import fits

    return fits.getdata(path, header=True, memmap=True)


def clean_frame(data: np.ndarray) -> np.ndarray:
    """Return a C-contiguous float32 copy in native byte order with non-finite pixels set to 0 (no data).

    Any array layout is accepted (Fortran order, transposed, strided views);
    the stages need C order (sep, for one, refuses anything else).
    """
    return _cleaned(np.array(data, dtype=np.float32, order="C"))


def _cleaned(data: np.ndarray) -> np.ndarray:
    """Set the non-finite pixels of a native float32 array to 0, in place; return it."""
    if data.size and np.isfinite(data.min()) and np.isfinite(data.max()):
        return data  # NaN or inf would show in the extremes: nothing to clean
    bad = ~np.isfinite(data)
    if bad.any():
        data[bad] = 0.0
    return data


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    The temporary file is removed if the block raises, so ``path`` either holds
    a complete file or does not exist. Its name carries this machine's name
    and this process's id, so that one a killed process left behind can be
    told from one being written (:func:`remove_stale_temporaries`). A full
    disk's error names ``path`` when the system call that failed did not.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.nsgflow-{_HOST}-{os.getpid()}-", suffix=".tmp", dir=path.parent
    )
    os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes the file private; outputs get the usual permissions
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        if exc.errno in NO_SPACE and exc.filename is None:  # write() and close() name no file
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_stale_temporaries(folder: str | os.PathLike) -> int:
    """Remove the temporary files of :func:`atomic_path` under ``folder`` whose process has ended.

    A killed job leaves its temporary file behind (often empty). Only files
    named by :func:`atomic_path`, made on this machine by a process that no
    longer runs, are removed. Returns how many were.
    """
    removed = 0
    for root, _, names in os.walk(folder):
        for name in names:
            match = _TEMPORARY.fullmatch(name)
            if match and match["host"] == _HOST and not _running(int(match["pid"])):
                Path(root, name).unlink(missing_ok=True)
                removed += 1
    return removed


def _running(pid: int) -> bool:
    """True if a process with this id runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it runs, as another user
        pass
    return True


def _drop_comments_without_room(header: fits.Header) -> None:
    """Empty, in place, each comment astropy would cut short to fit its card."""
    from astropy.io.fits.verify import VerifyWarning

    with warnings.catch_warnings():
        warnings.simplefilter("error", VerifyWarning)  # "Card is too long, comment will be truncated"
        for index, card in enumerate(header.cards):
            try:
                card.image  # noqa: B018 (formatting the card is the test)
            except VerifyWarning:
                header.comments[index] = ""


def write_fits(path: str | os.PathLike, data: np.ndarray, header: fits.Header | None = None) -> None:
    """Write ``data`` as a float32 primary HDU with checksums, atomically.

    The CHECKSUM and DATASUM cards carry a fixed comment instead of astropy's
    time stamp, so the same data and header give the same bytes on every run.
    A float32 ``data`` is put in FITS byte order in place while it is written
    and restored after (astropy would swap it twice, once for the checksum
    and once to write, each time there and back). A card with no room for its
    comment (a SHA-256 fills one) is written without it, whole and without
    astropy's "Card is too long" warning; the caller's header is not changed.
    """
    from astropy.io import fits

    array = np.asarray(data, dtype=np.float32)  # in the machine's byte order
    swap = sys.byteorder == "little"
    if swap and not array.flags.writeable:
        array = array.copy()
    if swap:
        array.byteswap(inplace=True)
    try:
        hdu = fits.PrimaryHDU(array.view(">f4"), header=header)
        for key in ("BZERO", "BSCALE", "BLANK"):
            hdu.header.remove(key, ignore_missing=True)
        _drop_comments_without_room(hdu.header)
        hdu.add_checksum(when="nsgflow")
        with atomic_path(path) as tmp:
            hdu.writeto(tmp, overwrite=True, checksum=False)
    finally:
        if swap:
            array.byteswap(inplace=True)


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


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read a table written by :func:`write_csv`."""
    return pd.read_csv(path)


def write_csv(path: str | os.PathLike, table: pd.DataFrame) -> None:
    """Write a table as CSV (fixed float format, no index), atomically.

    The bytes are those of ``table.to_csv(index=False, float_format="%.10g")``;
    tables of plain numbers, booleans and text that needs no quoting are
    formatted here, as pandas takes about 2.5 times as long (0.28 s for a
    20000-star catalog, 0.12 s for a 6000x4000 frame's samples).
    """
    text = _csv_text(table)
    if text is not None:
        write_text(path, text)
        return
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.10g")


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to a file, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_lines(path: str | os.PathLike, lines: Iterable[str]) -> None:
    """Write a list of lines (names, paths), each ended by a newline, atomically."""
    write_text(path, "".join(f"{line}\n" for line in lines))


def read_lines(path: str | os.PathLike) -> list[str]:
    """The lines of a file written by :func:`write_lines`, without their ends; empty ones are left out."""
    return [line for line in Path(path).read_text().splitlines() if line]


#: Characters that make the csv module quote a field.
_CSV_SPECIAL = frozenset(',"\r\n')


def _csv_text(table: pd.DataFrame) -> str | None:
    """What :func:`write_csv` writes for ``table``, or None when pandas must format it (NaN text, quoting).

    Examples
    --------
    >>> import io
    >>> t = pd.DataFrame({"x": [1.5, np.nan, -0.0, 1e-300], "y": [np.inf, 2 / 3, 1e17, -12.0],
    ...                   "n": [1, 2, 3, 4], "ok": [True, False, True, True], "s": ["a", "b", "c", "d e"]})
    >>> buffer = io.StringIO()
    >>> t.to_csv(buffer, index=False, float_format="%.10g")
    >>> _csv_text(t) == buffer.getvalue()
    True
    >>> _csv_text(pd.DataFrame({"s": ["a,b"]})) is None
    True
    """
    names = [str(c) for c in table.columns]
    if any(_CSV_SPECIAL.intersection(n) for n in names) or len(names) < 2:
        return None
    columns = []
    for _, series in table.items():
        kind = series.dtype.kind if isinstance(series.dtype, np.dtype) else None
        values = series.to_numpy().tolist() if kind in ("f", "i", "u", "b") else None
        if kind == "f":
            columns.append(["" if v != v else format(v, ".10g") for v in values])
        elif kind in ("i", "u"):
            columns.append([str(v) for v in values])
        elif kind == "b":
            columns.append(["True" if v else "False" for v in values])
        else:
            text = series.to_numpy(dtype=object).tolist()
            if not all(type(v) is str and not _CSV_SPECIAL.intersection(v) for v in text):
                return None
            columns.append(text)
    return ",".join(names) + "\n" + "".join(",".join(row) + "\n" for row in zip(*columns, strict=True))


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON, atomically."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file written by :func:`write_json`."""
    return json.loads(Path(path).read_text())


def read_yaml(path: str | os.PathLike) -> Any:
    """Read a YAML file; None for an empty one.

    Raises
    ------
    OSError
        The file cannot be read.
    UnicodeDecodeError
        It is not text.
    yaml.YAMLError
        It is not YAML.
    """
    return yaml.safe_load(Path(path).read_text())
