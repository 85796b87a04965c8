"""Snakemake script of checkpoint choose_reference: nsgflow.pipeline.run_choose_reference."""

from nsgflow.jobserver import run_step

run_step(
    snakemake.log[0],
    "nsgflow.pipeline.run_choose_reference",
    list(snakemake.input),
    snakemake.output.table,
    snakemake.output.chosen,
)
