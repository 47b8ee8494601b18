"""The collection resource: tenancy, spool location, HTTP behaviour and fallback, from the environment."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import dagster as dg

from .env import env_flag, env_number
from .http import HttpSettings
from .spool import default_spool_dir


class CollectionResource(dg.ConfigurableResource):
    """Settings every source shares. TENANCY keeps the seed's name; the rest are COLLECTION_*."""

    tenancy: str = "default"
    spool_dir: Optional[str] = None
    http_connect_timeout: float = 10.0
    http_read_timeout: float = 60.0
    http_max_retries: int = 5
    http_backoff_base: float = 1.0
    http_max_wait: float = 300.0
    fallback_to_backup: bool = True

    @classmethod
    def from_env(cls) -> CollectionResource:
        return cls(
            tenancy=os.environ.get("TENANCY") or "default",
            spool_dir=os.environ.get("COLLECTION_SPOOL_DIR") or None,
            http_connect_timeout=env_number("COLLECTION_HTTP_CONNECT_TIMEOUT", 10.0, cast=float, low=0.1),
            http_read_timeout=env_number("COLLECTION_HTTP_READ_TIMEOUT", 60.0, cast=float, low=0.1),
            http_max_retries=env_number("COLLECTION_HTTP_MAX_RETRIES", 5, low=0, high=100),
            http_backoff_base=env_number("COLLECTION_HTTP_BACKOFF", 1.0, cast=float, low=0),
            http_max_wait=env_number("COLLECTION_HTTP_MAX_WAIT", 300.0, cast=float, low=0),
            fallback_to_backup=env_flag("COLLECTION_FALLBACK", True),
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
