"""Posture metrics: YAML definitions in the seed project's format, computed in DuckDB over the newest collected
data, as Dagster assets with SLO checks, a scorecard and daily history in every store."""

from .assets import GROUP, RESOURCE_KEY, SCORECARD, MetricAssets, build_metrics
from .definition import Library, MetricDefinition, Problem, load_library
from .resource import MetricsResource

__all__ = [
    "GROUP",
    "RESOURCE_KEY",
    "SCORECARD",
    "Library",
    "MetricAssets",
    "MetricDefinition",
    "MetricsResource",
    "Problem",
    "build_metrics",
    "load_library",
]
