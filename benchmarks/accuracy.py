"""Accuracy benchmark: nsgflow against two simple baselines on synthetic frames with known truth.

For every condition of :mod:`nsgflow.synthetic_conditions` (the hard ones: ``seeing``,
``artifacts``, ``extended``, ``borders``, ``trails``, ``sky``, ``cloud``; the
profile ones: ``psf``, ``crowded``, ``aureole``) and for the named sets
``hard`` (every hard condition) and ``extreme`` (those, ``psf`` and
``crowded``), this makes a frame set with a fixed seed, runs the Snakemake
workflow on it, and prints one markdown table, one row per condition, with the
same columns for three methods:

``nsgflow``
    the workflow's output ``m*T - G``;
``additive``
    additive with scaling, what most stackers do: ``m = sigma(R) / sigma(T)``
    (robust sigmas of the whole frames), offset so the medians match, no gradient;
``no gradient``
    nsgflow's scale ``m`` with a median offset instead of the gradient model.

Columns: scale error ``|m/m_true - 1|`` in % (median and worst over the target
frames; the reference is left out) and the residual background (output minus
the ideal output, medians in 64x64 boxes, in units of the reference's per-pixel
sky noise): the RMS over boxes (median over frames) and the worst box (all
frames). Targets: scale median <= 0.3 %, worst <= 0.6 %; RMS <= 0.05, worst
box <= 0.3. For nsgflow also: the fraction of frames whose true scale lies
within 3 of its reported sigmas (target: at least 95 % over many seeds), and a
second table of its scale error (median, 95th percentile, worst), the share of
frames within 1 and 3 reported sigmas, the number beyond 5, and the share of
frames whose worst box meets its target.

``--conditions seeing+trails`` makes one set with both conditions. ``--seeds
0-9`` runs every condition with each seed and pools the frames of all seeds
(the scale and residual columns then summarize all their frames; ``seeds
met`` counts the seeds whose set met every target). ``--api`` normalizes in
memory with :func:`nsgflow.normalize` instead of running the workflow: the
same numbers (a test checks it), several times faster, for many seeds. Run
from the repository, e.g.::

    .venv/bin/python benchmarks/accuracy.py --size 600x900 --frames 6 --cores 2
    .venv/bin/python benchmarks/accuracy.py --seeds 0-9 --api
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import nsgflow
from nsgflow import synthetic, synthetic_conditions
from nsgflow.cli import run_workflow
from nsgflow.io import read_frame

#: Targets of the issue: scale error median and worst (fraction), residual RMS and worst box (sky sigmas).
TARGETS = {"scale_median": 0.003, "scale_worst": 0.006, "rms": 0.05, "worst_box": 0.3}
METHODS = ("nsgflow", "additive", "no gradient")
#: Every condition the benchmark runs by default: each alone, then the named sets.
ALL_CONDITIONS = (
    *synthetic_conditions.CONDITIONS,
    *synthetic_conditions.PROFILE_CONDITIONS,
    *synthetic_conditions.CONDITION_SETS,
)


def robust_sigma(values: np.ndarray) -> float:
    """Normalised median absolute deviation: the standard deviation of Gaussian data."""
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


def additive_with_scaling(target: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """Baseline 1: ``m = sigma(R) / sigma(T)`` and the offset that matches the medians.

    Parameters
    ----------
    target, reference : numpy.ndarray, shape (ny, nx)
        Frames, 0 for no data; only pixels with data in both are used.

    Returns
    -------
    m, offset : float
        The output is ``m*T - offset``.
    """
    both = (target != 0) & (reference != 0)
    t, r = target[both].astype(np.float64), reference[both].astype(np.float64)
    m = robust_sigma(r) / robust_sigma(t)
    return m, m * float(np.median(t)) - float(np.median(r))


def median_offset(target: np.ndarray, reference: np.ndarray, m: float) -> float:
    """Baseline 2's offset for a given scale: ``median(m*T) - median(R)`` over pixels with data in both."""
    both = (target != 0) & (reference != 0)
    return m * float(np.median(target[both])) - float(np.median(reference[both]))


def residual_stats(
    output: np.ndarray, target: np.ndarray, spec: synthetic.FrameSpec, ref_spec: synthetic.FrameSpec
) -> tuple[float, float]:
    """RMS and worst of the 64x64 box medians of output minus ideal output, in reference sky sigmas."""
    blocks = synthetic.box_medians(synthetic.residual(output, target, spec, ref_spec), 64)
    noise = synthetic.sky_noise(ref_spec)
    return float(np.sqrt(np.mean(blocks**2))) / noise, float(np.max(np.abs(blocks))) / noise


