"""The package version, in one place (read by setuptools and by every output that names it)."""

__version__ = "0.1.0"
