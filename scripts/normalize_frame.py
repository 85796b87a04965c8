"""Snakemake script of rule normalize_frame: nsgflow.pipeline.run_normalize."""

from nsgflow.pipeline import run_normalize, run_step

upstream = {
    key: snakemake.input[key] for key in ("catalog", "ref_catalog", "photometry", "aperture", "samples")
}
run_step(
    snakemake.log[0],
    run_normalize,
    snakemake.input.frame,
    snakemake.input.scale,
    snakemake.input.gradient,
    snakemake.input.stats,
    snakemake.input.ref_stats,
    snakemake.output.normalized,
    snakemake.output.provenance,
    reference=snakemake.input.reference,
    upstream=upstream,
    settings=snakemake.params.settings,
    workflow_folder=snakemake.params.workflow_folder,
)
