"""CrowdStrike Falcon: hosts, Spotlight vulnerabilities and Zero Trust assessments, through falconpy's service classes.

The package: api.py (clouds, operations, answers), token.py (the OAuth2 token, renewed by one thread ahead of its
expiry), client.py (falconpy behind retries, counters and rate-limit pacing), paging.py (how each collection is
walked, the Spotlight cursor resumed when it expires), pulls.py; the declaration is here.
"""

from __future__ import annotations

from typing import Any, ClassVar, Optional

from ...collection.errors import ConfigError
from ...collection.http import HttpSettings
from ...collection.settings import env_setting
from ..base import VendorResource
from ..catalog import declare_source
from .api import DEFAULT_REGION, DEVICE_DETAILS, DEVICES, MAX_PAGE, SPOTLIGHT, VENDOR, ZTA, resolve_base_url
from .client import FalconClient
from .paging import DEFAULT_SPOTLIGHT_FILTER
from .pulls import pull_hosts, pull_vulnerabilities, pull_zero_trust_assessment

ZTA_BATCH = 100  # ids travel in the query string, one `ids=` each


class CrowdStrikeResource(VendorResource):
    """Falcon API client credentials, cloud and paging. The credentials enter config only as EnvVar references."""

    settings_title: ClassVar[str] = "CrowdStrike Falcon"

    client_id: Optional[str] = env_setting(
        "FALCON_CLIENT_ID",
        "API client ID (scopes: Hosts, Vulnerabilities, Zero Trust Assessment: read).",
        required=True,
        secret=True,
    )
    client_secret: Optional[str] = env_setting("FALCON_SECRET", "API client secret.", required=True, secret=True)
    base_url: str = env_setting(
        "FALCON_BASE_URL",
        "Cloud: a region (`us-1`, `us-2`, `eu-1`, `us-gov-1`, `us-gov-2`) or an http(s) URL "
        "(proxy, private endpoint). From `us-1`, `us-2`, `eu-1` or `us-gov-1` the pull moves to the one of these a "
        "token answer names; `us-gov-2` and a URL are kept whatever it names.",
        DEFAULT_REGION,
    )
    spotlight_filter: str = env_setting(
        "FALCON_SPOTLIGHT_FILTER", "FQL filter of `crowdstrike_vulnerabilities`.", DEFAULT_SPOTLIGHT_FILTER
    )
    spotlight_limit: int = env_setting(
        "FALCON_SPOTLIGHT_LIMIT", "Spotlight page size (1-5000).", 1000, low=1, high=MAX_PAGE
    )
    hosts_limit: int = env_setting(
        "FALCON_HOSTS_LIMIT", "Host ids per devices query page (1-5000).", 5000, low=1, high=MAX_PAGE
    )
    details_batch: int = env_setting(
        "FALCON_HOSTS_DETAILS_BATCH",
        "Host ids per details request (1-5000); with FALCON_WORKERS, what a pull holds in memory.",
        100,
        low=1,
        high=MAX_PAGE,
    )
    workers: int = env_setting(
        "FALCON_WORKERS", "Detail and assessment batches fetched at once (1 = one at a time).", 8, low=1, high=64
    )
    proxy: Optional[str] = env_setting(
        "FALCON_PROXY",
        "Proxy URL for every Falcon request (falconpy's `proxy`); unset, `HTTPS_PROXY` "
        "applies. A private CA: `REQUESTS_CA_BUNDLE`.",
    )
    zta_batch: int = ZTA_BATCH
    # X-Ratelimit-Limit counts requests per minute on Falcon; a sandbox may use a shorter window.
    rate_limit_window: float = 60.0

    def validate_settings(self) -> None:
        if not 1 <= self.zta_batch <= 1000:
            raise ConfigError(f"{VENDOR}: zta_batch must be from 1 to 1000, got {self.zta_batch}")
        resolve_base_url(self.base_url)

    def client(self, settings: HttpSettings, logger: Any = None) -> FalconClient:
        return FalconClient(self, settings, logger)


def _sandbox_env(url: str, token: str) -> dict[str, str]:
    """Variables that point this source at the bundled sandbox (make demo, benchmarks)."""
    return {"FALCON_CLIENT_ID": "sandbox-client", "FALCON_SECRET": token, "FALCON_BASE_URL": url}


SOURCE = declare_source(__name__, "datasets.yaml", CrowdStrikeResource, sandbox_env=_sandbox_env)

# SOURCE is the declaration and the pulls its catalog names; the rest is what tests and benchmarks reach for.
__all__ = [
    "DEFAULT_SPOTLIGHT_FILTER",
    "DEVICES",
    "DEVICE_DETAILS",
    "MAX_PAGE",
    "SOURCE",
    "SPOTLIGHT",
    "ZTA",
    "CrowdStrikeResource",
    "FalconClient",
    "pull_hosts",
    "pull_vulnerabilities",
    "pull_zero_trust_assessment",
    "resolve_base_url",
]
