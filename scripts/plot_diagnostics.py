"""Snakemake script of rule plot_diagnostics: nsgflow.pipeline.run_diagnostics."""

from nsgflow.pipeline import run_diagnostics, run_step

run_step(
    snakemake.log[0],
    run_diagnostics,
    snakemake.input.frame,
    snakemake.input.photometry,
    snakemake.input.scale,
    snakemake.input.samples,
    snakemake.input.gradient,
    dict(snakemake.output.items()),
)
