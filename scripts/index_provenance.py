"""Snakemake script of rule index_provenance: nsgflow.provenance.write_index."""

from nsgflow.jobserver import run_step

run_step(snakemake.log[0], "nsgflow.provenance.write_index", list(snakemake.input), snakemake.output.index)
