"""Snakemake script of rule blink: nsgflow.pipeline.run_blink."""

from nsgflow.jobserver import run_step

run_step(
    snakemake.log[0],
    "nsgflow.pipeline.run_blink",
    list(snakemake.input.thumbnails),
    list(snakemake.params.frames),
    snakemake.params.reference,
    dict(snakemake.output.items()),
)
