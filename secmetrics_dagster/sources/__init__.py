"""One module per vendor. Each exposes SOURCE (its SourceSpec), RESOURCE (its resource class, with
from_env()), assets, and sandbox_env(url, token); SOURCES lists them for the definitions, the README
tables and the demo. Adding a vendor = adding its module here."""

from . import aws, crowdstrike, domains, knowbe4, microsoft365, okta, snyk, tenable

SOURCES = [snyk, crowdstrike, tenable, okta, microsoft365, knowbe4, domains, aws]

__all__ = ["SOURCES"]
