"""The set-wide summary: one row per frame, weights for the stacker, the accepted list, and its graph.

Works on whatever a run left behind, so it also reports frames whose jobs
failed, with the error their log gives.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from nsgflow.channels import channel_values
from nsgflow.diagnostics import _dots, _figure, _save
from nsgflow.io import read_header, read_json, write_csv, write_lines
from nsgflow.progress import logged_error
from nsgflow.weight import rejection_reasons, stats_weight
from nsgflow.workflow import STAGE_OUTPUTS

__all__ = ["failure_reason", "summarize", "summary_graph", "write_summary"]


def failure_reason(results: Path, name: str) -> str | None:
    """Why a frame has no normalized output: the error logged by its first unfinished stage; None if done."""
    for rule, pattern in STAGE_OUTPUTS:
        if (results / pattern.format(name)).is_file():
            continue
        log = results / "logs" / rule / f"{name}.log"
        if not log.is_file():
            return f"{rule} did not run (the reference or an earlier job failed, or the run was stopped)"
        error = logged_error(log)
        return f"{rule}: {error}" if error else f"{rule} failed or was interrupted; see {log}"
    return None


#: Columns of :func:`summarize`'s table, in order.
SUMMARY_COLUMNS = [
    "frame",
    "status",
    "accepted",
    "reason",
    "scale",
    "scale_err",
    "channel_scales",
    "transmission",
    "transmission_per_s",
    "weight",
    "stars",
    "stars_matched",
    "stars_used",
    "sky",
    "sky_range",
    "noise",
    "hlr_px",
    "gradient_min",
    "gradient_max",
    "altitude",
    "exptime",
    "date_obs",
    "file",
]
#: The detection statistics (``catalogs/{frame}.json``) a summary row holds.
STATS_COLUMNS = ("sky", "sky_range", "noise", "hlr_px", "stars", "altitude", "exptime")


def _scale_values(scale: dict, stats: dict, ref_stats: dict | None) -> dict:
    """A frame's summary values from its scale record: scale, transmission, stars and weight.

    ``stats`` and ``ref_stats`` are the frame's and the reference's detection
    statistics (empty or None if missing: no weight then).
    """
    values = {
        "scale": scale["scale"],
        "scale_err": scale["scale_err"],
        "transmission": 1.0 / scale["scale"],
        "stars_matched": scale["stars_matched"],
        "stars_used": scale["stars_used"],
    }
    exptime = stats.get("exptime")
    values["transmission_per_s"] = values["transmission"] / exptime if exptime else None
    values["weight"] = stats_weight(stats, ref_stats, scale) if (ref_stats and stats) else None
    if "channels" in scale:
        values["channel_scales"] = " ".join(f"{m:.6g}" for m in channel_values(scale, "scale"))
    return values


def _header_values(results: Path, name: str) -> dict:
    """DATE-OBS of a frame's normalized output and its gradient model's range, from their headers."""
    values = {}
    normalized = results / "normalized" / f"{name}_nsg.fits"
    if normalized.is_file():  # the input's header, also for XISF inputs
        values["date_obs"] = read_header(normalized).get("DATE-OBS")
    gradient = results / "gradient" / f"{name}.fits"
    if gradient.is_file():
        header = read_header(gradient)
        values.update(gradient_min=header.get("NSGGMIN"), gradient_max=header.get("NSGGMAX"))
    return values


def _frame_row(
    results: Path, name: str, file: str, reference: str, reject: dict, ref_stats: dict | None
) -> dict:
    """:func:`summarize`'s row of frame ``name`` (input ``file``)."""
    row: dict = {"frame": name, "file": file, "status": "ok", "reason": ""}
    reason = failure_reason(results, name)
    stats_path = results / "catalogs" / f"{name}.json"
    stats = read_json(stats_path) if stats_path.is_file() else {}
    row.update({k: stats.get(k) for k in STATS_COLUMNS})
    scale_path = results / "scale" / f"{name}.json"
    if scale_path.is_file():
        row.update(_scale_values(read_json(scale_path), stats, ref_stats))
    row.update(_header_values(results, name))
    if reason:
        row.update(status="failed", reason=reason, accepted=False)
    else:
        why = rejection_reasons(row, reject) if name != reference else []
        row.update(accepted=not why, reason="; ".join(why))
    return row


