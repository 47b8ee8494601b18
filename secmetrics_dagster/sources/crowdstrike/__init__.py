"""CrowdStrike Falcon: hosts, Spotlight vulnerabilities and Zero Trust assessments, through falconpy's service classes.

The package: api.py (clouds, operations, answers), token.py (the OAuth2 token, renewed by one thread ahead of its
expiry), client.py (falconpy behind retries, counters and rate-limit pacing), paging.py (how each collection is
walked, the Spotlight cursor resumed when it expires), pulls.py; the declaration is here.
"""

from __future__ import annotations

import os
from typing import Any, Optional

from ...collection.env import env_number, secret_env
from ...collection.errors import ConfigError
from ...collection.http import HttpSettings
from ...collection.threads import ordered_map
from ..base import DatasetSpec, EnvVarDoc, SourceSpec, VendorResource, build_assets
from .api import (
    DEFAULT_REGION,
    DEVICE_DETAILS,
    DEVICES,
    MAX_PAGE,
    REGION_URLS,
    SPOTLIGHT,
    VENDOR,
    ZTA,
    Endpoint,
    FalconApiError,
    resolve_base_url,
)
from .client import FalconClient
from .paging import DEFAULT_SPOTLIGHT_FILTER, SPOTLIGHT_FACETS, SPOTLIGHT_SORT
from .pulls import pull_hosts, pull_vulnerabilities, pull_zero_trust_assessment

ZTA_BATCH = 100  # ids travel in the query string, one `ids=` each

SOURCE = SourceSpec(
    group="crowdstrike",
    title="CrowdStrike Falcon",
    docs_url="https://falcon.crowdstrike.com/documentation/page/a2a7fc0e/crowdstrike-oauth2-based-apis",
    resource_key="crowdstrike",
    env_vars=(
        EnvVarDoc(
            "FALCON_CLIENT_ID",
            "API client ID (scopes: Hosts, Vulnerabilities, Zero Trust Assessment: read).",
            required=True,
        ),
        EnvVarDoc("FALCON_SECRET", "API client secret.", required=True, secret=True),
        EnvVarDoc(
            "FALCON_BASE_URL",
            "Cloud: a region (`us-1`, `us-2`, `eu-1`, `us-gov-1`, `us-gov-2`) or an http(s) URL "
            "(proxy, private endpoint). A URL is kept even when a token answer names another region.",
            DEFAULT_REGION,
        ),
        EnvVarDoc("FALCON_SPOTLIGHT_FILTER", "FQL filter of `crowdstrike_vulnerabilities`.", DEFAULT_SPOTLIGHT_FILTER),
        EnvVarDoc("FALCON_SPOTLIGHT_LIMIT", "Spotlight page size (1-5000).", "1000"),
        EnvVarDoc("FALCON_HOSTS_LIMIT", "Host ids per devices query page (1-5000).", "5000"),
        EnvVarDoc(
            "FALCON_HOSTS_DETAILS_BATCH",
            "Host ids per details request (1-5000); with FALCON_WORKERS, what a pull holds in memory.",
            "100",
        ),
        EnvVarDoc("FALCON_WORKERS", "Detail and assessment batches fetched at once (1 = one at a time).", "8"),
        EnvVarDoc(
            "FALCON_PROXY",
            "Proxy URL for every Falcon request (falconpy's `proxy`); unset, `HTTPS_PROXY` "
            "applies. A private CA: `REQUESTS_CA_BUNDLE`.",
        ),
    ),
    datasets=(
        DatasetSpec(
            "crowdstrike_hosts",
            "Hosts",
            "Every host with its details: ids paged from the devices query, details fetched in concurrent "
            "batches, each id once; the count is checked against `meta.pagination.total`.",
            "GET /devices/queries/devices/v1 + POST /devices/entities/devices/v2",
            required_fields=("device_id", "hostname", "platform_name", "last_seen"),
        ),
        DatasetSpec(
            "crowdstrike_vulnerabilities",
            "Spotlight vulnerabilities",
            "Vulnerabilities matching `FALCON_SPOTLIGHT_FILTER`, with the cve, host_info and remediation facets, "
            "paged with the `after` cursor; an expired cursor resumes from the last `created_timestamp`.",
            "GET /spotlight/combined/vulnerabilities/v1",
            required_fields=("id", "aid", "status", "cve.id", "created_timestamp"),
            allow_empty=True,
        ),
        DatasetSpec(
            "crowdstrike_zero_trust_assessment",
            "Zero Trust assessments",
            "The Zero Trust assessment of each host in `crowdstrike_hosts` (hosts without one are counted in the log).",
            "GET /zero-trust-assessment/entities/assessments/v1?ids=…",
            deps=("crowdstrike_hosts",),
            required_fields=("aid", "assessment.overall"),
            allow_empty=True,
        ),
    ),
)


