"""Photometry of matched stars that holds whatever the two frames' star profiles.

Each frame's stars have a profile of their own: frames of one night differ in
width, wings and elongation. A fixed aperture measures a profile-dependent
fraction of a star's light, so the same aperture on two frames biases their
flux ratio. So each frame's brightest stars are fitted, pixel by pixel with
their neighbours' pixels left out, with one elliptical Moffat profile of the
frame's own width, beta and elongation (:mod:`nsgflow.profiles`); each frame is
then convolved with the *other* frame's profile (:func:`psf_matched_photometry`),
which gives both frames' stars the same profile, and measured in one aperture
at the same positions, with a plane through a background annulus, neighbours
left out (:mod:`nsgflow.neighbours`). What the aperture misses is then the
same on both; neighbours and nebulosity, the same light on both frames, cancel
in the ratio. What the fitted profiles do not know is the scale's model
uncertainty (:func:`nsgflow.profiles.profile_error`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import sep

from nsgflow.cores import rebuilt_cores, saturated_positions
from nsgflow.defects import Defects, defects_replaced, pixels_replaced
from nsgflow.detect import StarFlag
from nsgflow.errors import FrameError
from nsgflow.gradient import kernel_spectrum
from nsgflow.neighbours import annulus_background, mask_noise, neighbour_mask, plane_fit
from nsgflow.profiles import (
    HLR_PER_FWHM,
    frame_profile,
    frame_profile_fits,
    on_smooth_sky,
    profile_covariance,
    profile_error,
    psf_image,
)

__all__ = [
    "aperture_photometry",
    "frame_hlr",
    "measure_photometry",
    "psf_matched_photometry",
]

#: Noise sigmas out to which detected neighbours' pixels are left out of a star's profile fit
#: (:func:`nsgflow.profiles.profile_fits`) when ``neighbour_mask_sigma`` is 0 (annuli keep every pixel).
PROFILE_MASK_SIGMA = 2.0


def frame_hlr(catalog: pd.DataFrame, stars: int = 200) -> float:
    """Median half-light radius (px) of the brightest clean stars of a catalog (any star if none is clean).

    NaN when no star has a finite, positive half-light radius.
    """
    measured = catalog[np.isfinite(catalog["hlr_px"]) & (catalog["hlr_px"] > 0)]
    clean = measured[measured["flags"] == 0]
    chosen = clean if len(clean) else measured
    return float(np.median(chosen.nlargest(stars, "flux")["hlr_px"])) if len(chosen) else float("nan")


def aperture_photometry(
    data: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    radius: float,
    annulus: tuple[float, float],
    *,
    mask: np.ndarray | None = None,
    own_radius: np.ndarray | None = None,
    noise: float | None = None,
    plane: bool = False,
) -> pd.DataFrame:
    """Background-subtracted flux in a circular aperture, with its error.

    ``mask`` and ``own_radius``: neighbours' pixels left out of the annulus
    (:func:`nsgflow.neighbours.annulus_background`). ``noise``: the per-pixel
    noise of the error, if not the annulus's scatter.

    Returns
    -------
    pandas.DataFrame
        Columns ``flux, flux_err, bkg, bkg_sigma`` and ``nodata`` (True when the
        aperture reaches a no-data pixel or the frame edge).
    """
    x = np.ascontiguousarray(x, dtype=np.float64)
    y = np.ascontiguousarray(y, dtype=np.float64)
    bkg, bkg_sigma, n_ann = annulus_background(
        data, x, y, *annulus, mask=mask, own_radius=own_radius, plane=plane
    )
    total, _, flag = sep.sum_circle(data, x, y, radius, subpix=0)
    nodata = data == 0
    if nodata.any():  # sep sums the mask's bytes as they are: no frame-sized float copy
        holes, _, _ = sep.sum_circle(nodata.view(np.uint8), x, y, radius, subpix=0)
    else:
        holes = np.zeros(len(x))
    del nodata
    area = np.pi * radius**2
    flux = total - bkg * area
    pixel_sigma = bkg_sigma if noise is None else noise
    var = area * pixel_sigma**2 * (1 + area * np.pi / (2 * np.maximum(n_ann, 1)))
    nodata = (holes > 0) | ((flag & sep.APER_TRUNC) != 0) | ~np.isfinite(bkg)
    return pd.DataFrame(
        {"flux": flux, "flux_err": np.sqrt(var), "bkg": bkg, "bkg_sigma": bkg_sigma, "nodata": nodata}
    )


def _stamps(data: np.ndarray, ix: np.ndarray, iy: np.ndarray, half: int) -> np.ndarray:
    """Square cut-outs of (2 half + 1)**2 pixels centred on pixels ``ix, iy``; 0 beyond the frame."""
    from numpy.lib.stride_tricks import sliding_window_view

    ny, nx = data.shape
    side = 2 * half + 1
    inside = (ix >= half) & (ix < nx - half) & (iy >= half) & (iy < ny - half)
    stamps = np.zeros((len(ix), side, side), dtype=data.dtype)
    if ny >= side and nx >= side:
        windows = sliding_window_view(data, (side, side))
        stamps[inside] = windows[iy[inside] - half, ix[inside] - half]
    offsets = np.arange(-half, half + 1)
    for k in np.flatnonzero(~inside):
        rows, cols = iy[k] + offsets, ix[k] + offsets
        rows_in, cols_in = (rows >= 0) & (rows < ny), (cols >= 0) & (cols < nx)
        stamps[k][np.ix_(rows_in, cols_in)] = data[np.ix_(rows[rows_in], cols[cols_in])]
    return stamps


#: Share of a convolved pixel's kernel that may fall on pixels without data before the pixel counts
#: as without data itself (:func:`psf_matched_photometry`; those pixels hold their cut-out's median).
MAX_MISSING_WEIGHT = 0.01


def _convolved_stamps(
    data: np.ndarray, ix: np.ndarray, iy: np.ndarray, kernel: np.ndarray, reach: int
) -> tuple[np.ndarray, np.ndarray]:
    """Cut-outs of ``data`` convolved with ``kernel``, (2 reach + 1)**2 pixels, and where they lack data.

    Each cut-out reaches the kernel's radius further and is convolved by FFT
    in single precision, circularly: the wrap-around never reaches the middle
    that is kept. Pixels without data (0, or beyond the frame) hold their
    cut-out's median; a convolved pixel lacks data where more than
    :data:`MAX_MISSING_WEIGHT` of its kernel fell on them.
    """
    from scipy import fft

    k = kernel.shape[0] // 2
    side = fft.next_fast_len(2 * (reach + k) + 1, real=True)
    spectrum = kernel_spectrum(kernel, (side, side))
    convolved = np.empty((len(ix), 2 * reach + 1, 2 * reach + 1))
    lost = np.zeros(convolved.shape, bool)
    for start in range(0, len(ix), STAMP_CHUNK):  # a few at a time: the cut-outs are large
        pick = slice(start, start + STAMP_CHUNK)
        convolved[pick], lost[pick] = _convolved_chunk(data, ix[pick], iy[pick], spectrum, reach)
    return convolved, lost


#: Cut-outs convolved at once by :func:`_convolved_stamps`.
STAMP_CHUNK = 64


def _convolved_chunk(
    data: np.ndarray, ix: np.ndarray, iy: np.ndarray, spectrum: np.ndarray, reach: int
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_convolved_stamps` of a few cut-outs, with the kernel's ``spectrum`` (rfft2, circular)."""
    from scipy import fft

    side = spectrum.shape[0]
    half = (side - 1) // 2
    stamps = _stamps(data, ix, iy, half).astype(np.float32)
    missing = stamps == 0
    if stamps.shape[1] < side:  # an even side: the extra row and column lie beyond the kept pixels' reach
        stamps = np.pad(stamps, ((0, 0), (0, 1), (0, 1)))
        missing = np.pad(missing, ((0, 0), (0, 1), (0, 1)))
    lost = np.zeros((len(ix), 2 * reach + 1, 2 * reach + 1), bool)
    centre = slice(half - reach, half + reach + 1)
    rows = np.flatnonzero(missing.any(axis=(1, 2)))
    for row in rows:
        present = stamps[row][~missing[row]]
        stamps[row][missing[row]] = np.median(present) if len(present) else 0.0
    if len(rows):
        spread = fft.irfft2(fft.rfft2(missing[rows].astype(np.float32)) * spectrum, s=(side, side))
        lost[rows] = spread[:, centre, centre] > MAX_MISSING_WEIGHT
    convolved = fft.irfft2(fft.rfft2(stamps) * spectrum, s=(side, side))
    return convolved[:, centre, centre].astype(np.float64), lost


