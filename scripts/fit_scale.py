"""Snakemake script of rule fit_scale: nsgflow.pipeline.run_fit_scale."""

from nsgflow.jobserver import run_step

run_step(
    snakemake.log[0],
    "nsgflow.pipeline.run_fit_scale",
    snakemake.input.photometry,
    snakemake.input.aperture,
    dict(snakemake.output.items()),
    frame=snakemake.wildcards.frame,
    reference=snakemake.params.reference,
    settings=snakemake.params.settings,
)