class CrowdStrikeResource(VendorResource):
    """Falcon API client credentials, cloud and paging. The credentials enter config only as EnvVar references."""

    client_id: Optional[str] = None
    client_secret: Optional[str] = None
    base_url: str = DEFAULT_REGION
    spotlight_filter: str = DEFAULT_SPOTLIGHT_FILTER
    spotlight_limit: int = 1000
    hosts_limit: int = 5000
    details_batch: int = 100
    zta_batch: int = ZTA_BATCH
    workers: int = 8
    proxy: Optional[str] = None
    # X-Ratelimit-Limit counts requests per minute on Falcon; a sandbox may use a shorter window.
    rate_limit_window: float = 60.0

    @classmethod
    def from_env(cls) -> CrowdStrikeResource:
        return cls(
            client_id=secret_env("FALCON_CLIENT_ID"),
            client_secret=secret_env("FALCON_SECRET"),
            base_url=os.environ.get("FALCON_BASE_URL") or DEFAULT_REGION,
            spotlight_filter=os.environ.get("FALCON_SPOTLIGHT_FILTER") or DEFAULT_SPOTLIGHT_FILTER,
            spotlight_limit=env_number("FALCON_SPOTLIGHT_LIMIT", 1000, low=1, high=MAX_PAGE),
            hosts_limit=env_number("FALCON_HOSTS_LIMIT", 5000, low=1, high=MAX_PAGE),
            details_batch=env_number("FALCON_HOSTS_DETAILS_BATCH", 100, low=1, high=MAX_PAGE),
            workers=env_number("FALCON_WORKERS", 8, low=1, high=64),
            proxy=os.environ.get("FALCON_PROXY") or None,
        )

    def missing_env(self) -> list[str]:
        return [
            name
            for name, value in (("FALCON_CLIENT_ID", self.client_id), ("FALCON_SECRET", self.client_secret))
            if not value
        ]

    def session(self, settings: HttpSettings, logger: Any = None) -> FalconClient:
        for name, value, high in (
            ("spotlight_limit", self.spotlight_limit, MAX_PAGE),
            ("hosts_limit", self.hosts_limit, MAX_PAGE),
            ("details_batch", self.details_batch, MAX_PAGE),
            ("zta_batch", self.zta_batch, 1000),
            ("workers", self.workers, 64),
        ):
            if not 1 <= value <= high:
                raise ConfigError(f"{VENDOR}: {name} must be from 1 to {high}, got {value}")
        return FalconClient(self, settings, logger)


def sandbox_env(url: str, token: str) -> dict[str, str]:
    """Variables that point this source at the bundled sandbox (make demo, benchmarks)."""
    return {"FALCON_CLIENT_ID": "sandbox-client", "FALCON_SECRET": token, "FALCON_BASE_URL": url}


RESOURCE = CrowdStrikeResource
assets = build_assets(
    SOURCE,
    {
        "crowdstrike_hosts": pull_hosts,
        "crowdstrike_vulnerabilities": pull_vulnerabilities,
        "crowdstrike_zero_trust_assessment": pull_zero_trust_assessment,
    },
)

__all__ = [
    "DEFAULT_REGION",
    "DEFAULT_SPOTLIGHT_FILTER",
    "DEVICES",
    "DEVICE_DETAILS",
    "REGION_URLS",
    "RESOURCE",
    "SOURCE",
    "SPOTLIGHT",
    "SPOTLIGHT_FACETS",
    "SPOTLIGHT_SORT",
    "ZTA",
    "CrowdStrikeResource",
    "Endpoint",
    "FalconApiError",
    "FalconClient",
    "assets",
    "ordered_map",
    "pull_hosts",
    "pull_vulnerabilities",
    "pull_zero_trust_assessment",
    "resolve_base_url",
    "sandbox_env",
]
