"""The set-wide summary: one row per frame, weights for the stacker, the accepted list.

Works on whatever a run left behind, so it also reports frames whose jobs
failed, with the error their log gives.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
from astropy.io import fits

from nsgflow.channels import channel_values
from nsgflow.io import atomic_path, read_json, write_csv
from nsgflow.weight import rejection_reasons, stats_weight

__all__ = ["STAGE_OUTPUTS", "failure_reason", "summarize", "write_summary"]

#: Each rule and the per-frame output that shows it finished, in workflow order.
STAGE_OUTPUTS = [
    ("detect_stars", "catalogs/{}.csv"),
    ("normalize_frame", "normalized/{}_nsg.fits"),
]


def _logged_error(log: Path) -> str | None:
    """The last ERROR line of a job's log, without its level; None if there is none."""
    errors = [line[6:] for line in log.read_text(errors="replace").splitlines() if line.startswith("ERROR ")]
    return errors[-1] if errors else None


def failure_reason(results: Path, name: str) -> str | None:
    """Why a frame has no normalized output: the error logged by its first unfinished stage; None if done."""
    for rule, pattern in STAGE_OUTPUTS:
        if (results / pattern.format(name)).is_file():
            continue
        log = results / "logs" / rule / f"{name}.log"
        if not log.is_file():
            return f"{rule} did not run (the reference or an earlier job failed, or the run was stopped)"
        error = _logged_error(log)
        return f"{rule}: {error}" if error else f"{rule} failed or was interrupted; see {log}"
    return None


def summarize(
    results: str | os.PathLike, frames: dict[str, str], reference: str, reject: dict
) -> pd.DataFrame:
    """One row per frame: status, scale, weight, background, stars, and whether to stack it."""
    results = Path(results)
    ref_stats_path = results / "catalogs" / f"{reference}.json"
    ref_stats = read_json(ref_stats_path) if ref_stats_path.is_file() else None
    rows = []
    for name in sorted(frames):
        row: dict = {"frame": name, "file": frames[name], "status": "ok", "reason": ""}
        reason = failure_reason(results, name)
        stats_path = results / "catalogs" / f"{name}.json"
        stats = read_json(stats_path) if stats_path.is_file() else {}
        row.update(
            {k: stats.get(k) for k in ("sky", "sky_range", "noise", "hlr_px", "stars", "altitude", "exptime")}
        )
        scale_path = results / "scale" / f"{name}.json"
        if scale_path.is_file():
            scale = read_json(scale_path)
            row.update(
                scale=scale["scale"],
                scale_err=scale["scale_err"],
                transmission=1.0 / scale["scale"],
                stars_matched=scale["stars_matched"],
                stars_used=scale["stars_used"],
            )
            exptime = stats.get("exptime")
            row["transmission_per_s"] = row["transmission"] / exptime if exptime else None
            row["weight"] = stats_weight(ref_stats, stats, scale) if (ref_stats and stats) else None
            if "channels" in scale:
                row["channel_scales"] = " ".join(f"{m:.6g}" for m in channel_values(scale, "scale"))
        gradient = results / "gradient" / f"{name}.fits"
        if gradient.is_file():
            header = fits.getheader(gradient)
            row.update(gradient_min=header.get("NSGGMIN"), gradient_max=header.get("NSGGMAX"))
        if reason:
            row.update(status="failed", reason=reason, accepted=False)
        else:
            why = rejection_reasons(row, reject) if name != reference else []
            row.update(accepted=not why, reason="; ".join(why))
        rows.append(row)
    columns = [
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
        "file",
    ]
    return pd.DataFrame(rows).reindex(columns=columns)


def write_summary(
    results: str | os.PathLike, frames: dict[str, str], reference: str, reject: dict
) -> pd.DataFrame:
    """Write ``summary.csv``, ``weights.csv`` and ``accepted.txt`` under ``results``; return the summary."""
    results = Path(results)
    table = summarize(results, frames, reference, reject)
    write_csv(results / "summary.csv", table)
    ok = table[table["status"] == "ok"]
    normalized = [str(results / "normalized" / f"{name}_nsg.fits") for name in ok["frame"]]
    write_csv(
        results / "weights.csv",
        pd.DataFrame(
            {"file": normalized, "weight": ok["weight"].to_numpy(), "frame": ok["frame"].to_numpy()}
        ),
    )
    accepted = [path for path, keep in zip(normalized, ok["accepted"], strict=True) if keep]
    with atomic_path(results / "accepted.txt") as tmp:
        tmp.write_text("".join(f"{path}\n" for path in accepted))
    return table
