"""Tenable.io (Tenable Vulnerability Management): assets, vulnerabilities and compliance exports, and WAS findings.

Built on pyTenable: exports are chunked jobs on Tenable's side (exports.py), WAS is pyTenable's three-step flow.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Optional

from ...collection.errors import ConfigError
from ...collection.http import HttpSession, HttpSettings, normalize_base_url
from ...collection.settings import env_setting
from ..base import Pull, VendorResource
from ..catalog import declare_source

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


SOURCE = declare_source(__name__, "datasets.yaml", TenableResource, sandbox_env=_sandbox_env)
