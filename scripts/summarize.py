"""Snakemake script of rule summarize: nsgflow.summary.write_summary."""

from nsgflow.pipeline import run_step
from nsgflow.summary import write_summary

run_step(
    snakemake.log[0],
    write_summary,
    snakemake.params.results,
    snakemake.params.frames,
    snakemake.params.reference,
    snakemake.params.reject,
)
