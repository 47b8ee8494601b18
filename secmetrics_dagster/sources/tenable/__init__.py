"""Tenable.io (Tenable Vulnerability Management): assets, vulnerabilities and compliance exports, and WAS findings.

Built on pyTenable: exports are chunked jobs on Tenable's side (exports.py), WAS is pyTenable's three-step flow.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import Any, Optional

from ...collection.env import env_number, secret_env
from ...collection.errors import ConfigError
from ...collection.http import HttpSession, HttpSettings, normalize_base_url
from ..base import DatasetSpec, EnvVarDoc, Pull, SourceSpec, VendorResource, build_assets

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

SOURCE = SourceSpec(
    group="tenable",
    title="Tenable.io",
    docs_url="https://developer.tenable.com/reference/navigate",
    resource_key="tenable",
    env_vars=(
        EnvVarDoc(
            "TIO_ACCESS_KEY",
            "API access key, sent as `X-APIKeys: accessKey=…; secretKey=…`.",
            required=True,
            secret=True,
        ),
        EnvVarDoc("TIO_SECRET_KEY", "API secret key of the same key pair.", required=True, secret=True),
        EnvVarDoc("TIO_URL", "Tenable site; any host or port (proxies), http or https.", DEFAULT_URL),
        EnvVarDoc(
            "TIO_VULN_STATES",
            "Vulnerability states to export, comma-separated from open, reopened, fixed "
            "(Tenable's own default leaves fixed out).",
            DEFAULT_STATES,
        ),
        EnvVarDoc(
            "TIO_SINCE_DAYS",
            "Time window in days, counted from midnight UTC: vulnerabilities seen or changed "
            "in any state (`since`), compliance findings seen (`last_seen`), WAS scans started. Assets are "
            "always exported whole. 0 = no window.",
            "30",
        ),
        EnvVarDoc("TIO_VULN_NUM_ASSETS", "Assets whose findings make up one vulnerability chunk (50-5000).", "50"),
        EnvVarDoc("TIO_ASSET_CHUNK_SIZE", "Assets per assets-export chunk (100-10000).", "1000"),
        EnvVarDoc("TIO_COMPLIANCE_NUM_FINDINGS", "Findings per compliance-export chunk (50-10000).", "1000"),
        EnvVarDoc("TIO_EXPORT_THREADS", "Chunks downloaded at once; memory holds at most this many chunks.", "4"),
        EnvVarDoc("TIO_EXPORT_POLL_SECONDS", "Seconds between export status checks while no chunk is ready.", "10"),
        EnvVarDoc(
            "TIO_EXPORT_RESUME_HOURS",
            "A retried run re-attaches to the export job of a failed run younger "
            "than this (its uuid is kept in the spool directory) instead of starting a new one.",
            "12",
        ),
    ),
    datasets=(
        DatasetSpec(
            "tenable_assets",
            "Assets",
            "Every asset, from the assets export (chunked job on Tenable's side).",
            "POST /assets/export",
            required_fields=("id",),
        ),
        DatasetSpec(
            "tenable_vulnerabilities",
            "Vulnerabilities",
            "Vulnerability findings in the configured states and time window, from the vulns export.",
            "POST /vulns/export",
            required_fields=("asset.uuid", "plugin.id", "severity", "state"),
            allow_empty=True,
        ),
        DatasetSpec(
            "tenable_findings",
            "Compliance findings",
            "Host audit (compliance) findings, from the compliance export.",
            "POST /compliance/export",
            required_fields=("asset_uuid", "check_name", "status"),
            allow_empty=True,
        ),
        DatasetSpec(
            "tenable_was",
            "Web application findings",
            "Findings of the last completed scan of every WAS scan configuration, with the scan and "
            "configuration they come from.",
            "POST /was/v2/configs/search, then each scan's report",
            required_fields=("finding.plugin_id", "scan.scan_id", "config.config_id"),
            allow_empty=True,
        ),
    ),
)


class TenableResource(VendorResource):
    """Tenable.io keys, site and export settings. The keys enter config only as EnvVar references."""

    access_key: Optional[str] = None
    secret_key: Optional[str] = None
    url: str = DEFAULT_URL
    vuln_states: str = DEFAULT_STATES
    since_days: int = 30
    vuln_num_assets: int = 50
    asset_chunk_size: int = 1000
    compliance_num_findings: int = 1000
    export_threads: int = 4
    export_poll_seconds: float = 10.0
    export_resume_hours: float = 12.0

    @classmethod
    def from_env(cls) -> TenableResource:
        return cls(
            access_key=secret_env("TIO_ACCESS_KEY"),
            secret_key=secret_env("TIO_SECRET_KEY"),
            url=os.environ.get("TIO_URL") or DEFAULT_URL,
            vuln_states=os.environ.get("TIO_VULN_STATES") or DEFAULT_STATES,
            since_days=env_number("TIO_SINCE_DAYS", 30, low=0),
            vuln_num_assets=env_number("TIO_VULN_NUM_ASSETS", 50),
            asset_chunk_size=env_number("TIO_ASSET_CHUNK_SIZE", 1000),
            compliance_num_findings=env_number("TIO_COMPLIANCE_NUM_FINDINGS", 1000),
            export_threads=env_number("TIO_EXPORT_THREADS", 4),
            export_poll_seconds=env_number("TIO_EXPORT_POLL_SECONDS", 10.0, cast=float, low=0),
            export_resume_hours=env_number("TIO_EXPORT_RESUME_HOURS", 12.0, cast=float, low=0),
        )

    def missing_env(self) -> list[str]:
        return [
            name
            for name, value in (("TIO_ACCESS_KEY", self.access_key), ("TIO_SECRET_KEY", self.secret_key))
            if not value
        ]

    def session(self, settings: HttpSettings, logger: Any = None) -> HttpSession:
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

    def check_export_settings(self) -> None:
        for name, value, low, high in (
            ("TIO_VULN_NUM_ASSETS", self.vuln_num_assets, 50, 5000),
            ("TIO_ASSET_CHUNK_SIZE", self.asset_chunk_size, 100, 10000),
            ("TIO_COMPLIANCE_NUM_FINDINGS", self.compliance_num_findings, 50, 10000),
            ("TIO_EXPORT_THREADS", self.export_threads, 1, 64),
        ):
            if not low <= value <= high:
                raise ConfigError(f"{name}={value}: Tenable accepts {low}-{high}")
        if self.export_poll_seconds < 0 or self.export_resume_hours < 0:
            raise ConfigError("TIO_EXPORT_POLL_SECONDS and TIO_EXPORT_RESUME_HOURS must not be negative")


def _timestamp(moment: Optional[datetime]) -> Optional[int]:
    return int(moment.timestamp()) if moment else None


def pull_assets(pull: Pull) -> None:
    from .exports import pull_export

    r: TenableResource = pull.resource
    r.check_export_settings()
    pull_export(
        pull,
        "assets",
        lambda tio, **kw: tio.exports.assets(chunk_size=r.asset_chunk_size, **kw),
        {"chunk_size": r.asset_chunk_size},
    )


def pull_vulnerabilities(pull: Pull) -> None:
    from .exports import pull_export

    r: TenableResource = pull.resource
    r.check_export_settings()
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
    r.check_export_settings()
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
    tio, _ = connect(r, pull.http)
    with tenable_errors_as_collection_errors("WAS findings", (r.access_key or "", r.secret_key or "")):
        # One report in memory at a time: pyTenable fetches a target scan's report when the previous one is used up.
        for finding in tio.was.export(and_filter=filters):
            pull.spool.write(finding)


def sandbox_env(url: str, token: str) -> dict[str, str]:
    """Variables that point this source at the bundled sandbox (make demo, benchmarks)."""
    return {"TIO_ACCESS_KEY": token, "TIO_SECRET_KEY": token, "TIO_URL": url, "TIO_EXPORT_POLL_SECONDS": "0.05"}


RESOURCE = TenableResource
assets = build_assets(
    SOURCE,
    {
        "tenable_assets": pull_assets,
        "tenable_vulnerabilities": pull_vulnerabilities,
        "tenable_findings": pull_findings,
        "tenable_was": pull_was,
    },
)
