"""One module per vendor. Each exposes SOURCE (its SourceSpec), RESOURCE (its resource class, with
from_env()), assets, and sandbox_env(url, token); SOURCES lists them for the definitions, the README
tables and the demo. Adding a vendor = adding its module here."""

from . import snyk

SOURCES = [snyk]

__all__ = ["SOURCES"]
