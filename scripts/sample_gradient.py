"""Snakemake script of rule sample_gradient: nsgflow.pipeline.run_sample_gradient."""

from nsgflow.jobserver import run_step

run_step(
    snakemake.log[0],
    "nsgflow.pipeline.run_sample_gradient",
    snakemake.input.frame,
    snakemake.input.reference,
    {key: path for key, path in snakemake.input.items() if key not in ("frame", "reference", "settings")},
    dict(snakemake.output.items()),
    settings=snakemake.params.settings,
)
