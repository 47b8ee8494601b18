"""CrowdStrike Falcon: hosts, Spotlight vulnerabilities and Zero Trust assessments, through falconpy's service classes.

The package: api.py (clouds, operations, answers), token.py (the OAuth2 token, renewed by one thread ahead of its
expiry), client.py (falconpy behind retries, counters and rate-limit pacing), paging.py (how each collection is
walked, the Spotlight cursor resumed when it expires), pulls.py; the declaration is here.
"""

from __future__ import annotations

from typing import Any, ClassVar, Optional

from ...collection.columns import col
from ...collection.errors import ConfigError
from ...collection.http import HttpSettings
from ...collection.settings import env_setting
from ..base import DatasetSpec, Source, VendorResource
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


SOURCE = Source(
    group="crowdstrike",
    title="CrowdStrike Falcon",
    docs_url="https://falcon.crowdstrike.com/documentation/page/a2a7fc0e/crowdstrike-oauth2-based-apis",
    resource=CrowdStrikeResource,
    datasets=(
        DatasetSpec(
            "crowdstrike_hosts",
            "Hosts",
            "Every host with its details: ids paged from the devices query, details fetched in concurrent "
            "batches, each id once; the count is checked against `meta.pagination.total`.",
            "GET /devices/queries/devices-scroll/v1 + POST /devices/entities/devices/v2",
            pull=pull_hosts,
            required_fields=("device_id", "hostname", "platform_name", "last_seen"),
            columns=(
                col("device_id", "text", "Host id (aid; join to vulnerabilities' aid and ZTA's aid)."),
                col("hostname", "text", "Host name."),
                col("serial_number", "text", "Hardware serial number (join to Intune's serial_number)."),
                col("platform_name", "text", "Windows, Mac or Linux."),
                col("os_version", "text", "Operating system version."),
                col("os_product_name", "text", "Operating system product."),
                col("product_type_desc", "text", "Workstation, Server or Domain Controller."),
                col("agent_version", "text", "Falcon sensor version."),
                col("first_seen", "timestamp", "First time the sensor checked in."),
                col("last_seen", "timestamp", "Last time the sensor checked in (sensor coverage)."),
                col("modified_timestamp", "timestamp", "Last change of the host record."),
                col("status", "text", "normal, containment_pending, contained, ..."),
                col("reduced_functionality_mode", "text", "yes when the sensor runs with reduced functionality."),
                col("provision_status", "text", "Provisioned or NotProvisioned."),
                col("local_ip", "text", "Local IP address."),
                col("external_ip", "text", "External IP address."),
                col("mac_address", "text", "MAC address."),
                col("machine_domain", "text", "Active Directory domain."),
                col("site_name", "text", "Active Directory site."),
                col("system_manufacturer", "text", "Manufacturer."),
                col("device_policies.prevention.applied", "boolean", "The prevention policy is applied."),
                col(
                    "device_policies.sensor_update.uninstall_protection",
                    "text",
                    "Sensor uninstall protection: ENABLED or not.",
                ),
                col("tags", "json", "Sensor grouping and Falcon grouping tags."),
            ),
        ),
        DatasetSpec(
            "crowdstrike_vulnerabilities",
            "Spotlight vulnerabilities",
            "Vulnerabilities matching `FALCON_SPOTLIGHT_FILTER`, with the cve, host_info and remediation facets, "
            "paged with the `after` cursor; an expired cursor resumes from the last `created_timestamp`.",
            "GET /spotlight/combined/vulnerabilities/v1",
            pull=pull_vulnerabilities,
            required_fields=("id", "aid", "status", "cve.id", "created_timestamp"),
            allow_empty=True,
            columns=(
                col("id", "text", "Vulnerability (host x CVE) id."),
                col("aid", "text", "Host id (join to crowdstrike_hosts.device_id)."),
                col("status", "text", "open, reopen, closed or expired."),
                col("created_timestamp", "timestamp", "When Spotlight first found it on the host."),
                col("updated_timestamp", "timestamp", "Last change."),
                col("closed_timestamp", "timestamp", "When it was closed, if it was."),
                col("confidence", "text", "confirmed or potential."),
                col("cve.id", "text", "CVE id."),
                col("cve.base_score", "float", "CVSS base score."),
                col("cve.severity", "text", "CRITICAL, HIGH, MEDIUM, LOW, NONE, UNKNOWN."),
                col(
                    "cve.exploit_status",
                    "integer",
                    "Exploit status: 0 unproven, 30 available, 60 easily accessible, 90 actively used.",
                ),
                col("cve.exprt_rating", "text", "CrowdStrike ExPRT rating."),
                col("cve.remediation_level", "text", "O: an official fix exists; U: unavailable."),
                col("cve.cisa_info.is_cisa_kev", "boolean", "Listed in CISA's Known Exploited Vulnerabilities."),
                col("cve.published_date", "timestamp", "When the CVE was published."),
                col("host_info.hostname", "text", "Host name."),
                col("host_info.platform", "text", "Platform."),
                col("host_info.asset_criticality", "text", "Asset criticality."),
                col("host_info.internet_exposure", "text", "Internet exposure: Yes or No."),
                col("suppression_info.is_suppressed", "boolean", "Suppressed by a rule."),
                col("remediation.entities", "json", "Remediations (patches, upgrades)."),
            ),
        ),
        DatasetSpec(
            "crowdstrike_zero_trust_assessment",
            "Zero Trust assessments",
            "The Zero Trust assessment of each host in `crowdstrike_hosts` (hosts without one are counted in the log).",
            "GET /zero-trust-assessment/entities/assessments/v1?ids=…",
            pull=pull_zero_trust_assessment,
            deps=("crowdstrike_hosts",),
            required_fields=("aid", "assessment.overall"),
            allow_empty=True,
            columns=(
                col("aid", "text", "Host id (join to crowdstrike_hosts.device_id)."),
                col("system_serial_number", "text", "Serial number."),
                col("event_platform", "text", "Win, Mac or Lin."),
                col("product_type_desc", "text", "Workstation, Server or Domain Controller."),
                col("sensor_file_status", "text", "Sensor file status."),
                col("assessment.overall", "integer", "Overall Zero Trust score (0-100)."),
                col("assessment.os", "integer", "Operating system score."),
                col("assessment.sensor_config", "integer", "Sensor configuration score."),
                col("assessment.version", "text", "Assessment version."),
                col("modified_time", "timestamp", "When the assessment was made."),
                col("assessment_items.os_signals", "json", "OS signals and whether each meets criteria."),
            ),
        ),
    ),
    sandbox_env=_sandbox_env,
)

# SOURCE is the declaration; the rest is what tests and benchmarks reach for.
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
    "resolve_base_url",
]
