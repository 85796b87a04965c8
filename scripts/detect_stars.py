"""Snakemake script of rule detect_stars: nsgflow.pipeline.run_detect."""

from nsgflow.jobserver import run_step

run_step(
    snakemake.log[0],
    "nsgflow.pipeline.run_detect",
    snakemake.input.frame,
    dict(snakemake.output.items()),
    snakemake.params.settings,
)
