"""Snakemake script of rule blink: nsgflow.pipeline.run_blink."""

from nsgflow.pipeline import run_blink, run_step

run_step(
    snakemake.log[0],
    run_blink,
    list(snakemake.input.thumbnails),
    list(snakemake.params.frames),
    snakemake.params.reference,
    dict(snakemake.output.items()),
)
