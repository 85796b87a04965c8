"""Snakemake script of rule sample_map: nsgflow.pipeline.run_sample_map."""

from nsgflow.jobserver import run_step

run_step(
    snakemake.log[0],
    "nsgflow.pipeline.run_sample_map",
    snakemake.input.frame,
    snakemake.input.samples,
    snakemake.output.graph,
)
