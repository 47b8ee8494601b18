"""Local fake vendor APIs (deterministic data, injectable faults) for tests, demos and benchmarks of the collectors."""

from .aws import AwsVolume
from .crowdstrike import CrowdStrikeVolume
from .domains import DomainsVolume
from .knowbe4 import KnowBe4Volume
from .microsoft365 import Microsoft365Volume
from .okta import OktaVolume
from .server import Fault, Sandbox
from .snyk import SnykVolume  # importing a vendor module registers its routes with every Sandbox
from .tenable import TenableVolume

__all__ = [
    "AwsVolume",
    "CrowdStrikeVolume",
    "DomainsVolume",
    "Fault",
    "KnowBe4Volume",
    "Microsoft365Volume",
    "OktaVolume",
    "Sandbox",
    "SnykVolume",
    "TenableVolume",
]