def baselines(truth: dict, ours: dict[str, float]) -> dict[str, list[dict]]:
    """Per-frame scale error and residuals of the two baselines, for every target frame.

    Parameters
    ----------
    truth : dict
        The frame set's truth (:func:`nsgflow.synthetic.make_frame_set`).
    ours : dict
        nsgflow's scale per frame name (used by the no-gradient baseline).
    """
    specs = {name: synthetic.spec_from_truth(f) for name, f in truth["frames"].items()}
    ref_name = truth["reference"]
    reference, _ = read_frame(truth["frames"][ref_name]["path"])
    rows: dict[str, list[dict]] = {"additive": [], "no gradient": []}
    for name, spec in specs.items():
        if name == ref_name:
            continue
        target, _ = read_frame(truth["frames"][name]["path"])
        m_add, offset_add = additive_with_scaling(target, reference)
        for method, m, offset in (
            ("additive", m_add, offset_add),
            ("no gradient", ours[name], median_offset(target, reference, ours[name])),
        ):
            output = np.where(target == 0, 0.0, m * target.astype(np.float64) - offset)
            rms, worst = residual_stats(output, target, spec, specs[ref_name])
            rows[method].append(
                {
                    "frame": name,
                    "scale_error": m / spec.scale - 1,
                    "residual_rms": rms,
                    "residual_worst": worst,
                }
            )
    return rows


def summarize(rows: list[dict]) -> dict[str, float]:
    """Median and worst absolute scale error, median RMS and worst box over the frames.

    With the reported uncertainties (nsgflow's rows), also the fractions of
    frames whose scale error is within 1 and 3 of them, the number beyond 5,
    the 95th percentile of the scale error, and the fraction of frames whose
    worst box is within the target.
    """
    errors = np.abs([r["scale_error"] for r in rows])
    summary = {
        "scale_median": float(np.median(errors)),
        "scale_worst": float(np.max(errors)),
        "rms": float(np.median([r["residual_rms"] for r in rows])),
        "worst_box": float(np.max([r["residual_worst"] for r in rows])),
    }
    if all("m_err" in r for r in rows):
        sigmas = np.array([r["m_err"] / r["m"] for r in rows])
        boxes = np.array([r["residual_worst"] for r in rows])
        summary.update(
            within_1_sigma=float(np.mean(errors <= sigmas)),
            within_3_sigma=float(np.mean(errors <= 3 * sigmas)),
            beyond_5_sigma=int(np.sum(errors > 5 * sigmas)),
            scale_p95=float(np.percentile(errors, 95)),
            boxes_within=float(np.mean(boxes <= TARGETS["worst_box"])),
            frames=len(rows),
        )
    return summary


def print_uncertainty_table(results: dict[str, dict]) -> None:
    """nsgflow's scale error and the coverage of its reported uncertainty, a row per condition."""
    print(
        "| condition | frames | m err % med | 95th pct | worst | within 1 sigma | within 3 sigma "
        "| beyond 5 sigma | rms med | frames with worst box <= 0.3 |"
    )
    print("|" + "---|" * 10)
    for name, summary in results.items():
        s = summary["nsgflow"]
        print(
            f"| {name} | {s['frames']} | {100 * s['scale_median']:.3f} | {100 * s['scale_p95']:.3f} | "
            f"{100 * s['scale_worst']:.3f} | {100 * s['within_1_sigma']:.0f} % | "
            f"{100 * s['within_3_sigma']:.0f} % | {s['beyond_5_sigma']} | {s['rms']:.3f} | "
            f"{100 * s['boxes_within']:.0f} % |"
        )


def normalize_in_memory(truth: dict, reference: str, settings: dict | None = None) -> list[dict]:
    """Normalize every target with :func:`nsgflow.normalize`; rows as :func:`nsgflow.synthetic.evaluate`.

    ``settings``: sections of ``config.yaml`` overriding the defaults.
    """
    specs = {name: synthetic.spec_from_truth(f) for name, f in truth["frames"].items()}
    ref_data, ref_header = read_frame(truth["frames"][reference]["path"])
    noise = synthetic.sky_noise(specs[reference])
    rows = []
    for name, spec in specs.items():
        if name == reference:
            continue
        data, header = read_frame(truth["frames"][name]["path"])
        result = nsgflow.normalize(
            data, ref_data, target_header=header, reference_header=ref_header, **(settings or {})
        )
        residual = synthetic.residual(result.normalized, data, spec, specs[reference])
        blocks = synthetic.box_medians(residual, 64)
        rows.append(
            {
                "frame": name,
                "m_true": spec.scale,
                "m": result.scale,
                "m_err": result.scale_err,
                "scale_error": result.scale / spec.scale - 1,
                "residual_rms": float(np.sqrt(np.mean(blocks**2))) / noise,
                "residual_worst": float(np.max(np.abs(blocks))) / noise,
            }
        )
    return rows


