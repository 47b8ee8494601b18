"""The collection resource: tenancy, spool location, HTTP behaviour and fallback, from the environment."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Optional

from .http import HttpSettings
from .settings import SettingsResource, env_setting
from .spool import default_spool_dir


class CollectionResource(SettingsResource):
    """Settings every source shares. TENANCY keeps the seed's name; the rest are COLLECTION_*."""

    settings_title: ClassVar[str] = "Collection"

    tenancy: str = env_setting(
        "TENANCY",
        "Tenant or organisation identifier stamped on every record and used in paths and tables (letters, digits, "
        "`.`, `_`, `-`); checked before anything is written.",
        "default",
    )
    spool_dir: Optional[str] = env_setting(
        "COLLECTION_SPOOL_DIR",
        "Directory of the local NDJSON spool each collection lands in before the stores.",
        default_text="the system temp directory",
    )
    http_connect_timeout: float = env_setting(
        "COLLECTION_HTTP_CONNECT_TIMEOUT", "Seconds to wait for a connection.", 10.0, low=0.1
    )
    http_read_timeout: float = env_setting(
        "COLLECTION_HTTP_READ_TIMEOUT", "Seconds to wait for an answer.", 60.0, low=0.1
    )
    http_max_retries: int = env_setting(
        "COLLECTION_HTTP_MAX_RETRIES",
        "Retries of one request (429, 5xx, timeouts, cut or malformed bodies).",
        5,
        low=0,
        high=100,
    )
    http_backoff_base: float = env_setting(
        "COLLECTION_HTTP_BACKOFF", "Seconds of the first backoff; doubled per retry, with jitter.", 1.0, low=0
    )
    http_max_wait: float = env_setting(
        "COLLECTION_HTTP_MAX_WAIT", "Seconds one request may spend waiting between its retries.", 300.0, low=0
    )
    progress_seconds: float = env_setting(
        "COLLECTION_PROGRESS_SECONDS",
        "Seconds between two progress lines of a long pull in the run log (records, requests, throttled waits, "
        "percent and time left where the API reports a total).",
        15.0,
        low=0.01,
    )
    fallback_to_backup: bool = env_setting(
        "COLLECTION_FALLBACK", "Serve the last S3 backup when a pull fails (true/false).", True
    )

    def spool_path(self) -> Path:
        return Path(self.spool_dir) if self.spool_dir else default_spool_dir()

    def http_settings(self, **overrides) -> HttpSettings:
        settings = dict(
            connect_timeout=self.http_connect_timeout,
            read_timeout=self.http_read_timeout,
            max_retries=self.http_max_retries,
            backoff_base=self.http_backoff_base,
            max_total_wait=self.http_max_wait,
        )
        settings.update(overrides)
        return HttpSettings(**settings)
