import mmap
import stat
import warnings

import numpy as np
import pytest
from astropy.io import fits

from nsgflow.errors import FrameError
from nsgflow.io import (
    atomic_path,
    frame_name,
    read_fits,
    read_frame,
    read_lines,
    read_yaml,
    write_fits,
    write_lines,
)


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("a/b/m31_003.fits", "m31_003"),
        ("x.fit", "x"),
        ("x.FTS", "x"),
        ("m31.v2.fits.fz", "m31.v2"),
        ("dir/nebula 1.fits", "nebula 1"),
    ],
)
def test_frame_name(path, name):
    assert frame_name(path) == name


def test_read_scaled_integers(tmp_path):
    values = np.array([[0, 1000], [30000, 65535]], dtype=np.float64)
    hdu = fits.PrimaryHDU(values.copy())
    hdu.scale("int16", bzero=32768)
    hdu.writeto(tmp_path / "u16.fits")
    data, _ = read_frame(tmp_path / "u16.fits")
    assert data.dtype == np.float32
    np.testing.assert_array_equal(data, values)


def test_non_finite_pixels_become_no_data(tmp_path):
    fits.PrimaryHDU(np.array([[np.nan, 1.0], [np.inf, -np.inf]])).writeto(tmp_path / "nan.fits")
    data, _ = read_frame(tmp_path / "nan.fits")
    np.testing.assert_array_equal(data, [[0, 1], [0, 0]])


def test_compressed_frame(tmp_path):
    values = np.arange(64 * 64, dtype=np.float32).reshape(64, 64)
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(values, compression_type="GZIP_1")]).writeto(
        tmp_path / "c.fits.fz"
    )
    data, _ = read_frame(tmp_path / "c.fits.fz")
    np.testing.assert_array_equal(data, values)


def test_colour_frame_reads_channels_first_and_other_plane_counts_are_refused(tmp_path):
    rgb = np.arange(3 * 8 * 8, dtype=np.float32).reshape(3, 8, 8)
    fits.PrimaryHDU(rgb).writeto(tmp_path / "rgb.fits")
    np.testing.assert_array_equal(read_frame(tmp_path / "rgb.fits")[0], rgb)
    fits.PrimaryHDU(np.ones((4, 8, 8), np.float32)).writeto(tmp_path / "four.fits")
    with pytest.raises(FrameError, match=r"four.fits: image has shape \(4, 8, 8\); only mono"):
        read_frame(tmp_path / "four.fits")


def test_truncated_file_is_a_clear_error(tmp_path):
    fits.PrimaryHDU(np.ones((100, 100), np.float32)).writeto(tmp_path / "full.fits")
    (tmp_path / "cut.fits").write_bytes((tmp_path / "full.fits").read_bytes()[:5000])
    with pytest.raises(FrameError, match=r"cut.fits: cannot read"):
        read_frame(tmp_path / "cut.fits")


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.fits"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_write_fits_float32_with_checksum(tmp_path):
    write_fits(tmp_path / "o.fits", np.ones((4, 4)), fits.Header({"OBJECT": "M31"}))
    with fits.open(tmp_path / "o.fits", checksum=True) as hdul:
        assert hdul[0].data.dtype == np.dtype(">f4")
        assert hdul[0].header["OBJECT"] == "M31"
        assert "CHECKSUM" in hdul[0].header


def test_write_fits_writes_a_card_without_room_for_its_comment_whole_and_quietly(tmp_path):
    digest = "0123456789abcdef" * 4  # a SHA-256: 64 hex digits
    header = fits.Header([("NSGHASH", digest, "SHA-256 of the input frame"), ("NSGVER", "1.0", "version")])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # astropy warns when it cuts a comment
        write_fits(tmp_path / "o.fits", np.ones((2, 2)), header)
    written = fits.getheader(tmp_path / "o.fits")
    assert written["NSGHASH"] == digest and written.comments["NSGHASH"] == ""
    assert written.comments["NSGVER"] == "version"
    assert header.comments["NSGHASH"] == "SHA-256 of the input frame"  # the caller's header as it was