def run_condition(
    name: str, folder: Path, args: argparse.Namespace, seed: int
) -> tuple[dict, list[dict], dict]:
    """Make one condition's frame set in ``folder``, normalize it, return summaries, our rows and times."""
    conditions = synthetic_conditions.CONDITION_SETS.get(name, name.split("+"))
    scene, specs, reference = synthetic_conditions.condition_specs(conditions, args.size, args.frames, seed)
    if folder.exists():
        if not (folder / "data" / "truth.json").is_file():
            sys.exit(
                f"accuracy: {folder} exists and is not an earlier benchmark folder; choose another --out"
            )
        shutil.rmtree(folder)  # never reuse results: the science may have changed since
    times = {}
    start = time.perf_counter()
    truth = synthetic.make_frame_set(folder / "data", scene, specs, reference)
    times["make"] = time.perf_counter() - start
    start = time.perf_counter()
    if args.api:
        ours = normalize_in_memory(truth, reference, api_settings(args.configfile))
        times["workflow"] = time.perf_counter() - start
    else:
        status = run_workflow(
            str(folder / "data" / "*.fits"),
            truth["frames"][reference]["path"],
            str(folder / "results"),
            cores=args.cores,
            configfile=args.configfile,
            extra=["--quiet"],
        )
        times["workflow"] = time.perf_counter() - start
        if status != 0:
            sys.exit(
                f"accuracy: the workflow failed on condition {name} (status {status}); "
                f"see {folder}/results/logs"
            )
        ours = [r for r in synthetic.evaluate(folder / "results", truth) if r["frame"] != reference]
    others = baselines(truth, {r["frame"]: r["m"] for r in ours})
    summary = {"nsgflow": summarize(ours), **{k: summarize(v) for k, v in others.items()}}
    for row in ours:
        spec = synthetic.spec_from_truth(truth["frames"][row["frame"]])
        row.update(fwhm=spec.fwhm_px, sky=spec.sky_adu, seed=seed)
    return summary, ours, others, times


def api_settings(configfile: str | None) -> dict:
    """The sections of a ``--configfile`` that :func:`nsgflow.normalize` takes."""
    if not configfile:
        return {}
    from nsgflow.settings import FRAME_SECTIONS
    from nsgflow.workflow import load_config

    return {k: v for k, v in load_config(Path(configfile)).items() if k in FRAME_SECTIONS}


def failures(summary: dict[str, float]) -> str:
    """The targets a summary misses, or ``yes``."""
    missed = [key for key, limit in TARGETS.items() if summary[key] > limit]
    return "yes" if not missed else "no: " + ", ".join(missed)


