"""Diagnostic graphs (PNG): the photometry graph, the gradient graph and the sample map."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import PathPatch
from matplotlib.path import Path

from nsgflow.channels import channel_record, luminance, planes
from nsgflow.io import atomic_path, clean_frame

__all__ = ["gradient_graph", "photometry_graph", "sample_map"]

#: Colours of sample and star statuses; anything else is grey.
COLOURS = {"used": "tab:blue", "ratio_outlier": "tab:red", "too_few_pixels": "tab:orange", "no_data": "black"}
#: Colours of a colour frame's channels, in order.
CHANNEL_COLOURS = ("tab:red", "tab:green", "tab:blue")


#: Margins of the two-panel graphs (fractions of the figure).
MARGINS = {"left": 0.07, "right": 0.98, "bottom": 0.12, "top": 0.88, "wspace": 0.2}


def _figure(ncols: int, size: tuple[float, float], margins: dict | None = None) -> tuple[Figure, list]:
    """A figure drawn without pyplot (no display or global state needed).

    The margins are fixed (``margins``: :meth:`Figure.subplots_adjust` keywords)
    rather than found by tight_layout, which draws every figure twice.
    """
    fig = Figure(figsize=size)
    fig.subplots_adjust(**(margins or MARGINS))
    return fig, [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]


def _save(fig: Figure, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        # zlib level 1: a third of the time of the default 6, files about a fifth larger
        fig.savefig(tmp, format="png", dpi=90, metadata={"Software": None}, pil_kwargs={"compress_level": 1})


def _dots(ax: object, x: object, y: object, colour: str, label: str | None = None) -> None:
    """Points in one colour, as the markers of a line: Agg draws those from one cached marker, twice as
    fast as a scatter plot's collection of paths on a photometry graph of 5000 stars."""
    ax.plot(x, y, "o", ms=3.4, mew=0, c=colour, label=label)


def _by_channel(table: pd.DataFrame) -> list[tuple[int, pd.DataFrame]]:
    """The table's rows per channel (one group, channel 0, without a ``channel`` column)."""
    if "channel" not in table or table.empty:
        return [(0, table)]
    return [(int(c), sub) for c, sub in table.groupby("channel", sort=True)]


def _channel_style(channel: int, colour: bool, status_colour: str) -> tuple[str, str]:
    """Colour and label prefix for a channel's points: the status colour for mono, R/G/B for colour."""
    if not colour:
        return status_colour, ""
    return CHANNEL_COLOURS[channel % len(CHANNEL_COLOURS)], f"ch{channel} "


def _star_statuses(sub: pd.DataFrame, fit: dict) -> np.ndarray:
    """Each star's status in one channel's photometry table; for a used star the fit rejected, the reason."""
    status = sub["status"].to_numpy(dtype=object).copy()
    reasons: dict = {}
    for item in fit.get("rejected", []):  # the first reason given for a star is its reason
        reasons.setdefault(item["ref_id"], item["reason"])
    ref_ids = sub["ref_id"].to_numpy()
    for i in np.flatnonzero(status == "used"):
        status[i] = reasons.get(ref_ids[i], "used")
    return status


