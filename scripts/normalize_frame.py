"""Snakemake script of rule normalize_frame: nsgflow.pipeline.run_normalize_frame."""

from nsgflow.jobserver import run_step

run_step(
    snakemake.log[0],
    "nsgflow.pipeline.run_normalize_frame",
    snakemake.input.frame,
    snakemake.input.reference,
    {
        key: value
        for key, value in snakemake.input.items()
        if key not in ("frame", "reference", "choice", "settings")
    },
    dict(snakemake.output.items()),
    settings=snakemake.params.settings,
    workflow_folder=snakemake.params.workflow_folder,
)
