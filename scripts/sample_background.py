"""Snakemake script of rule sample_background: nsgflow.pipeline.run_samples."""

from nsgflow.pipeline import run_samples, run_step

run_step(
    snakemake.log[0],
    run_samples,
    snakemake.input.frame,
    snakemake.input.reference,
    snakemake.input.scale,
    snakemake.input.catalogs,
    snakemake.input.stats,
    snakemake.output.samples,
    snakemake.params.settings,
)
