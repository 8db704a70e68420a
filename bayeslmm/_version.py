"""The package version (read by :mod:`bayeslmm.bayes.persist` without importing the package)."""

__version__ = "0.1.0"
