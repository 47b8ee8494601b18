"""One module (or package) per vendor, each exporting one `Source` named SOURCE; SOURCES lists them for the
definitions, the README tables, the schedule and the demo. Adding a vendor = adding its SOURCE here."""

from .aws import SOURCE as AWS
from .base import DatasetSpec, DatasetUnavailable, Pull, Source, VendorResource
from .crowdstrike import SOURCE as CROWDSTRIKE
from .domains import SOURCE as DOMAINS
from .knowbe4 import SOURCE as KNOWBE4
from .microsoft365 import SOURCE as MICROSOFT365
from .okta import SOURCE as OKTA
from .snyk import SOURCE as SNYK
from .tenable import SOURCE as TENABLE

SOURCES: list[Source] = [SNYK, CROWDSTRIKE, TENABLE, OKTA, MICROSOFT365, KNOWBE4, DOMAINS, AWS]

__all__ = ["SOURCES", "DatasetSpec", "DatasetUnavailable", "Pull", "Source", "VendorResource"]