def _photometry_channel(
    left: object, right: object, channel: int, sub: pd.DataFrame, fit: dict, colour: bool
) -> np.ndarray:
    """Draw one channel's stars, line and m (:func:`photometry_graph`); return the scales of its stars.

    Only stars with positive fluxes on both frames are drawn and returned.
    """
    slope, intercept = fit["scale"], fit.get("intercept", 0.0)
    star_scale = (sub["flux_ref"] - intercept) / sub["flux_target"]
    status = _star_statuses(sub, fit)
    ok = ((sub["flux_ref"] > 0) & (sub["flux_target"] > 0)).to_numpy()
    for name in sorted(set(status), key=lambda s: (s == "used", s)):  # deterministic: used drawn last
        sel = ok & (status == name)
        used_colour, prefix = _channel_style(channel, colour, COLOURS["used"])
        dots = used_colour if name == "used" else COLOURS.get(name, "0.6")
        flux_t, flux_r = sub["flux_target"][sel], sub["flux_ref"][sel]
        # colour: rejections are much the same in every channel, so only channel 0's are labelled
        label = f"{prefix}{name} ({sel.sum()})" if name == "used" or channel == 0 else None
        _dots(left, flux_t, flux_r, dots, label)
        _dots(right, flux_t, star_scale[sel], dots)
    flux = (
        np.geomspace(max(sub["flux_target"][ok].min(), 1e-3), sub["flux_target"][ok].max(), 50)
        if ok.any()
        else np.array([1.0, 10.0])
    )
    line, prefix = _channel_style(channel, colour, "k")
    left.plot(
        flux,
        slope * flux + intercept,
        "-",
        c=line,
        lw=1,
        label=f"{prefix}line {slope:.5f} x + {intercept:.4g}",
    )
    m, m_err = fit["scale"], fit["scale_err"]
    right.axhspan(m - m_err, m + m_err, color=line, alpha=0.15, lw=0)
    right.axhline(m, color=line, lw=1, label=f"{prefix}m = {m:.5f} ± {m_err:.5f}")
    return star_scale[ok]


def _photometry_axes(left: object, right: object, star_scales: np.ndarray) -> None:
    """Scales, labels and legends of :func:`photometry_graph`'s panels.

    The right panel spans the 2nd to 98th percentile of ``star_scales``, and a tenth more.
    """
    for ax in (left, right):
        ax.set_xscale("log")
        ax.set_xlabel("target flux")
    left.set_yscale("log")
    for ax in (left, right):  # a tick per decade: minor ticks would double the graph's drawing time
        ax.minorticks_off()
    left.set_ylabel("reference flux")
    right.set_ylabel("each star's flux ratio")
    if np.isfinite(star_scales).any():
        spread = np.nanpercentile(star_scales, [2, 98])
        right.set_ylim(spread[0] - 0.1 * abs(spread[0]), spread[1] + 0.1 * abs(spread[1]))
    left.legend(fontsize=7, loc="upper left")
    right.legend(fontsize=7, loc="upper right")


def photometry_graph(table: pd.DataFrame, scale: dict, path: str | os.PathLike, title: str = "") -> Figure:
    """Reference against target flux with the fitted line, and each star's scale against flux.

    A star's scale is the ratio the scale is made of: its reference flux less
    the fitted intercept, over its target flux (both frames convolved to the
    same star profile); the right panel draws them around m and its 1-sigma band.
    Rejected stars are drawn in their reason's colour (ratio outliers red,
    others grey). For colour frames each channel's used stars, line and m are
    drawn in the channel's colour. Returns the figure, whose lines hold the values drawn.
    """
    groups = _by_channel(table)
    colour = len(groups) > 1
    fig, (left, right) = _figure(2, (11, 4.5))
    star_scales = [
        _photometry_channel(left, right, channel, sub, channel_record(scale, channel), colour)
        for channel, sub in groups
    ]
    _photometry_axes(left, right, np.concatenate(star_scales))
    what = "m" if not colour else "m (channel mean)"
    fig.suptitle(
        f"{title} photometry: {what} = {scale['scale']:.5f} ± {scale['scale_err']:.5f} "
        f"from {scale.get('stars_used', 0)} stars"
    )
    _save(fig, path)
    return fig


