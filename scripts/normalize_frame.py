"""Snakemake script of rule normalize_frame: nsgflow.pipeline.run_normalize_frame."""

from nsgflow.jobserver import run_step

run_step(
    snakemake.log[0],
    "nsgflow.pipeline.run_normalize_frame",
    snakemake.input.frame,
    snakemake.input.reference,
    {
        key: snakemake.input[key]
        for key in ("catalog", "ref_catalog", "stats", "ref_stats", "defects", "ref_defects")
    },
    dict(snakemake.output.items()),
    frame_label=snakemake.wildcards.frame,
    reference_label=snakemake.params.reference,
    settings=snakemake.params.settings,
    workflow_folder=snakemake.params.workflow_folder,
)