def print_table(results: dict[str, dict], seeds_met: dict[str, str] | None = None) -> None:
    """One markdown table: a row per condition, four columns per method, nsgflow's coverage and verdict.

    With ``seeds_met`` (several seeds), the verdict column counts the seeds whose set met every target.
    """
    head = ["condition"]
    for method in METHODS:
        head += [f"{method} m err % med", "worst", "rms", "worst box"]
    head += ["nsgflow m within 3 sigma", "seeds met" if seeds_met else "nsgflow meets targets"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for name, summary in results.items():
        cells = [name]
        for method in METHODS:
            s = summary[method]
            cells += [f"{100 * s['scale_median']:.3f}", f"{100 * s['scale_worst']:.3f}"]
            cells += [f"{s['rms']:.3f}", f"{s['worst_box']:.3f}"]
        cells.append(f"{100 * summary['nsgflow']['within_3_sigma']:.0f} %")
        cells.append(seeds_met[name] if seeds_met else failures(summary["nsgflow"]))
        print("| " + " | ".join(cells) + " |")


def parse_size(text: str) -> tuple[int, int]:
    """``'600x900'`` -> ``(600, 900)``: rows x columns."""
    try:
        ny, nx = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be ROWSxCOLUMNS, e.g. 600x900, not {text!r}") from None
    return ny, nx


def parse_seeds(text: str) -> list[int]:
    """``'0-3,7'`` -> ``[0, 1, 2, 3, 7]``."""
    seeds = []
    try:
        for part in text.split(","):
            low, _, high = part.partition("-")
            seeds += list(range(int(low), int(high or low) + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds must be like 0-9 or 1,4,7, not {text!r}") from None
    return seeds


def seeds_label(seeds: list[int]) -> str:
    """``[0, 1, 2, 7]`` -> ``'0-2, 7'``."""
    parts, start = [], seeds[0]
    for previous, current in zip(seeds, [*seeds[1:], None], strict=True):
        if current != previous + 1 if current is not None else True:
            parts.append(str(start) if start == previous else f"{start}-{previous}")
            start = current
    return ", ".join(parts)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Conditions: " + ", ".join(ALL_CONDITIONS),
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed of every frame set (default: 0)")
    parser.add_argument(
        "--seeds", type=parse_seeds, help="several seeds, e.g. 0-9: every condition with each, frames pooled"
    )
    parser.add_argument(
        "--api", action="store_true", help="normalize in memory (nsgflow.normalize), not with the workflow"
    )
    parser.add_argument("--size", type=parse_size, default=(600, 900), help="ROWSxCOLUMNS (default: 600x900)")
    parser.add_argument(
        "--frames", type=int, default=6, help="frames per set, reference included (default: 6)"
    )
    parser.add_argument(
        "--conditions",
        default="all",
        help="comma-separated conditions, 'a+b' for several in one set, or 'all' (default; with 'hard')",
    )
    parser.add_argument("--cores", default="2", help="CPU cores for Snakemake (default: 2)")
    parser.add_argument("--configfile", help="YAML file with nsgflow settings overriding config.yaml")
    parser.add_argument(
        "--out", help="work folder, one sub-folder per condition (default: a new folder under the temp dir)"
    )
    parser.add_argument("--details", action="store_true", help="also print nsgflow's per-frame results")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the table (stdout) and the timings (stderr)."""
    args = build_parser().parse_args(argv)
    names = list(ALL_CONDITIONS) if args.conditions == "all" else args.conditions.split(",")
    unknown = {c for name in names for c in name.split("+")} - set(ALL_CONDITIONS)
    if unknown:
        sys.exit(f"accuracy: unknown conditions {sorted(unknown)}")
    if args.configfile:
        args.configfile = str(Path(args.configfile).resolve())
    out = Path(args.out).resolve() if args.out else Path(tempfile.mkdtemp(prefix="nsgflow-accuracy-"))
    out.mkdir(parents=True, exist_ok=True)
    os.chdir(out)  # Snakemake keeps its metadata (.snakemake/) in the working directory
    seeds = args.seeds or [args.seed]
    pooled: dict[str, dict[str, list[dict]]] = {}
    met: dict[str, int] = {}
    start = time.perf_counter()
    for seed in seeds:
        for name in names:
            folder = out / (name if len(seeds) == 1 else f"{name}-seed{seed}")
            summary, rows, others, times = run_condition(name, folder, args, seed)
            runs = pooled.setdefault(name, {method: [] for method in METHODS})
            runs["nsgflow"] += rows
            for method, method_rows in others.items():
                runs[method] += method_rows
            met[name] = met.get(name, 0) + (failures(summary["nsgflow"]) == "yes")
            print(
                f"accuracy: {name}, seed {seed}: frames made in {times['make']:.0f} s, "
                f"{'normalized' if args.api else 'workflow'} {times['workflow']:.0f} s, "
                f"meets targets: {failures(summary['nsgflow'])}",
                file=sys.stderr,
                flush=True,
            )
    results = {name: {m: summarize(r) for m, r in runs.items()} for name, runs in pooled.items()}
    ny, nx = args.size
    label = f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {seeds_label(seeds)}, frames pooled"
    how = "nsgflow.normalize in memory" if args.api else "the workflow"
    print(f"\n## nsgflow accuracy: {ny}x{nx} px, {args.frames} frames, {label} ({how})\n")
    print_table(results, {n: f"{k}/{len(seeds)}" for n, k in met.items()} if len(seeds) > 1 else None)
    print(
        "\nm err: |m/m_true - 1| in %, median and worst over the target frames. rms: RMS of the 64x64 box "
        "medians of output minus ideal output, in reference sky sigmas, median frame; worst box: all frames. "
        "m within 3 sigma: frames whose true scale is within 3 reported sigmas."
    )
    print(
        "Targets: m err median <= {:g} %, worst <= {:g} %, rms <= {:g}, worst box <= {:g}.".format(
            100 * TARGETS["scale_median"], 100 * TARGETS["scale_worst"], TARGETS["rms"], TARGETS["worst_box"]
        )
    )
    print(f"\n### nsgflow's scale and its reported uncertainty ({label})\n")
    print_uncertainty_table(results)
    if args.details:
        print("\n| condition | seed | frame | m true | FWHM | sky | m err % | sigma % | rms | worst box |")
        print("|" + "---|" * 10)
        for name, runs in pooled.items():
            for r in runs["nsgflow"]:
                print(
                    f"| {name} | {r['seed']} | {r['frame']} | {r['m_true']:.3f} | {r['fwhm']:.2f} | "
                    f"{r['sky']:.0f} | {100 * r['scale_error']:+.3f} | {100 * r['m_err'] / r['m']:.3f} | "
                    f"{r['residual_rms']:.3f} | {r['residual_worst']:.3f} |"
                )
    print(f"\nwall time {time.perf_counter() - start:.0f} s; frames and results in {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
