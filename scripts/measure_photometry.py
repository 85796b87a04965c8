"""Snakemake script of rule measure_photometry: nsgflow.pipeline.run_measure_photometry."""

from nsgflow.jobserver import run_step

run_step(
    snakemake.log[0],
    "nsgflow.pipeline.run_measure_photometry",
    snakemake.input.frame,
    snakemake.input.reference,
    {
        key: snakemake.input[key]
        for key in ("stats", "catalog", "defects", "ref_stats", "ref_catalog", "ref_defects")
    },
    dict(snakemake.output.items()),
    match=snakemake.params.match,
    settings=snakemake.params.settings,
)
