"""nsgflow: NormalizeScaleGradient-style normalization of astronomical light frames.

The science lives in pure functions on arrays (``detect``, ``match``,
``photometry``, ``scale``, ``gradient``, ``spline``, ``normalize``); ``io``
reads and writes files; ``pipeline`` runs one workflow stage from files to
files; ``cli`` is the ``nsgflow`` command.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("nsgflow")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

#: Per-stage algorithm versions. Bump a stage's number when a change to its code
#: changes its numbers: the workflow passes it as a rule parameter, so Snakemake
#: reruns that stage and everything after it.
ALGORITHM_VERSIONS = {
    "detect": 1,
    "photometry": 1,
    "scale": 1,
    "samples": 1,
    "gradient": 1,
    "normalize": 1,
}
