"""Snakemake script of rule index_provenance: nsgflow.provenance.write_index."""

from nsgflow.pipeline import run_step
from nsgflow.provenance import write_index

run_step(snakemake.log[0], write_index, list(snakemake.input), snakemake.output.index)
