"""One module per vendor; SOURCES lists them for the definitions, the README table and the demo."""

from . import snyk

SOURCES = [snyk]

__all__ = ["SOURCES", "snyk"]
