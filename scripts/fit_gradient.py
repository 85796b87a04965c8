"""Snakemake script of rule fit_gradient: nsgflow.pipeline.run_fit_gradient."""

from nsgflow.jobserver import run_step

run_step(
    snakemake.log[0],
    "nsgflow.pipeline.run_fit_gradient",
    snakemake.input.samples,
    snakemake.input.record,
    dict(snakemake.output.items()),
    frame=snakemake.wildcards.frame,
    settings=snakemake.params.settings,
)
