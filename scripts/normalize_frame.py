"""Snakemake script of rule normalize_frame: nsgflow.pipeline.run_normalize."""

from nsgflow.pipeline import run_normalize, run_step

run_step(
    snakemake.log[0],
    run_normalize,
    snakemake.input.frame,
    snakemake.input.scale,
    snakemake.input.gradient,
    snakemake.output.normalized,
    reference=snakemake.params.reference,
    settings=snakemake.params.settings,
)
