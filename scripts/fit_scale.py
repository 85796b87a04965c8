"""Snakemake script of rule fit_scale: nsgflow.pipeline.run_scale."""

from nsgflow.pipeline import run_scale, run_step

run_step(
    snakemake.log[0],
    run_scale,
    snakemake.input.table,
    snakemake.input.info,
    snakemake.output.scale,
    frame=snakemake.wildcards.frame,
    reference=snakemake.params.reference,
    settings=snakemake.params.settings,
)
