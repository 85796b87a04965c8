"""Snakemake script of rule summarize: nsgflow.summary.write_summary."""

from nsgflow.jobserver import run_step

run_step(
    snakemake.log[0],
    "nsgflow.summary.write_summary",
    snakemake.params.results,
    snakemake.params.frames,
    snakemake.params.reference,
    snakemake.params.reject,
)
