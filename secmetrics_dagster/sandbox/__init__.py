"""Local fake vendor APIs (deterministic data, injectable faults) for tests, demos and benchmarks of the collectors."""

from .server import Fault, Sandbox
from .snyk import SnykVolume  # importing a vendor module registers its routes with every Sandbox

__all__ = ["Fault", "Sandbox", "SnykVolume"]
