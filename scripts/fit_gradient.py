"""Snakemake script of rule fit_gradient: nsgflow.pipeline.run_gradient."""

from nsgflow.pipeline import run_gradient, run_step

run_step(
    snakemake.log[0],
    run_gradient,
    snakemake.input.samples,
    snakemake.input.frame,
    snakemake.output.gradient,
    snakemake.output.curvature,
    snakemake.params.settings,
)