def test_write_fits_leaves_the_array_as_it_was(tmp_path):
    """The array is put in FITS byte order while written: afterwards it is unchanged, the file right."""
    data = np.arange(12, dtype=np.float32).reshape(3, 4) - 5.5
    before = data.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a wrong CHECKSUM or DATASUM is a warning in astropy
        write_fits(tmp_path / "o.fits", data)
        with fits.open(tmp_path / "o.fits", checksum=True) as hdul:
            np.testing.assert_array_equal(hdul[0].data, before)
    np.testing.assert_array_equal(data, before)
    assert data.dtype == np.float32 and data.flags.writeable


def test_outputs_get_the_usual_permissions(tmp_path):
    """Not the private 0600 of a temporary file: what the user's umask gives any new file."""
    write_fits(tmp_path / "p.fits", np.ones((2, 2)))
    (tmp_path / "plain").touch()
    assert stat.S_IMODE((tmp_path / "p.fits").stat().st_mode) == stat.S_IMODE(
        (tmp_path / "plain").stat().st_mode
    )


@pytest.mark.parametrize(
    ("dtype", "bzero", "bscale"),
    [
        ("uint8", None, None),
        ("int16", 32768, 1),
        ("int16", 0, None),
        ("int32", 0, 0.5),
        ("float32", None, None),
        ("float64", None, None),
    ],
)
def test_every_pixel_type_reads_as_float32(tmp_path, dtype, bzero, bscale):
    values = np.array([[0.0, 1.0, 2.0], [100.0, 200.0, 250.0]])
    hdu = fits.PrimaryHDU(values.astype(dtype) if bzero is None else values.copy())
    if bzero is not None:
        hdu.scale(dtype, bzero=bzero, bscale=bscale)
    hdu.writeto(tmp_path / "f.fits")
    assert (
        fits.getheader(tmp_path / "f.fits")["BITPIX"] == fits.PrimaryHDU(np.zeros(1, dtype)).header["BITPIX"]
    )
    data, _ = read_frame(tmp_path / "f.fits")
    assert data.dtype == np.float32 and data.dtype.isnative
    np.testing.assert_array_equal(data, values)


def test_xisf_round_trip_keeps_data_keywords_and_properties(tmp_path):
    from xisf import XISF

    from nsgflow.io import write_xisf

    values = np.arange(20, dtype=np.float32).reshape(4, 5)
    keywords = {
        "EXPTIME": [{"value": "120.0", "comment": "s"}],
        "OBJECT": [{"value": "'M31'", "comment": ""}],
        "CENTALT": [{"value": "65.5", "comment": "deg"}],
    }
    properties = {
        "Observation:Object:Name": {"id": "Observation:Object:Name", "type": "String", "value": "M31"}
    }
    XISF.write(
        str(tmp_path / "in.xisf"),
        values[:, :, None],
        "test",
        image_metadata={"FITSKeywords": keywords, "XISFProperties": properties},
    )
    data, header = read_frame(tmp_path / "in.xisf")
    np.testing.assert_array_equal(data, values)
    assert (header["EXPTIME"], header["OBJECT"], header["CENTALT"]) == (120.0, "M31", 65.5)
    assert (header["NAXIS1"], header["NAXIS2"]) == (5, 4)
    header["NSGSCALE"] = (1.25, "scale")
    write_xisf(tmp_path / "out.xisf", data * 2, header, properties)
    metadata: dict = {}
    out = XISF.read(str(tmp_path / "out.xisf"), image_metadata=metadata)
    np.testing.assert_array_equal(out[:, :, 0], values * 2)
    assert metadata["XISFProperties"]["Observation:Object:Name"]["value"] == "M31"
    _, header2 = read_frame(tmp_path / "out.xisf")
    assert (header2["NSGSCALE"], header2["OBJECT"], header2["EXPTIME"]) == (1.25, "M31", 120.0)


def test_colour_xisf_round_trip_keeps_channels(tmp_path):
    from xisf import XISF

    from nsgflow.io import write_xisf

    rgb = np.arange(3 * 4 * 5, dtype=np.float32).reshape(3, 4, 5)
    XISF.write(str(tmp_path / "in.xisf"), np.moveaxis(rgb, 0, -1), "test")  # XISF: channels last
    data, header = read_frame(tmp_path / "in.xisf")
    np.testing.assert_array_equal(data, rgb)
    assert (header["NAXIS"], header["NAXIS3"]) == (3, 3)
    write_xisf(tmp_path / "out.xisf", data * 2, header, {})
    np.testing.assert_array_equal(read_frame(tmp_path / "out.xisf")[0], rgb * 2)


