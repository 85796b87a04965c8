"""The gradient samples' settings that follow the frames: the sample box and the star-mask radii.

As NormalizeScaleGradient's "auto" defaults, they follow the star size: the
larger measured FWHM of the two frames, or typical seeing at the image scale
from FOCALLEN and XPIXSZ (:func:`star_fwhm`, :func:`image_scale`). The box is
a number of FWHMs (:func:`sample_box_px`); each star's mask radius follows
its peak, the star size and the frame's noise (:func:`star_mask_radii`).
:func:`resolved_settings` records the values they took for a frame.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from astropy import units as u

from nsgflow.detect import StarFlag
from nsgflow.gradient import star_radius
from nsgflow.photometry import frame_hlr
from nsgflow.profiles import HLR_PER_FWHM

__all__ = [
    "image_scale",
    "mask_radii",
    "resolved_settings",
    "sample_box_px",
    "star_fwhm",
    "star_mask_radii",
]


#: Seeing assumed when star sizes cannot be measured, arcsec FWHM.
TYPICAL_SEEING_ARCSEC = 2.5


#: Automatic sample box: this many star FWHMs, a multiple of 8 px, within these bounds.
AUTO_BOX_FWHM, AUTO_BOX_PX = 8.0, (16, 128)


def image_scale(stats: dict) -> float | None:
    """Image scale in arcsec/px from a frame's FOCALLEN (mm) and XPIXSZ (um); None without them.

    Examples
    --------
    >>> round(image_scale({"focallen": 2000.0, "xpixsz": 3.76}), 3)
    0.388
    """
    if stats.get("focallen") and stats.get("xpixsz"):
        pixel = stats["xpixsz"] * u.um / (stats["focallen"] * u.mm)  # an angle in radians
        return float(pixel.to_value(u.arcsec, equivalencies=u.dimensionless_angles()))
    return None


def star_fwhm(stats: list[dict]) -> tuple[float | None, str]:
    """The star FWHM (px) the automatic settings follow, and where it comes from.

    The larger of the frames' measured FWHMs (median half-light radius /
    :data:`nsgflow.profiles.HLR_PER_FWHM`); when no frame has measured stars,
    :data:`TYPICAL_SEEING_ARCSEC` at the image scale (:func:`image_scale`);
    None when neither is known.

    Examples
    --------
    >>> star_fwhm([{"hlr_px": 1.89}, {"hlr_px": 1.26}])
    (3.0, 'measured star size')
    >>> star_fwhm([{"hlr_px": None, "focallen": 2000.0, "xpixsz": 3.76}])[1]
    '2.5 arcsec seeing at 0.39 arcsec/px'
    """
    measured = [s["hlr_px"] / HLR_PER_FWHM for s in stats if s.get("hlr_px") and np.isfinite(s["hlr_px"])]
    if measured:
        return max(measured), "measured star size"
    scale = next((image_scale(s) for s in stats if image_scale(s)), None)
    if scale is None:
        return None, "no stars measured and no FOCALLEN/XPIXSZ in the headers"
    return TYPICAL_SEEING_ARCSEC / scale, f"{TYPICAL_SEEING_ARCSEC} arcsec seeing at {scale:.2f} arcsec/px"


def star_mask_radii(stars: pd.DataFrame, stats: dict, settings: dict, hlr: float | None = None) -> np.ndarray:
    """Each star's mask radius (px) for the gradient samples, per the ``samples`` settings.

    ``star_radius_px`` set by hand gives every star that radius; ``"auto"``
    follows each star's peak, the star size ``hlr`` (half-light radius, px;
    by default the frame's own, else the image scale's, :func:`star_fwhm`)
    and the frame's noise (:func:`nsgflow.gradient.star_radius`). Saturated
    stars get ``saturated_growth`` times more.
    """
    if settings["star_radius_px"] == "auto":
        if hlr is None or not np.isfinite(hlr):
            hlr = frame_hlr(stars)
        if not np.isfinite(hlr):
            fwhm, _ = star_fwhm([stats])
            hlr = HLR_PER_FWHM * fwhm if fwhm else np.nan
        radius = star_radius(
            np.maximum(stars["peak"] - stars["sky"], 0.0),
            hlr,
            stats["noise"],
            mask_sigma=settings["star_mask_sigma"],
            growth=settings["star_growth"],
        )
    else:
        radius = np.full(len(stars), float(settings["star_radius_px"]))
    saturated = (stars["flags"].to_numpy() & StarFlag.SATURATED) != 0
    return np.where(saturated, radius * settings["saturated_growth"], radius)


def mask_radii(catalogs: list[pd.DataFrame], stats: list[dict], settings: dict) -> np.ndarray:
    """:func:`star_mask_radii` of both frames' stars, every star at the broader frame's star size.

    In the sharper frame a star's light lies inside that radius, in the
    broader one its wings reach that far.
    """
    sizes = [frame_hlr(c) for c in catalogs if len(c)]
    broad = max(sizes) if sizes and np.isfinite(max(sizes)) else None
    return np.concatenate(
        [star_mask_radii(c, s, settings, broad) for c, s in zip(catalogs, stats, strict=True)]
    )


def sample_box_px(setting: int | str, stats: list[dict]) -> tuple[int, str]:
    """The sample box size to use, and how it was found.

    An integer setting is used as it is. ``"auto"``, as NormalizeScaleGradient
    does, follows the star size: :data:`AUTO_BOX_FWHM` times the FWHM of
    :func:`star_fwhm` (measured, else from FOCALLEN and XPIXSZ), rounded up to
    a multiple of 8 px within :data:`AUTO_BOX_PX`; 32 px when neither is known.

    Examples
    --------
    >>> sample_box_px(48, [])
    (48, 'set by hand')
    >>> sample_box_px("auto", [{"hlr_px": 2.5}, {"hlr_px": 1.9}])[0]
    32
    >>> sample_box_px("auto", [{"hlr_px": None, "focallen": 2000.0, "xpixsz": 3.76}])
    (56, 'auto: 8 x FWHM 6.4 px (2.5 arcsec seeing at 0.39 arcsec/px)')
    """
    if setting != "auto":
        return int(setting), "set by hand"
    fwhm, why = star_fwhm(stats)
    if fwhm is None:
        return 32, f"auto: {why}: 32 px"
    low, high = AUTO_BOX_PX
    box = int(min(max(8 * np.ceil(AUTO_BOX_FWHM * fwhm / 8), low), high))
    return box, f"auto: {AUTO_BOX_FWHM:g} x FWHM {fwhm:.1f} px ({why})"


def resolved_settings(catalogs: list[pd.DataFrame], stats: list[dict], settings: dict) -> dict:
    """The values the automatic sample settings took for one frame, for its provenance record.

    ``catalogs`` and ``stats`` are the target's and reference's, ``settings``
    the ``samples`` section.
    """
    box, box_why = sample_box_px(settings["box_px"], stats)
    radii = mask_radii(catalogs, stats, settings)
    radii = radii[np.isfinite(radii)]
    fwhm, fwhm_why = star_fwhm(stats)
    return {
        "image_scale_arcsec_per_px": image_scale(stats[0]),
        "star_fwhm_px": fwhm,
        "star_fwhm_from": fwhm_why,
        "sample_box_px": box,
        "sample_box_from": box_why,
        "star_mask_radius_px": {
            "from": "set by hand" if settings["star_radius_px"] != "auto" else "auto: peak, star size, noise",
            **(
                {"min": float(radii.min()), "median": float(np.median(radii)), "max": float(radii.max())}
                if radii.size
                else {}
            ),
        },
    }
