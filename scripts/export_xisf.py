"""Snakemake script of rule export_xisf: nsgflow.pipeline.run_export_xisf."""

from nsgflow.pipeline import run_export_xisf, run_step

run_step(
    snakemake.log[0],
    run_export_xisf,
    snakemake.input.frame,
    snakemake.input.normalized,
    snakemake.output.xisf,
)