def test_float32_pixels_read_from_where_astropy_says_they_start(tmp_path):
    from nsgflow.io import map_pixels, read_frame, read_shape

    values = np.arange(12 * 10, dtype=np.float32).reshape(12, 10)
    values[3, 4] = np.nan
    expected = np.nan_to_num(values, nan=0.0)  # no data is 0
    header = fits.Header()
    header["EXPTIME"] = (120.5, "s")
    header["OBJECT"] = "M31 'core'   "
    header["FLAG"] = False
    header["LONGSTR"] = "x" * 100  # continued on CONTINUE cards
    for i in range(40):  # a header of two 2880-byte blocks: the pixels start at 5760
        header[f"KEY{i:02d}"] = i
    fits.PrimaryHDU(values, header).writeto(tmp_path / "plain.fits")
    data, found = read_frame(tmp_path / "plain.fits")
    np.testing.assert_array_equal(data, expected)
    assert (found["EXPTIME"], found["OBJECT"], found["FLAG"]) == (120.5, "M31 'core'", False)
    assert found["LONGSTR"] == "x" * 100
    mapped, _ = map_pixels(tmp_path / "plain.fits")
    assert isinstance(mapped, np.memmap) and mapped.offset == 5760
    np.testing.assert_array_equal(np.nan_to_num(mapped, nan=0.0), expected)
    assert read_shape(tmp_path / "plain.fits") == (12, 10)
    # integers, scaling and gzip are read by astropy; an extension's float32 pixels are mapped
    hdu = fits.PrimaryHDU(expected.copy())  # scale() changes its array
    hdu.scale("int16", bzero=32768)
    hdu.writeto(tmp_path / "scaled.fits")
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(values)]).writeto(tmp_path / "ext.fits")
    fits.PrimaryHDU(values).writeto(tmp_path / "z.fits.gz")
    for name, is_mapped in (("scaled.fits", False), ("ext.fits", True), ("z.fits.gz", False)):
        data, found = read_frame(tmp_path / name)
        np.testing.assert_array_equal(data, expected)
        mapped, _ = map_pixels(tmp_path / name)
        assert isinstance(mapped, np.memmap) == is_mapped, name
        np.testing.assert_array_equal(np.nan_to_num(mapped, nan=0.0), expected)
    (tmp_path / "cut.fits").write_bytes((tmp_path / "plain.fits").read_bytes()[:6000])
    for reader in (read_frame, map_pixels):
        with pytest.raises(FrameError, match=r"cut.fits: cannot read the image data"):
            reader(tmp_path / "cut.fits")


def test_read_fits_maps_what_write_fits_wrote_as_stored(tmp_path):
    pixels = np.array([[[1.0, np.nan], [3.0, 4.0]], [[5.0, 6.0], [7.0, 8.0]]], dtype=np.float32)
    write_fits(tmp_path / "pair.fits", pixels, fits.Header([("NSGTEST", 7, "a keyword")]))
    data, header = read_fits(tmp_path / "pair.fits")
    assert isinstance(data.base.base, mmap.mmap)  # mapped, not read whole
    assert data.dtype == np.dtype(">f4")
    np.testing.assert_array_equal(data, pixels)  # NaN kept: the pixels as they are in the file
    assert header["NSGTEST"] == 7


def test_lines_round_trip_without_empty_lines(tmp_path):
    write_lines(tmp_path / "list.txt", ["a.fits", "dir/b c.fits"])
    assert (tmp_path / "list.txt").read_text() == "a.fits\ndir/b c.fits\n"
    assert read_lines(tmp_path / "list.txt") == ["a.fits", "dir/b c.fits"]
    write_lines(tmp_path / "empty.txt", [])
    assert read_lines(tmp_path / "empty.txt") == []


def test_read_yaml_of_an_empty_file_is_none(tmp_path):
    (tmp_path / "empty.yaml").write_text("")
    (tmp_path / "some.yaml").write_text("gradient:\n  smoothness: 1.5\n")
    assert read_yaml(tmp_path / "empty.yaml") is None
    assert read_yaml(tmp_path / "some.yaml") == {"gradient": {"smoothness": 1.5}}
