"""Snakemake script of rule measure_photometry: nsgflow.pipeline.run_photometry."""

from nsgflow.pipeline import run_photometry, run_step

run_step(
    snakemake.log[0],
    run_photometry,
    snakemake.input.frame,
    snakemake.input.reference,
    snakemake.input.catalog,
    snakemake.input.ref_catalog,
    snakemake.input.stats,
    snakemake.input.defects,
    snakemake.output.table,
    snakemake.output.info,
    snakemake.params.match,
    snakemake.params.settings,
)
