"""Tenable.io (Tenable Vulnerability Management): assets, vulnerabilities and compliance exports, and WAS findings.

Built on pyTenable: exports are chunked jobs on Tenable's side (exports.py), WAS is pyTenable's three-step flow.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Optional

from ...collection.columns import col
from ...collection.errors import ConfigError
from ...collection.http import HttpSession, HttpSettings, normalize_base_url
from ...collection.settings import env_setting
from ..base import DatasetSpec, Pull, Source, VendorResource

# pyTenable (client.py, exports.py) is imported by the pulls, not here: the processes that import the definitions
# but never pull (webserver, daemon, code server) do not load it (12.7 MB of RSS, measured). Step processes get it
# from the forkserver's preload (definitions.PRELOADED_SDKS).
VENDOR = "Tenable.io"
AUTH_HINT = (
    "Check TIO_ACCESS_KEY and TIO_SECRET_KEY: they must be an active API key pair of a Tenable Vulnerability "
    "Management user (401), and that user must be allowed to read and export the data (403); TIO_URL must be "
    "your Tenable site"
)

DEFAULT_URL = "https://cloud.tenable.com"
DEFAULT_STATES = "open,reopened,fixed"
VULN_STATES = ("OPEN", "REOPENED", "FIXED")


class TenableResource(VendorResource):
    """Tenable.io keys, site and export settings. The keys enter config only as EnvVar references."""

    settings_title: ClassVar[str] = "Tenable.io"

    access_key: Optional[str] = env_setting(
        "TIO_ACCESS_KEY", "API access key, sent as `X-APIKeys: accessKey=…; secretKey=…`.", required=True, secret=True
    )
    secret_key: Optional[str] = env_setting(
        "TIO_SECRET_KEY", "API secret key of the same key pair.", required=True, secret=True
    )
    url: str = env_setting("TIO_URL", "Tenable site; any host or port (proxies), http or https.", DEFAULT_URL)
    vuln_states: str = env_setting(
        "TIO_VULN_STATES",
        "Vulnerability states to export, comma-separated from open, reopened, fixed "
        "(Tenable's own default leaves fixed out).",
        DEFAULT_STATES,
    )
    since_days: int = env_setting(
        "TIO_SINCE_DAYS",
        "Time window in days, counted from midnight UTC: vulnerabilities seen or changed "
        "in any state (`since`), compliance findings seen (`last_seen`), WAS scans started. Assets are "
        "always exported whole. 0 = no window.",
        30,
        low=0,
    )
    vuln_num_assets: int = env_setting(
        "TIO_VULN_NUM_ASSETS", "Assets whose findings make up one vulnerability chunk (50-5000).", 50, low=50, high=5000
    )
    asset_chunk_size: int = env_setting(
        "TIO_ASSET_CHUNK_SIZE", "Assets per assets-export chunk (100-10000).", 1000, low=100, high=10000
    )
    compliance_num_findings: int = env_setting(
        "TIO_COMPLIANCE_NUM_FINDINGS", "Findings per compliance-export chunk (50-10000).", 1000, low=50, high=10000
    )
    export_threads: int = env_setting(
        "TIO_EXPORT_THREADS", "Chunks downloaded at once; memory holds at most this many chunks.", 4, low=1, high=64
    )
    export_poll_seconds: float = env_setting(
        "TIO_EXPORT_POLL_SECONDS", "Seconds between export status checks while no chunk is ready.", 10.0, low=0
    )
    export_resume_hours: float = env_setting(
        "TIO_EXPORT_RESUME_HOURS",
        "A retried run re-attaches to the export job of a failed run younger "
        "than this (its uuid is kept in the spool directory) instead of starting a new one.",
        12.0,
        low=0,
    )

    def validate_settings(self) -> None:
        self.states()

    def client(self, settings: HttpSettings, logger: Any = None) -> HttpSession:
        # pyTenable sends its own X-APIKeys header on this session; HttpSession owns it, its counters and its close.
        return HttpSession(
            VENDOR,
            normalize_base_url(self.url),
            settings=settings,
            auth_hint=AUTH_HINT,
            secrets=[self.access_key or "", self.secret_key or ""],
            logger=logger,
        )

    def states(self) -> list[str]:
        states = [s.strip().upper() for s in self.vuln_states.split(",") if s.strip()]
        unknown = sorted(set(states) - set(VULN_STATES))
        if not states or unknown:
            raise ConfigError(
                f"TIO_VULN_STATES={self.vuln_states!r}: expected a comma-separated list of open, reopened, fixed"
            )
        return states

    def since(self) -> Optional[datetime]:
        """Start of the time window: midnight UTC, so every retry on the same day asks for the very same export."""
        if self.since_days < 0:
            raise ConfigError(f"TIO_SINCE_DAYS={self.since_days}: expected 0 (no window) or a number of days")
        if not self.since_days:
            return None
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        return today - timedelta(days=self.since_days)


def _timestamp(moment: Optional[datetime]) -> Optional[int]:
    return int(moment.timestamp()) if moment else None


def pull_assets(pull: Pull) -> None:
    from .exports import pull_export

    r: TenableResource = pull.resource
    pull_export(
        pull,
        "assets",
        lambda tio, **kw: tio.exports.assets(chunk_size=r.asset_chunk_size, **kw),
        {"chunk_size": r.asset_chunk_size},
    )


def pull_vulnerabilities(pull: Pull) -> None:
    from .exports import pull_export

    r: TenableResource = pull.resource
    states, since = r.states(), _timestamp(r.since())
    pull_export(
        pull,
        "vulns",
        lambda tio, **kw: tio.exports.vulns(num_assets=r.vuln_num_assets, state=states, since=since, **kw),
        {"num_assets": r.vuln_num_assets, "state": states, "since_days": r.since_days},
    )


def pull_findings(pull: Pull) -> None:
    from .exports import pull_export

    r: TenableResource = pull.resource
    since = _timestamp(r.since())
    pull_export(
        pull,
        "compliance",
        lambda tio, **kw: tio.exports.compliance(num_findings=r.compliance_num_findings, last_seen=since, **kw),
        {"num_findings": r.compliance_num_findings, "since_days": r.since_days},
    )


def pull_was(pull: Pull) -> None:
    from .client import connect, tenable_errors_as_collection_errors

    r: TenableResource = pull.resource
    filters: list[tuple[str, str, Any]] = [("scans_status", "contains", ["completed"])]
    since = r.since()
    if since:
        filters.insert(0, ("scans_started_at", "gte", since.strftime("%Y/%m/%d")))
    tio, _ = connect(r, pull.client)
    with tenable_errors_as_collection_errors("WAS findings", (r.access_key or "", r.secret_key or "")):
        # One report in memory at a time: pyTenable fetches a target scan's report when the previous one is used up.
        for finding in tio.was.export(and_filter=filters):
            pull.spool.write(finding)


def _sandbox_env(url: str, token: str) -> dict[str, str]:
    """Variables that point this source at the bundled sandbox (make demo, benchmarks)."""
    return {"TIO_ACCESS_KEY": token, "TIO_SECRET_KEY": token, "TIO_URL": url, "TIO_EXPORT_POLL_SECONDS": "0.05"}


SOURCE = Source(
    group="tenable",
    title="Tenable.io",
    docs_url="https://developer.tenable.com/reference/navigate",
    resource=TenableResource,
    datasets=(
        DatasetSpec(
            "tenable_assets",
            "Assets",
            "Every asset, from the assets export (chunked job on Tenable's side).",
            "POST /assets/export",
            pull=pull_assets,
            required_fields=("id",),
            columns=(
                col("id", "text", "Asset uuid (join to tenable_vulnerabilities.asset_uuid)."),
                col("has_agent", "boolean", "A Nessus Agent reports for the asset."),
                col("created_at", "timestamp", "When Tenable created the asset."),
                col("updated_at", "timestamp", "Last change of the asset record."),
                col("terminated_at", "timestamp", "When the asset was terminated (cloud), if it was."),
                col("deleted_at", "timestamp", "When the asset was deleted, if it was."),
                col("first_seen", "timestamp", "First time a scan saw the asset."),
                col("last_seen", "timestamp", "Last time a scan saw the asset."),
                col("last_scan_time", "timestamp", "Last scan of the asset."),
                col(
                    "last_authenticated_scan_date",
                    "timestamp",
                    "Last credentialed scan (what vulnerability coverage counts).",
                ),
                col("agent_uuid", "text", "Nessus Agent uuid."),
                col("bios_uuid", "text", "BIOS uuid."),
                col("network_name", "text", "Tenable network the asset is in."),
                col("aws_ec2_instance_id", "text", "EC2 instance id (join to aws_ec2_instances.instance_id)."),
                col("hostnames.0", "text", "First host name."),
                col("fqdns.0", "text", "First fully qualified domain name."),
                col("ipv4s.0", "text", "First IPv4 address."),
                col("operating_systems.0", "text", "First operating system reported."),
                col("system_types.0", "text", "First system type (general-purpose, router, ...)."),
            ),
        ),
        DatasetSpec(
            "tenable_vulnerabilities",
            "Vulnerabilities",
            "Vulnerability findings in the configured states and time window, from the vulns export.",
            "POST /vulns/export",
            pull=pull_vulnerabilities,
            required_fields=("asset.uuid", "plugin.id", "severity", "state"),
            allow_empty=True,
            columns=(
                col("finding_id", "text", "Finding id."),
                col("asset.uuid", "text", "Asset uuid (join to tenable_assets.id)."),
                col("asset.hostname", "text", "Host name of the asset."),
                col("asset.fqdn", "text", "FQDN of the asset."),
                col("asset.ipv4", "text", "IPv4 address of the asset."),
                col("asset.agent_uuid", "text", "Nessus Agent uuid."),
                col("plugin.id", "integer", "Plugin id."),
                col("plugin.name", "text", "Plugin name."),
                col("plugin.family", "text", "Plugin family."),
                col("plugin.has_patch", "boolean", "A vendor patch exists."),
                col("plugin.exploit_available", "boolean", "A known exploit exists."),
                col("plugin.cvss3_base_score", "float", "CVSSv3 base score."),
                col("plugin.cve", "json", "CVE ids."),
                col("plugin.publication_date", "timestamp", "Plugin publication date."),
                col("port.port", "integer", "Port."),
                col("port.protocol", "text", "Protocol."),
                col("severity", "text", "Severity: info, low, medium, high, critical."),
                col("severity_id", "integer", "Severity 0 (info) to 4 (critical)."),
                col("state", "text", "OPEN, REOPENED or FIXED."),
                col("first_found", "timestamp", "First time the finding was seen."),
                col("last_found", "timestamp", "Last time the finding was seen."),
                col("last_fixed", "timestamp", "When the finding was fixed, if it was."),
                col("indexed", "timestamp", "When Tenable indexed the finding."),
            ),
        ),
        DatasetSpec(
            "tenable_findings",
            "Compliance findings",
            "Host audit (compliance) findings, from the compliance export.",
            "POST /compliance/export",
            pull=pull_findings,
            required_fields=("asset_uuid", "check_name", "status"),
            allow_empty=True,
            columns=(
                col("finding_id", "text", "Compliance finding id."),
                col("asset_uuid", "text", "Asset uuid (join to tenable_assets.id)."),
                col("asset.host_name", "text", "Host name of the asset."),
                col("check_id", "text", "Check id."),
                col("check_name", "text", "Check name."),
                col("audit_file", "text", "Audit file the check comes from."),
                col("status", "text", "PASSED, FAILED, WARNING, ERROR, ..."),
                col("state", "text", "OPEN, REOPENED or FIXED."),
                col("compliance_benchmark_name", "text", "Benchmark name."),
                col("compliance_benchmark_version", "text", "Benchmark version."),
                col("first_seen", "timestamp", "First time the result was seen."),
                col("last_seen", "timestamp", "Last time the result was seen."),
                col("last_observed", "timestamp", "Last observation of the result."),
                col("reference", "json", "Framework references (framework, control)."),
            ),
        ),
        DatasetSpec(
            "tenable_was",
            "Web application findings",
            "Findings of the last completed scan of every WAS scan configuration, with the scan and "
            "configuration they come from.",
            "POST /was/v2/configs/search, then each scan's report",
            pull=pull_was,
            required_fields=("finding.plugin_id", "scan.scan_id", "config.config_id"),
            allow_empty=True,
            columns=(
                col("finding.plugin_id", "integer", "WAS plugin id."),
                col("finding.name", "text", "Finding name."),
                col("finding.family", "text", "Plugin family."),
                col("finding.risk_factor", "text", "Risk: info, low, medium, high, critical."),
                col("finding.cvssv3", "float", "CVSSv3 score."),
                col("finding.uri", "text", "URI the finding is on."),
                col("finding.cves", "json", "CVE ids."),
                col("scan.scan_id", "text", "Scan id."),
                col("scan.asset_id", "text", "Web application asset id."),
                col("scan.target", "text", "Scanned target URL."),
                col("scan.status", "text", "Scan status."),
                col("scan.started_at", "timestamp", "When the scan started."),
                col("scan.finalized_at", "timestamp", "When the scan finished."),
                col("config.config_id", "text", "Scan configuration id."),
                col("config.name", "text", "Scan configuration name."),
            ),
        ),
    ),
    sandbox_env=_sandbox_env,
)
