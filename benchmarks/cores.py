"""Saturated-core benchmark: the cores the gradient samples rebuild, against the light the clipping took.

The matched difference that the gradient samples come from
(:func:`nsgflow.differences.matched_differences`) rebuilds every saturated
star's clipped core in both frames (:func:`nsgflow.cores.saturated_cores`);
what the two rebuilt cores disagree on spreads as far as the broader frame's
kernel reaches. This renders a condition's frame sets
(:mod:`nsgflow.synthetic_conditions`) twice, clipped and not, normalizes each
target with :func:`nsgflow.normalize` (for the fitted profiles, catalogs and
statistics), rebuilds the cores of both frames of every pair as the samples
stage does, and compares each core's rebuilt light with the light its clipped
pixels lost. Cores within reach of a no-data border or the frame's edge
("cut") and the others ("whole") are counted apart: a cut star is catalogued
off its centre. Run from the repository, e.g.::

    .venv/bin/python benchmarks/cores.py --condition extreme --seeds 0-9
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import warnings
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).parent))
from accuracy import parse_seeds, seeds_label

import nsgflow
from nsgflow import synthetic, synthetic_conditions
from nsgflow.cores import saturated_cores, saturated_positions
from nsgflow.detect import StarFlag
from nsgflow.differences import clip_level

#: A core is "cut" when a no-data pixel or the frame's edge lies within this many px of it.
CUT_REACH_PX = 8


def core_errors(plane: np.ndarray, truth: np.ndarray, x, y, profile, hlr: float, limit: float) -> list[tuple]:
    """Each rebuilt core of ``plane``: (lost light, rebuilt light, cut), ``truth`` the unclipped plane."""
    cores = saturated_cores(plane, x, y, np.asarray(profile), hlr, limit)
    if not cores.rows.size:
        return []
    blocked = np.pad(np.zeros((plane.shape[0] - 2, plane.shape[1] - 2), bool), 1, constant_values=True)
    near = ndimage.binary_dilation(blocked | (plane == 0), iterations=CUT_REACH_PX)
    _, _, rebuilt = cores.added_light(plane)
    lost = np.bincount(cores.core, weights=(truth - plane)[cores.rows, cores.cols])
    cut = np.bincount(cores.core, weights=near[cores.rows, cores.cols]) > 0
    return [(lost[k], rebuilt[k], bool(cut[k])) for k in range(len(lost)) if lost[k] > 0]


def pair_errors(scene, specs: dict, reference: str, name: str) -> list[tuple]:
    """The rebuilt cores of one target and the reference, as :func:`core_errors` rows."""
    frames = {n: synthetic.render_frame(scene, specs[n]) for n in (name, reference)}
    truths = {
        n: synthetic.render_frame(scene, dataclasses.replace(specs[n], saturation_adu=np.inf))
        for n in (name, reference)
    }
    result = nsgflow.normalize(frames[name], frames[reference])
    catalogs, stats = [result.target_catalog, result.ref_catalog], [result.target_stats, result.ref_stats]
    x, y = saturated_positions(catalogs[::-1], int(StarFlag.SATURATED))
    record = result.aperture
    rows = []
    for n, frame_stats, profile, hlr in zip(
        (name, reference),
        stats,
        (record["profile"][1], record["profile"][0]),
        (record["hlr_target_px"], record["hlr_ref_px"]),
        strict=True,
    ):
        limit = clip_level(frame_stats, 0)
        if limit is not None and len(x):
            rows += core_errors(frames[n], truths[n], x, y, profile, hlr, limit)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--condition", default="extreme", help="condition set (default: extreme)")
    parser.add_argument("--seeds", type=parse_seeds, default=[0], help="e.g. 0-9 (default: 0)")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    rows = []
    for seed in args.seeds:
        scene, specs, reference = synthetic_conditions.condition_specs(
            synthetic_conditions.CONDITION_SETS[args.condition], (600, 900), 6, seed
        )
        specs = {s.name: s for s in specs}
        for name in specs:
            if name != reference:
                rows += pair_errors(scene, specs, reference, name)
    print(f"\n## rebuilt saturated cores: {args.condition}, seeds {seeds_label(args.seeds)}\n")
    print("| cores | count | median error % | 90th pct of abs % | worst abs % |")
    print("|---|---|---|---|---|")
    for label, pick in (("whole", False), ("cut", True)):
        errors = np.array([100 * (rebuilt / lost - 1) for lost, rebuilt, cut in rows if cut == pick])
        if errors.size:
            print(
                f"| {label} | {errors.size} | {np.median(errors):+.1f} | "
                f"{np.percentile(np.abs(errors), 90):.1f} | {np.abs(errors).max():.1f} |"
            )
    print("\nerror: rebuilt light / light the clipping took - 1, per core (either frame of a pair).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
