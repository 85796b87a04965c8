"""Snakemake script of rule photometry_graph: nsgflow.pipeline.run_photometry_graph."""

from nsgflow.jobserver import run_step

run_step(
    snakemake.log[0],
    "nsgflow.pipeline.run_photometry_graph",
    snakemake.input.photometry,
    snakemake.input.scale,
    snakemake.output.graph,
    frame=snakemake.wildcards.frame,
)
