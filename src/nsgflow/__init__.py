"""nsgflow: NormalizeScaleGradient-style normalization of astronomical light frames.

Public API (arrays in, arrays out; see :mod:`nsgflow.api`)::

    result = nsgflow.normalize(target, reference, gradient={"smoothness": -1.0})
    result.normalized, result.scale, result.scale_err, result.gradient, result.weight

and the per-stage functions the workflow uses: :func:`detect_stars`,
:func:`match_stars`, :func:`measure_photometry`, :func:`fit_scale`,
:func:`sample_background`, :func:`fit_gradient`.

The science lives in pure functions on arrays (``detect``, ``match``,
``photometry``, ``scale``, ``gradient``, ``spline``, ``normalized``),
composed per workflow stage in ``stages``; ``io`` reads and writes files;
``pipeline`` runs one stage from files to files; ``cli`` is the command.
"""

from functools import cache
from importlib import import_module

#: Per-stage algorithm versions. Bump a stage's number when a change to its code
#: changes its numbers: the workflow passes it as a rule parameter, so Snakemake
#: reruns that stage and everything after it.
ALGORITHM_VERSIONS = {
    "detect": 8,
    "photometry": 13,
    "scale": 3,
    "samples": 10,
    "gradient": 8,
    "normalize": 1,
    "diagnostics": 3,
}

#: Public names, loaded on first use so that importing nsgflow stays light.
_PUBLIC = {
    "normalize": "nsgflow.api",
    "NormalizeResult": "nsgflow.api",
    "default_settings": "nsgflow.api",
    "detect_stars": "nsgflow.detect",
    "match_stars": "nsgflow.match",
    "measure_photometry": "nsgflow.photometry",
    "fit_scale": "nsgflow.scale",
    "sample_background": "nsgflow.gradient",
    "fit_gradient": "nsgflow.spline",
}

__all__ = ["ALGORITHM_VERSIONS", "__version__", *_PUBLIC]


@cache
def _version() -> str:
    """The installed package's version; looked up on first use (importlib.metadata is slow to import)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("nsgflow")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "0+unknown"


def __getattr__(name: str) -> object:
    if name == "__version__":
        return _version()
    if name in _PUBLIC:
        return getattr(import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'nsgflow' has no attribute {name!r}")