def psf_matched_photometry(
    frames: Sequence[np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
    kernels: Sequence[np.ndarray],
    radius: float,
    annulus: tuple[float, float],
    noise: Sequence[float],
    *,
    mask: np.ndarray | None = None,
    own_radius: np.ndarray | None = None,
) -> tuple[list[pd.DataFrame], np.ndarray]:
    """Aperture photometry of two frames, each convolved with the other's star profile (``kernels``).

    Convolved so, both frames' stars have one profile, so one aperture
    measures the same fraction of every star's light on both, whatever their
    profiles, and neighbours and nebulosity add the same light to both: the
    stars are measured at the same positions ``x, y`` with the same pixels,
    and the background is a least-squares plane through the annulus, the
    neighbours of ``mask`` left out
    (:func:`nsgflow.neighbours.annulus_background`). Only cut-outs around the
    stars are convolved (:func:`_convolved_stamps`).
    ``noise`` holds each frame's per-pixel noise before convolution (which
    smooths the annulus but hardly the aperture's sum), for the flux errors.

    Convolved to one profile, the two frames differ around a star only by
    the scale, the smooth background difference and noise; where they differ
    by more (a satellite trail or a saturated star's spill in one frame, a
    cosmic ray's halo), the star's fluxes do too.
    ``disagreement`` measures it (:func:`_disagreement`).

    Returns
    -------
    tables : list of two pandas.DataFrame
        As :func:`aperture_photometry`; ``nodata`` where the aperture of either
        convolved frame lacks data.
    disagreement : numpy.ndarray, shape (n,)
        Per star, the scatter of the two convolved frames' difference in its
        annulus, the first frame less the median flux ratio times the second,
        about a plane, over the median star's (NaN where no annulus pixel).
    """
    reach = int(np.ceil(annulus[1])) + 1
    side = 2 * reach + 1
    ix, iy = np.rint(x).astype(np.int64), np.rint(y).astype(np.int64)
    convolved, lost = zip(
        *(
            _convolved_stamps(data, ix, iy, kernel, reach)
            for data, kernel in zip(frames, kernels, strict=True)
        ),
        strict=True,
    )
    lacking = np.logical_or(*lost)  # the same pixels left out of both frames
    stack = np.arange(len(x)) * side + reach
    stamp_mask = None if mask is None else _stamps(mask, ix, iy, reach).reshape(-1, side)
    tables = [
        aperture_photometry(
            np.ascontiguousarray(np.where(lacking, 0.0, image).reshape(-1, side)),
            reach + x - ix,
            stack + y - iy,
            radius,
            annulus,
            mask=stamp_mask,
            own_radius=own_radius,
            noise=frame_noise,
            plane=True,
        )
        for image, frame_noise in zip(convolved, noise, strict=True)
    ]
    fluxes = [table["flux"].to_numpy() for table in tables]
    with_data = (fluxes[0] > 0) & (fluxes[1] > 0) & ~tables[0]["nodata"].to_numpy()
    ratio = float(np.median(fluxes[0][with_data] / fluxes[1][with_data])) if with_data.any() else 1.0
    scatter = _disagreement(convolved, ratio, (x - ix, y - iy), annulus, ~lacking, stamp_mask, own_radius)
    typical = np.nanmedian(scatter[with_data]) if np.isfinite(scatter[with_data]).any() else np.nan
    return tables, scatter / typical


def _disagreement(
    convolved: Sequence[np.ndarray],
    ratio: float,
    offsets: tuple[np.ndarray, np.ndarray],
    annulus: tuple[float, float],
    usable: np.ndarray,
    stamp_mask: np.ndarray | None,
    own_radius: np.ndarray | None,
) -> np.ndarray:
    """RMS about a plane (:func:`nsgflow.neighbours.plane_fit`) of ``convolved[0] - ratio * convolved[1]``.

    Over each cut-out's annulus pixels that are ``usable`` (n, side, side:
    with data) and not a neighbour's (``stamp_mask``, (n * side, side),
    except within ``own_radius``), a few cut-outs at a time; NaN where fewer
    than 4. ``offsets`` are the stars' positions less their cut-outs' centre
    pixels. Unlike the background's annulus
    (:func:`nsgflow.neighbours.annulus_background`), a crowded annulus keeps
    only its unmasked pixels: a neighbour's light would count as disagreement.
    """
    n, side, _ = usable.shape
    grid = np.arange(side, dtype=np.float64) - side // 2
    others = None if stamp_mask is None else stamp_mask.reshape(usable.shape)
    rms = np.full(n, np.nan)
    for start in range(0, n, STAMP_CHUNK):
        pick = slice(start, start + STAMP_CHUNK)
        dx, dy = np.broadcast_arrays(
            grid[None, None, :] - offsets[0][pick, None, None],
            grid[None, :, None] - offsets[1][pick, None, None],
        )
        r2 = dx**2 + dy**2
        ring = usable[pick] & (r2 >= annulus[0] ** 2) & (r2 <= annulus[1] ** 2)
        if others is not None:
            near = others[pick]
            if own_radius is not None:
                near = near & (r2 > np.asarray(own_radius, np.float64)[pick, None, None] ** 2)
            ring &= ~near
        difference = convolved[0][pick] - ratio * convolved[1][pick]
        _, rms[pick] = plane_fit(*(a.reshape(len(difference), -1) for a in (difference, ring, dx, dy)))
    return rms


def measure_photometry(
    target: np.ndarray,
    reference: np.ndarray,
    target_catalog: pd.DataFrame,
    ref_catalog: pd.DataFrame,
    pairs: pd.DataFrame,
    *,
    aperture_hlr: float = 4.0,
    aperture_px: float | str = "auto",
    annulus_inner: float = 1.5,
    annulus_outer: float = 2.2,
    neighbour_mask_sigma: float = 2.0,
    min_snr: float = 10.0,
    max_disagreement: float = 3.0,
    profile_stars: int = 60,
    max_stars: int = 500,
    defects: Sequence[Defects] | None = None,
    clip_levels: Sequence[float | None] | None = None,
) -> tuple[pd.DataFrame, dict]:
    """Measure matched stars on both frames, each convolved with the other's star profile.

    Each frame's profile is fitted to its brightest stars
    (:func:`nsgflow.profiles.frame_profile_fits`), and both frames are
    measured with :func:`psf_matched_photometry`. The frames' defects
    (:func:`nsgflow.defects.find_defects`) are replaced while the stars are
    measured, and so are saturated stars' clipped cores, rebuilt from each
    frame's profile (:func:`nsgflow.cores.rebuilt_cores`): convolved, the light
    a clipped core lacks would reach its neighbours' apertures, unlike in the
    other frame. Both are restored afterwards.

    Parameters
    ----------
    target, reference : numpy.ndarray, shape (ny, nx)
        The two frames (0 = no data).
    target_catalog, ref_catalog : pandas.DataFrame
        Their catalogs (:func:`nsgflow.detect.detect_stars`).
    pairs : pandas.DataFrame
        Matches from :func:`nsgflow.match.match_stars`.
    aperture_hlr : float, default 4.0
        Aperture radius in half-light radii of the matched profile (the root
        of the sum of the two frames' squares). Larger: less dependence on the
        fitted profiles, more noise.
    aperture_px : float or "auto", default "auto"
        The aperture radius in px, set by hand; ``"auto"`` uses ``aperture_hlr``.
    annulus_inner, annulus_outer : float, default 1.5, 2.2
        Background annulus radii, in units of the aperture radius.
    neighbour_mask_sigma : float, default 2.0
        Annulus pixels where a detected neighbour's light exceeds this many
        noise sigmas (:func:`nsgflow.neighbours.neighbour_mask`) are left out
        of the background, and out of the profile fits; 0 keeps them all.
    min_snr : float, default 10
        Pairs below this signal-to-noise ratio in either frame are rejected.
    max_disagreement : float, default 3.0
        Pairs around which the two convolved frames differ by more than this
        many times as much as around the median pair (the ``disagreement``
        of :func:`psf_matched_photometry`: a satellite trail, a saturated
        star's spill) are rejected; 0 keeps them.
    profile_stars : int, default 60
        The brightest usable pairs whose profiles are fitted in each frame.
    max_stars : int, default 500
        Measure at most this many pairs, the reference's brightest: fainter
        ones add little weight to the fit, and time.
    defects : sequence of two Defects, optional
        The target's and the reference's defects if already found (the
        workflow finds them at detection); by default they are found here.
    clip_levels : sequence of two float or None, optional
        The target's and the reference's clip levels (a core at or above it is
        clipped: :func:`nsgflow.differences.clip_level`; None: not clipped);
        by default no core is rebuilt.

    Raises
    ------
    FrameError
        Neither frame's star sizes can be measured, or no aperture fits in the frame.

    Returns
    -------
    table : pandas.DataFrame
        One row per pair: ids, positions and fluxes on both frames, their
        ``disagreement`` and ``status`` (``used`` or the reason for rejection).
    info : dict
        Aperture and annulus radii, both frames' half-light radii, fitted
        profiles (``profile``: alpha, beta, g1, g2; ``profile_method``; the
        number of stars fitted, ``profile_stars``), the saturated cores
        rebuilt (``cores_rebuilt``), each the reference's first, and
        ``profile_error``, the scale's relative uncertainty from the profiles
        (:func:`nsgflow.profiles.profile_error`).
    """
    hlr = (frame_hlr(ref_catalog), frame_hlr(target_catalog))
    if not np.all(np.isfinite(hlr)):
        raise FrameError("the star sizes could not be measured (no star with a finite half-light radius)")
    radius = aperture_hlr * float(np.hypot(*hlr)) if aperture_px == "auto" else float(aperture_px)
    # no aperture fits in the frame: every pair would be rejected, after profile images of its size
    if radius >= min(target.shape) / 2:
        raise FrameError(
            f"the stars' apertures ({radius:.0f} px, from half-light radii of {hlr[1]:.1f} px here and "
            f"{hlr[0]:.1f} px in the reference) do not fit in a frame of {target.shape[0]} x "
            f"{target.shape[1]} px; check the frame (stars this broad are out of focus, or not stars), "
            "or set photometry.aperture_px"
        )
    annulus = (annulus_inner * radius, annulus_outer * radius)
    pairs = pairs.nsmallest(max_stars, "ref_index")  # catalogs list the brightest first
    ref = ref_catalog.iloc[pairs["ref_index"].to_numpy()].reset_index(drop=True)
    tgt = target_catalog.iloc[pairs["target_index"].to_numpy()].reset_index(drop=True)
    flags = ref["flags"].to_numpy() | tgt["flags"].to_numpy()
    # hot pixels and cosmic rays in an aperture or annulus would spoil that star's flux
    found = None if defects is None else defects[::-1]  # the record lists the reference's first
    with defects_replaced(reference, target, found=found) as replaced:
        both = [(reference, ref_catalog), (target, target_catalog)]
        noise = [mask_noise(data) for data, _ in both]
        # the profile fits leave neighbours' pixels out even when the annuli keep them
        mask, radii = neighbour_mask(both, max(hlr), neighbour_mask_sigma or PROFILE_MASK_SIGMA, noise)
        own = np.maximum(radii[0][pairs["ref_index"].to_numpy()], radii[1][pairs["target_index"].to_numpy()])
        if neighbour_mask_sigma == 0:
            mask, own = None, None
        x, y = ref["x"].to_numpy(), ref["y"].to_numpy()  # the same positions on both: the same pixels
        chosen = _profile_stars(both, (ref, tgt), x, y, max(hlr), mask, own, profile_stars)
        fits = frame_profile_fits(both, (ref, tgt), chosen, max(hlr), radii, mask, own)
        profiles = [frame_profile(shared, h) for (_, shared), h in zip(fits, hlr, strict=True)]
        cores = rebuilt_cores(
            (reference, target),
            *saturated_positions([ref_catalog, target_catalog], int(StarFlag.SATURATED)),
            [profile for profile, _ in profiles],
            hlr,
            (None, None) if clip_levels is None else clip_levels[::-1],
        )
        # a kernel's light beyond the annulus, spread by the other (sharper) profile, misses the annulus
        half = int(np.ceil(annulus[1])) + int(np.ceil(3 * min(hlr) / HLR_PER_FWHM))
        with pixels_replaced((reference, target), cores):
            measured, disagreement = psf_matched_photometry(
                (reference, target),
                x,
                y,
                [psf_image(profiles[1][0], half), psf_image(profiles[0][0], half)],
                radius,
                annulus,
                noise,
                mask=mask,
                own_radius=own,
            )
    table = _photometry_table(ref, tgt, measured, disagreement, flags, (min_snr, max_disagreement))
    info = {
        "defects_replaced": replaced,
        "cores_rebuilt": [0 if c is None else int(c.core.max(initial=-1)) + 1 for c in cores],
        "aperture_radius_px": radius,
        "annulus_px": list(annulus),
        "hlr_ref_px": hlr[0],
        "hlr_target_px": hlr[1],
        "profile": [profile.tolist() for profile, _ in profiles],
        "profile_method": [method for _, method in profiles],
        "profile_stars": [int(np.isfinite(f).all(axis=1).sum()) for f, _ in fits],
        "profile_error": profile_error(
            [profile for profile, _ in profiles],
            [profile_covariance(f, profile) for (f, _), (profile, _) in zip(fits, profiles, strict=True)],
            radius,
            annulus,
            half,
        ),
    }
    return table, info


def _profile_stars(
    frames: Sequence[tuple[np.ndarray, pd.DataFrame]],
    stars: Sequence[pd.DataFrame],
    x: np.ndarray,
    y: np.ndarray,
    broad: float,
    mask: np.ndarray | None,
    own: np.ndarray | None,
    count: int,
) -> list[np.ndarray]:
    """Per frame, the rows of ``stars`` (its catalog's rows of the pairs) whose profiles it fits.

    Its ``count`` brightest pairs that are clean in that frame, those on smooth
    sky (:func:`nsgflow.profiles.on_smooth_sky`) first: a star saturated in a
    sharp frame is often the brightest unsaturated one of a broad frame, where
    its wings shape the profile best.
    """
    flags = [frame_stars["flags"].to_numpy() for frame_stars in stars]
    candidates = np.flatnonzero(np.logical_or(*(f == 0 for f in flags)))
    smooth = np.zeros(len(x), dtype=bool)
    smooth[candidates] = on_smooth_sky(
        [data for data, _ in frames],
        x[candidates],
        y[candidates],
        broad,
        mask,
        None if own is None else own[candidates],
    )
    order = np.concatenate([candidates[smooth[candidates]], candidates[~smooth[candidates]]])
    return [order[f[order] == 0][:count] for f in flags]


def _photometry_table(
    ref: pd.DataFrame,
    tgt: pd.DataFrame,
    measured: Sequence[pd.DataFrame],
    disagreement: np.ndarray,
    flags: np.ndarray,
    limits: tuple[float, float],
) -> pd.DataFrame:
    """:func:`measure_photometry`'s table: both frames' measurements of each pair and its ``status``.

    ``limits`` are the lowest signal-to-noise ratio and the largest disagreement (0: any) of a used pair.
    """
    min_snr, max_disagreement = limits
    phot_ref, phot_tgt = measured
    snr = np.minimum(phot_ref["flux"] / phot_ref["flux_err"], phot_tgt["flux"] / phot_tgt["flux_err"])
    status = np.full(len(ref), "used", dtype=object)
    checks = [  # first failing check names the reason; later ones do not overwrite it
        (phot_ref["nodata"] | phot_tgt["nodata"], "no_data_in_aperture"),
        ((flags & StarFlag.SATURATED) != 0, "saturated"),
        ((flags & StarFlag.NEAR_BORDER) != 0, "near_border"),
        ((flags & StarFlag.BLENDED) != 0, "blended"),
        ((disagreement > max_disagreement) & (max_disagreement > 0), "frames_disagree"),
        (~(phot_ref["flux"] > 0) | ~(phot_tgt["flux"] > 0), "non_positive_flux"),
        (~(snr >= min_snr), "low_snr"),
    ]
    for failed, reason in reversed(checks):
        status[np.asarray(failed)] = reason
    return pd.DataFrame(
        {
            "ref_id": ref["id"],
            "target_id": tgt["id"],
            "x_ref": ref["x"],
            "y_ref": ref["y"],
            "x_target": tgt["x"],
            "y_target": tgt["y"],
            "flux_ref": phot_ref["flux"],
            "flux_err_ref": phot_ref["flux_err"],
            "bkg_ref": phot_ref["bkg"],
            "flux_target": phot_tgt["flux"],
            "flux_err_target": phot_tgt["flux_err"],
            "bkg_target": phot_tgt["bkg"],
            "snr": snr,
            "disagreement": disagreement,
            "status": status,
        }
    )
