"""The AIPM Lambdas: the delegate API, the stream dispatcher, the GitHub client and the records layer."""

__version__ = "0.1.0"  # the distribution's version (pyproject.toml); the Lambda asset carries no metadata
