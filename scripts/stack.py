"""Snakemake script of rule stack: nsgflow.pipeline.run_stack."""

from nsgflow.jobserver import run_step

run_step(
    snakemake.log[0],
    "nsgflow.pipeline.run_stack",
    snakemake.input.accepted,
    snakemake.input.weights,
    snakemake.output.stack,
    snakemake.output.rejected,
    snakemake.params.settings,
)
