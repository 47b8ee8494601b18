"""One module per vendor. Each exposes SOURCE (its SourceSpec), RESOURCE (its resource class, with
from_env()), assets, and sandbox_env(url, token); SOURCES lists them for the definitions, the README
tables and the demo. Adding a vendor = adding its module here."""

from . import aws
from . import crowdstrike
from . import domains
from . import knowbe4
from . import microsoft365
from . import okta
from . import snyk
from . import tenable

SOURCES = [snyk, crowdstrike, tenable, okta, microsoft365, knowbe4, domains, aws]

__all__ = ["SOURCES"]
