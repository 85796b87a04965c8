"""Snakemake script of rule export_xisf: nsgflow.pipeline.run_export_xisf."""

from nsgflow.jobserver import run_step

run_step(
    snakemake.log[0],
    "nsgflow.pipeline.run_export_xisf",
    snakemake.input.frame,
    snakemake.input.normalized,
    snakemake.output.xisf,
)
