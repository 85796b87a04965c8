"""Snakemake script of rule detect_stars: nsgflow.pipeline.run_detect."""

from nsgflow.pipeline import run_detect, run_step

run_step(
    snakemake.log[0],
    run_detect,
    snakemake.input.frame,
    snakemake.output.catalog,
    snakemake.output.stats,
    snakemake.output.defects,
    snakemake.params.settings,
)
