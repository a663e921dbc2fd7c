"""The package version (its own module, so `divrec.persist` can read it without importing
the package root that imports `divrec.persist`)."""

__version__ = "0.2.0"
