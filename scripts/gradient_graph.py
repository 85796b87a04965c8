"""Snakemake script of rule gradient_graph: nsgflow.pipeline.run_gradient_graph."""

from nsgflow.jobserver import run_step

run_step(
    snakemake.log[0],
    "nsgflow.pipeline.run_gradient_graph",
    snakemake.input.gradient,
    snakemake.input.samples,
    snakemake.output.graph,
    frame=snakemake.wildcards.frame,
)