def summarize(
    results: str | os.PathLike, frames: dict[str, str], reference: str, reject: dict
) -> pd.DataFrame:
    """One row per frame: status, scale, weight, background, stars, and whether to stack it.

    The columns are :data:`SUMMARY_COLUMNS`.
    """
    results = Path(results)
    ref_stats_path = results / "catalogs" / f"{reference}.json"
    ref_stats = read_json(ref_stats_path) if ref_stats_path.is_file() else None
    rows = [_frame_row(results, name, frames[name], reference, reject, ref_stats) for name in sorted(frames)]
    return pd.DataFrame(rows).reindex(columns=SUMMARY_COLUMNS)


def _observed(table: pd.DataFrame) -> tuple[np.ndarray, str]:
    """The x of each row for :func:`summary_graph`: its DATE-OBS (UTC) if every row has one, else its number.

    Rows are numbered from 1 in the table's order (``summary.csv``'s).
    """
    dates = pd.to_datetime(table["date_obs"], errors="coerce", format="ISO8601", utc=True)
    if len(dates) and dates.notna().all():
        return dates.dt.tz_localize(None).to_numpy(), "DATE-OBS (UTC)"
    return table.index.to_numpy() + 1, "frame (order in summary.csv; not every frame has DATE-OBS)"


def summary_graph(table: pd.DataFrame, path: str | os.PathLike, reference: str | None = None) -> Figure:
    """Draw transmission (1/m) and weight of every frame against DATE-OBS, rejected frames in red.

    ``table`` is :func:`summarize`'s (or ``summary.csv`` read back). Frames
    are placed by DATE-OBS when every frame with a scale has it, else by
    their order in the table. Failed frames have no scale and are only
    counted in the title. The reference (``reference``) is drawn in black.
    Returns the figure, whose lines hold the values drawn.
    """
    table = table.reset_index(drop=True)
    done = table[table["transmission"].notna()]
    x, xlabel = _observed(done)
    rejected = ~done["accepted"].astype(bool).to_numpy()
    is_reference = (done["frame"] == reference).to_numpy()
    groups = [
        ("accepted", "tab:blue", ~rejected & ~is_reference),
        ("rejected", "tab:red", rejected),
        ("reference", "k", is_reference),
    ]
    fig, axes = _figure(2, (11, 4.5))
    for ax, column, label in ((axes[0], "transmission", "transmission 1/m"), (axes[1], "weight", "weight")):
        y = done[column].to_numpy(float)
        order = np.argsort(x, kind="stable")
        ax.plot(x[order], y[order], "-", c="0.8", lw=0.8, zorder=0)  # the frames in order: the night's trend
        for name, colour, selected in groups:
            _dots(ax, x[selected], y[selected], colour, f"{name} ({selected.sum()})")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(label)
        ax.legend(fontsize=7)
        if np.issubdtype(x.dtype, np.datetime64):
            locator = AutoDateLocator()
            ax.xaxis.set_major_locator(locator)
            ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
        else:  # frame numbers
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    failed = len(table) - len(done)
    fig.suptitle(f"{len(table)} frames: {rejected.sum()} rejected, {failed} failed (reasons in summary.csv)")
    _save(fig, path)
    return fig


def write_summary(
    results: str | os.PathLike, frames: dict[str, str], reference: str, reject: dict
) -> pd.DataFrame:
    """Write the summary under ``results``; return it.

    The files: ``summary.csv``, its graph ``summary.png`` (:func:`summary_graph`),
    ``weights.csv`` and ``accepted.txt``.
    """
    results = Path(results)
    table = summarize(results, frames, reference, reject)
    write_csv(results / "summary.csv", table)
    summary_graph(table, results / "summary.png", reference)
    ok = table[table["status"] == "ok"]
    normalized = [str(results / "normalized" / f"{name}_nsg.fits") for name in ok["frame"]]
    write_csv(
        results / "weights.csv",
        pd.DataFrame(
            {"file": normalized, "weight": ok["weight"].to_numpy(), "frame": ok["frame"].to_numpy()}
        ),
    )
    accepted = [path for path, keep in zip(normalized, ok["accepted"], strict=True) if keep]
    write_lines(results / "accepted.txt", accepted)
    return table