def gradient_graph(
    gradient: np.ndarray,
    samples: pd.DataFrame,
    path: str | os.PathLike,
    title: str = "",
    value_range: tuple[float | None, float | None] = (None, None),
) -> Figure:
    """Horizontal and vertical profiles of G through the frame's centre, with the samples near them.

    Colour frames (gradient of shape (3, ny, nx)) get one profile per channel, in its colour.
    ``value_range`` is G's smallest and largest value if known (the gradient stage has them).
    Returns the figure, whose lines hold the values drawn.
    """
    ny, nx = gradient.shape[-2:]
    box = int(samples["box_px"].iloc[0]) if len(samples) else 1
    groups = _by_channel(samples)
    colour = len(groups) > 1
    fig, axes = _figure(2, (11, 4))
    for (channel, sub), model in zip(groups, planes(gradient), strict=True):
        used = sub[sub["status"] == "used"]
        line, prefix = _channel_style(channel, colour, "k")
        dots, _ = _channel_style(channel, colour, "tab:blue")
        for ax, along, across, n_along, label in (
            (axes[0], "x", "y", nx, "row"),
            (axes[1], "y", "x", ny, "column"),
        ):
            centre = (ny if across == "y" else nx) // 2
            profile = clean_frame(model[centre, :] if along == "x" else model[:, centre])
            near = used[np.abs(used[across] - centre) <= box]
            ax.plot(
                np.arange(n_along), profile, "-", c=line, lw=1.5, label=f"{prefix}G along {label} {centre}"
            )
            _dots(ax, near[along], near["value"], dots, f"{prefix}samples within {box} px")
    for ax, along in zip(axes, "xy", strict=True):
        ax.set_xlabel(f"{along} (px)")
        ax.set_ylabel("m*T - R (ADU)")
        ax.legend(fontsize=7)
    low, high = value_range
    low = float(np.min(gradient)) if low is None else low
    high = float(np.max(gradient)) if high is None else high
    fig.suptitle(f"{title} gradient: range {low:.4g} to {high:.4g}")
    _save(fig, path)
    return fig


def sample_map(
    frame: np.ndarray, samples: pd.DataFrame, path: str | os.PathLike, title: str = "", max_px: int = 900
) -> Figure:
    """The frame (stretched) with every sample box drawn in its status's colour.

    A colour frame is drawn as its luminance; a box left out in any channel
    is drawn with that channel's reason. Returns the figure: its image is the
    stretched frame, its patches the boxes' outlines, one per colour.
    """
    frame = luminance(frame)
    samples = samples.sort_values("status", key=lambda s: s == "used", kind="stable").drop_duplicates(
        ["x", "y"]
    )
    step = max(1, int(np.ceil(max(frame.shape) / max_px)))
    small = clean_frame(frame[::step, ::step])
    valid = small[small != 0]
    low, high = np.percentile(valid, [1, 99.5]) if valid.size else (0.0, 1.0)
    stretched = np.arcsinh(np.clip((small - low) / max(high - low, 1e-12), 0, 1) * 10) / np.arcsinh(10)
    height = 9 * frame.shape[0] / frame.shape[1] + 0.6
    margin = {"left": 0.02, "right": 0.98, "bottom": 0.1 / height, "top": 1 - 0.5 / height}
    fig, (ax,) = _figure(1, (9, height), margin)
    ax.imshow(
        stretched,
        cmap="gray",
        origin="lower",
        extent=(-0.5, frame.shape[1] - 0.5, -0.5, frame.shape[0] - 0.5),
    )
    # the box outlines as one path per colour: a patch per box would take ~30 s for 23000 boxes (24 Mpx)
    x, y, half = (samples[c].to_numpy(float) for c in ("x", "y", "box_px"))
    half = half / 2
    corners = np.stack(
        [
            np.column_stack([x + dx * half, y + dy * half])
            for dx, dy in ((-1, -1), (1, -1), (1, 1), (-1, 1), (-1, -1))
        ],
        axis=1,
    )
    codes = np.array([Path.MOVETO, *[Path.LINETO] * 3, Path.CLOSEPOLY], dtype=Path.code_type)
    colours = np.array([COLOURS.get(status, "0.6") for status in samples["status"]], dtype=object)
    for colour in sorted(set(colours)):
        boxes = colours == colour
        outlines = Path(corners[boxes].reshape(-1, 2), np.tile(codes, int(boxes.sum())))
        ax.add_artist(PathPatch(outlines, fill=False, lw=0.5, ec=colour))  # add_patch: slow limits
    if len(corners):
        ax.update_datalim(corners.reshape(-1, 2))
        ax.autoscale_view()
    counts = samples["status"].value_counts().to_dict()
    ax.set_title(f"{title} samples: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())), fontsize=9)
    ax.set_axis_off()
    _save(fig, path)
    return fig
