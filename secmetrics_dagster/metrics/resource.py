"""The metrics resource: where user metric files are, how much the engine may use, and the clock it computes at."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import ClassVar, Optional

from ..collection.context import parse_timestamp
from ..collection.errors import ConfigError
from ..collection.settings import SettingsResource, env_setting
from .collected import EngineSettings


class MetricsResource(SettingsResource):
    """METRICS_* settings. METRICS_PATH is read when the code loads (it decides which assets exist)."""

    settings_title: ClassVar[str] = "Metrics"

    path: Optional[str] = env_setting(
        "METRICS_PATH",
        "Directories (`:`-separated) of your own `metric_*.yml` files, added to the shipped library; a file with a "
        "shipped `metric_id` replaces it. Read when the code loads.",
    )
    memory_limit: str = env_setting(
        "METRICS_DUCKDB_MEMORY_LIMIT", "DuckDB's memory limit while metrics compute (spills to disk beyond).", "256MB"
    )
    threads: int = env_setting("METRICS_DUCKDB_THREADS", "DuckDB threads while metrics compute.", 2, low=1, high=64)
    # Plain config, not an environment variable: compute as if it were this UTC time (ISO 8601). metrics_now(),
    # metrics_today() and the rows' datestamp follow it; the tests simulate days with it.
    as_of: Optional[str] = None

    def clock(self) -> datetime:
        if not self.as_of:
            return datetime.now(UTC)
        try:
            return parse_timestamp(self.as_of)
        except ValueError:
            raise ConfigError(f"metrics resource as_of={self.as_of!r} is not an ISO 8601 time") from None

    def engine_settings(self) -> EngineSettings:
        return EngineSettings(memory_limit=self.memory_limit, threads=self.threads)
