"""Tenable.io in the sandbox: the vulns/assets/compliance export jobs and the three-step WAS flow, as pyTenable calls them.

Modelled on cloud.tenable.com and the recorded pyTenable cassettes (fixtures/tenable):

- `POST /{vulns,assets,compliance}/export` -> `{"export_uuid"}`; asking again for the same export while that job
  is still QUEUED or PROCESSING answers 409 `{"active_job_id", "failure_reason"}` (what pyTenable adopts).
- `GET .../export/{uuid}/status` -> QUEUED, then PROCESSING with part of `chunks_available`, then FINISHED with all
  of them (one step per status request: `TenableVolume.status_polls` requests in all, no clock involved).
- `GET .../export/{uuid}/chunks/{id}` -> a JSON array; `POST .../export/{uuid}/cancel`; `GET .../export/status`.
- WAS: `POST /was/v2/configs/search` -> `POST /was/v2/scans/{parent}/vulnerabilities/by-targets/search` ->
  `GET /was/v2/scans/{target}/report`.

Auth is `X-APIKeys: accessKey=<token>; secretKey=<token>`. Vulnerability chunks hold the findings of `num_assets`
assets (Tenable's grouping); `state` is honoured (absent = OPEN and REOPENED, Tenable's default); time filters are
accepted but not applied. Records are computed from (seed, index) when a chunk is served, so a million findings cost
no memory here.

Timestamps count back from the sandbox's clock (`TenableVolume.now`, default the moment the sandbox is created), so
the site looks the same age whenever it runs: most assets scanned within the week, about one in eight not seen for
one to six months; findings first found days to a year before their asset's last scan, about a quarter of them within
the last two weeks; fixed findings fixed within 15 days about half the time, so a remediation SLA has both kinds.
Plugin publication and modification dates are the plugin catalogue's own, fixed.

Sources: pyTenable (tenable/pyTenable: `tenable/base/platform.py` for X-APIKeys and 429 handling,
`tenable/io/exports/api.py` for the request defaults and the 409 adoption, `tenable/io/exports/iterator.py` for the
job states and chunk lists), its recorded cassettes (secmetrics_dagster_tests/fixtures/tenable), and Tenable's developer portal
(developer.tenable.com: exports-vulns-request-export, exports-assets-request-export, io-exports-compliance-create).

Faults: the shared kinds work on these route names: tenable.{vulns,assets,compliance}.{export,status,chunk,cancel,jobs}
and tenable.was.{configs,targets,report}. Export-specific outcomes come from `TenableVolume.export_faults`, entries
`"<export>:<outcome>"` with export vulns, assets, compliance or * and outcome
  ERROR         - the job reports status ERROR where it would have FINISHED (after some chunks were available),
  CANCELLED     - the job reports status CANCELLED there instead,
  chunks_failed - the job FINISHES but its last chunk is listed in `chunks_failed`, not in `chunks_available`.
"""

from __future__ import annotations

import functools
import json
import random
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Optional

from .records import VendorApi, check_volume, sandbox_clock
from .server import Request, Response, Router, Vendor, VendorContext, register_vendor

EXPORT_KINDS = ("vulns", "assets", "compliance")
JOB_OUTCOMES = ("ERROR", "CANCELLED", "chunks_failed")
FINDINGS_PER_WAS_REPORT = 21  # what the recorded WAS reports hold
WAS_TARGETS_PER_CONFIG = 2
_VULN_STATES = ("OPEN", "REOPENED", "FIXED")
# Tenable exports these when the request names no state (the vulns export request's `state` filter, developer
# portal exports-vulns-request-export: "OPEN and REOPENED" by default; FIXED must be asked for).
_DEFAULT_STATES = ("OPEN", "REOPENED")
_JSON = "application/json; charset=utf-8"


@dataclass(frozen=True)
class TenableVolume:
    """How much Tenable data the sandbox serves; each int field is also a CLI flag (--tenable-assets, ...).

    `chunk_size` > 0 makes every export chunk hold that many records whatever the request asks (0 = as Tenable:
    `num_assets` assets' findings, `chunk_size` assets, `num_findings` compliance findings). `status_polls` is how many
    status requests a job takes to reach FINISHED (3: QUEUED, PROCESSING, FINISHED). `export_faults`: see the module.
    """

    assets: int = 120
    vulnerabilities: int = 600
    findings: int = 150
    was: int = 42
    chunk_size: int = 0
    status_polls: int = 3
    export_faults: tuple[str, ...] = field(default=())
    # The site's "now" (epoch seconds) every generated timestamp counts back from; None: when the sandbox is created.
    now: Optional[float] = None

    def __post_init__(self) -> None:
        check_volume(self, ("assets", "vulnerabilities", "findings", "was", "chunk_size", "status_polls"))
        if (self.vulnerabilities or self.findings) and not self.assets:
            raise ValueError("TenableVolume: vulnerabilities and compliance findings need at least one asset")
        if isinstance(self.export_faults, str):
            raise ValueError("TenableVolume.export_faults must be a tuple of strings such as ('vulns:ERROR',)")
        for item in self.export_faults:
            kind, _, outcome = str(item).partition(":")
            if kind not in EXPORT_KINDS + ("*",) or outcome not in JOB_OUTCOMES:
                raise ValueError(
                    f"TenableVolume.export_faults entry {item!r} is not <export>:<outcome> with export "
                    f"{', '.join(EXPORT_KINDS)} or *, and outcome {', '.join(JOB_OUTCOMES)}"
                )

    def outcome(self, kind: str) -> str | None:
        for item in self.export_faults:
            target, _, outcome = item.partition(":")
            if target in (kind, "*"):
                return outcome
        return None


def api_keys(token: str) -> str:
    """The X-APIKeys value the sandbox accepts (pyTenable writes it this way)."""
    return f"accessKey={token}; secretKey={token}"


def error(status: int, message: str | None = None) -> Response:
    """Tenable's error body.

    {"statusCode", "error", "message"} (a hapi-style body) and its messages: no source found (the recorded
    cassettes hold no error answer).
    A 429 gets Retry-After from the server: pyTenable waits for it and falls back to its `backoff` (1 s) only
    "if the response didn't send a Retry-After header" (tenable/base/platform.py, APIPlatform docstring).
    """
    reasons = {
        400: "Bad Request",
        401: "Unauthorized",
        403: "Forbidden",
        404: "Not Found",
        409: "Conflict",
        429: "Too Many Requests",
        500: "Internal Server Error",
        503: "Service Unavailable",
    }
    defaults = {
        401: "Invalid Credentials",
        403: "You do not have permission to view this resource",
        429: "You have exceeded the rate limit for this API. Please try again later.",
    }
    reason = reasons.get(status, f"HTTP {status}")
    return Response(
        status,
        {"statusCode": status, "error": reason, "message": message or defaults.get(status, reason)},
        content_type=_JSON,
    )


# -------------------------------------------------------------------------------------- record makers

DAY = 24 * 3600
# How long before its asset's last scan a finding was first found (share of findings in %, low and high days): a
# quarter within the two weeks a critical finding's SLA allows, the rest over the year. How fast fixed findings were
# fixed: about half within 15 days. Shares chosen for realistic metrics, not taken from a source.
_FOUND_BANDS = [(25, 0, 14), (60, 15, 90), (100, 91, 400)]
_FIX_BANDS = [(55, 1, 14), (100, 16, 60)]
_STALE_ASSETS = 12  # % of assets whose last scan is one to six months old; the others were scanned within the week

# The plugins findings are drawn from (fixtures/tenable_plugins.json, real Nessus plugin ids and names), as
# (id, name, family, family_id, type, severity, cvss2, cvss3, cves, has_patch, exploit, synopsis, solution, port).
_PLUGIN_FIELDS = "id name family family_id type severity cvss2 cvss3 cves has_patch exploit synopsis solution".split()
_PLUGINS = [
    (*(plugin[k] for k in _PLUGIN_FIELDS), tuple(plugin["port"]))
    for plugin in json.loads((Path(__file__).resolve().parent / "fixtures" / "tenable_plugins.json").read_text())
]
# Weights follow the recorded export: mostly informational findings, then high, low, medium, critical.
_PLUGIN_WEIGHTS = [14, 12, 12, 12, 12, 12, 4, 3, 2, 6, 5, 5, 1, 2]
_SEVERITY_ID = {"info": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}
_OS = [
    ("Microsoft Windows 10 Pro", "general-purpose"),
    ("Microsoft Windows Server 2016 Standard", "general-purpose"),
    ("Microsoft Windows Server 2019 Datacenter", "general-purpose"),
    ("Linux Kernel 4.15.0 on Ubuntu 18.04", "general-purpose"),
    ("Linux Kernel 5.4.0 on Ubuntu 20.04", "general-purpose"),
    ("Red Hat Enterprise Linux 8", "general-purpose"),
    ("Cisco IOS 15.2", "router"),
    ("VMware ESXi 7.0", "hypervisor"),
]
_HOST_WORDS = ["app", "db", "web", "dc", "file", "print", "build", "mail", "vpn", "jump", "cache", "api", "wks", "lab"]
_SOURCES = ["NESSUS_SCAN", "NESSUS_AGENT", "PVS", "AWS", "AZURE"]
_AUDITS = [
    ("CIS_Microsoft_Windows_Server_2016_Benchmark_v1.2.0_L1_MS.audit", "CIS Microsoft Windows Server 2016", "1.2.0"),
    ("CIS_Ubuntu_18.04_LTS_Server_v2.1.0_L1.audit", "CIS Ubuntu Linux 18.04 LTS", "2.1.0"),
    ("DISA_STIG_Windows_10_v2r1.audit", "DISA STIG Windows 10", "2.1"),
]
_CHECKS = [
    ("1.1.1 Ensure 'Enforce password history' is set to '24 or more password(s)'", "24", "AC-2"),
    ("1.1.2 Ensure 'Maximum password age' is set to '365 or fewer days, but not 0'", "365", "IA-5"),
    ("1.1.4 Ensure 'Minimum password length' is set to '14 or more character(s)'", "14", "IA-5"),
    ("2.3.1.1 Ensure 'Accounts: Block Microsoft accounts' is set", "3", "AC-2"),
    ("5.2.4 Ensure SSH X11 forwarding is disabled", "no", "CM-7"),
    ("5.2.8 Ensure SSH root login is disabled", "no", "AC-6"),
    ("9.1.1 Ensure 'Windows Firewall: Domain: Firewall state' is set to 'On'", "1", "SC-7"),
    ("18.9.97.2.1 Ensure 'Allow Basic authentication' is set to 'Disabled'", "0", "IA-2"),
]
_COMPLIANCE_STATUS = ["PASSED"] * 6 + ["FAILED"] * 3 + ["WARNING"]
# (id, name, family, risk, cvss, cvssv3, cwe)
_WAS_PLUGINS = [
    (98000, "Scan Information", "General", "info", None, None, []),
    (98009, "Web Application Sitemap", "General", "info", None, None, []),
    (98059, "Technologies Detected", "Web Applications", "info", None, None, []),
    (98136, "Target Information", "General", "info", None, None, []),
    (98138, "Screenshot", "General", "info", None, None, []),
    (98154, "External URLs", "General", "info", None, None, []),
    (98526, "Missing Permissions Policy", "HTTP Security Header", "info", None, None, []),
    (98612, "Missing 'Expect-CT' Header", "HTTP Security Header", "info", None, None, [693]),
    (98617, "SSL/TLS Forward Secrecy Cipher Suites Not Supported", "SSL/TLS", "medium", 5.8, 6.5, [327]),
    (98618, "HTTP Header Information Disclosure", "HTTP Security Header", "low", 2.6, 3.1, [200]),
    (98772, "Fetch/XHR Detected", "General", "info", None, None, []),
    (112491, "SSL/TLS Certificate Information", "SSL/TLS", "info", None, None, []),
    (112527, "Disabled 'X-XSS-Protection' Header", "HTTP Security Header", "info", None, None, []),
    (112530, "SSL/TLS Versions Supported", "SSL/TLS", "info", None, None, []),
    (112535, "HTTP Strict Transport Security Policy Detected", "HTTP Security Header", "info", None, None, []),
    (112539, "SSL/TLS Weak Cipher Suites Supported", "SSL/TLS", "low", 2.6, 3.7, [326]),
    (112554, "Permissive Content Security Policy Detected", "HTTP Security Header", "low", 2.6, 3.1, [1021]),
    (112598, "SSL/TLS Server Cipher Suite Preference", "SSL/TLS", "info", None, None, []),
    (112616, "API Detected", "General", "info", None, None, []),
    (113393, "Performance Telemetry", "General", "info", None, None, []),
    (115491, "SSL/TLS Cipher Suites Supported", "SSL/TLS", "info", None, None, []),
]


def _rng(seed: int, kind: str, *parts: int) -> random.Random:
    return random.Random(f"{seed}:tenable:{kind}:" + ":".join(str(p) for p in parts))


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _iso(moment: datetime, millis: bool = False) -> str:
    if millis:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _ago(now: datetime, rng: random.Random, low_days: float, high_days: float) -> datetime:
    """A moment between `high_days` and `low_days` before `now`, to the second."""
    return now - timedelta(
        seconds=rng.randrange(int(low_days * DAY), max(int(low_days * DAY) + 1, int(high_days * DAY)))
    )


def _band(rng: random.Random, bands: list[tuple[int, int, int]]) -> tuple[int, int]:
    roll = rng.randrange(100)
    return next((low, high) for bound, low, high in bands if roll < bound)


def _clock(now: Optional[datetime]) -> datetime:
    return sandbox_clock(None) if now is None else now


def asset_identity(seed: int, index: int, now: Optional[datetime] = None) -> dict[str, Any]:
    """The parts of an asset that its findings repeat: id, names, address, OS, first and last scan; `now`: the
    sandbox's clock (None: the present)."""
    return _asset_identity(seed, index, _clock(now))


@functools.lru_cache(maxsize=4096)  # findings of one asset are served together; bounded, so memory stays flat
def _asset_identity(seed: int, index: int, now: datetime) -> dict[str, Any]:
    rng = _rng(seed, "asset", index)
    os_name, device = rng.choice(_OS)
    host = f"{rng.choice(_HOST_WORDS)}-{index:05d}"
    ip = f"10.{(index >> 16) & 255}.{(index >> 8) & 255}.{index & 255}"
    mac = ":".join(f"{rng.randrange(256):02x}" for _ in range(6))
    uid, bios, agent = _uuid(rng), _uuid(rng).upper(), _uuid(rng) if rng.random() < 0.4 else None
    seen_low, seen_high = (31, 180) if rng.randrange(100) < _STALE_ASSETS else (0, 7)
    last_seen = _ago(now, rng, seen_low, seen_high)
    return {
        "uuid": uid,
        "hostname": host,
        "fqdn": f"{host}.corp.example.com",
        "ipv4": ip,
        "netbios_name": host.upper().replace("-", "")[:15],
        "operating_system": [os_name],
        "device_type": device,
        "mac_address": mac,
        "bios_uuid": bios,
        "agent_uuid": agent,
        "first_seen": _ago(last_seen, rng, 2, 3 * 365),
        "last_seen": last_seen,
    }


def make_asset(seed: int, index: int, now: Optional[datetime] = None) -> dict[str, Any]:
    """One record of the assets export (shape of the recorded `assets/export` chunk)."""
    ident = asset_identity(seed, index, now)
    rng = _rng(seed, "asset-detail", index)
    first, last = ident["first_seen"], ident["last_seen"]
    sources = rng.sample(_SOURCES[:3], rng.randint(1, 2))
    return {
        "id": ident["uuid"],
        "has_agent": ident["agent_uuid"] is not None,
        "has_plugin_results": True,
        "created_at": _iso(first, True),
        "terminated_at": None,
        "terminated_by": None,
        "updated_at": _iso(last, True),
        "deleted_at": None,
        "deleted_by": None,
        "first_seen": _iso(first, True),
        "last_seen": _iso(last, True),
        "first_scan_time": _iso(first, True),
        "last_scan_time": _iso(last, True),
        "last_authenticated_scan_date": _iso(last, True),
        "last_licensed_scan_date": _iso(last, True),
        "azure_vm_id": None,
        "azure_resource_id": None,
        "aws_ec2_instance_ami_id": None,
        "aws_ec2_instance_id": None,
        "agent_uuid": ident["agent_uuid"],
        "bios_uuid": ident["bios_uuid"],
        "network_id": "00000000-0000-0000-0000-000000000000",
        "network_name": "Default",
        "aws_owner_id": None,
        "aws_availability_zone": None,
        "aws_region": None,
        "aws_vpc_id": None,
        "aws_ec2_instance_type": None,
        "aws_subnet_id": None,
        "aws_ec2_name": None,
        "servicenow_sysid": None,
        "agent_names": [ident["hostname"]] if ident["agent_uuid"] else [],
        "ipv4s": [ident["ipv4"]],
        "ipv6s": [],
        "fqdns": [ident["fqdn"]],
        "mac_addresses": [ident["mac_address"]],
        "netbios_names": [ident["netbios_name"]],
        "operating_systems": ident["operating_system"],
        "system_types": [ident["device_type"]],
        "hostnames": [ident["hostname"]],
        "ssh_fingerprints": [],
        "qualys_asset_ids": [],
        "qualys_host_ids": [],
        "manufacturer_tpm_ids": [],
        "symantec_ep_hardware_keys": [],
        "sources": [{"name": s, "first_seen": _iso(first, True), "last_seen": _iso(last, True)} for s in sources],
        "tags": [
            {
                "key": "Environment",
                "value": rng.choice(["Production", "Staging", "Corporate"]),
                "uuid": _uuid(rng),
                "added_by": None,
                "added_at": _iso(first, True),
            }
        ],
        "network_interfaces": [
            {
                "name": "eth0",
                "virtual": None,
                "aliased": None,
                "fqdns": [ident["fqdn"]],
                "mac_address": [ident["mac_address"]],
                "ipv4": [ident["ipv4"]],
                "ipv6": [],
            }
        ],
    }


@functools.lru_cache(maxsize=64)
def _scan(seed: int, schedule: int) -> dict[str, str]:
    rng = _rng(seed, "scan", schedule)
    return {"uuid": _uuid(rng), "schedule_uuid": _uuid(rng)}


def _found(rng: random.Random, ident: dict[str, Any]) -> datetime:
    """When a finding was first found: days to a year before its asset's last scan, never before the first one."""
    return max(ident["first_seen"], _ago(ident["last_seen"], rng, *_band(rng, _FOUND_BANDS)))


def make_vulnerability(seed: int, index: int, asset: int, now: Optional[datetime] = None) -> dict[str, Any]:
    """One finding of the vulns export (shape of the 344 recorded findings), on asset number `asset`."""
    rng = _rng(seed, "vuln", index)
    ident = asset_identity(seed, asset, now)
    (
        pid,
        name,
        family,
        family_id,
        ptype,
        severity,
        cvss,
        cvss3,
        cves,
        has_patch,
        exploit,
        synopsis,
        solution,
        (port, proto, service),
    ) = rng.choices(_PLUGINS, weights=_PLUGIN_WEIGHTS)[0]
    first = _found(rng, ident)
    roll = rng.random()
    state = "FIXED" if roll < 0.12 else ("REOPENED" if roll < 0.16 else "OPEN")
    # An open finding was seen by the asset's last scan; a fixed one last a few days before the scan that found it
    # gone (`last_fixed`), which is no later than the asset's last scan.
    last, fixed = ident["last_seen"], None
    if state == "FIXED":
        fixed = min(
            ident["last_seen"], first + timedelta(seconds=rng.randrange(*(d * DAY for d in _band(rng, _FIX_BANDS))))
        )
        last = max(first, fixed - timedelta(seconds=rng.randrange(DAY, 7 * DAY)))
    scan = _scan(seed, asset % 7)
    record: dict[str, Any] = {
        "finding_id": _uuid(rng),
        "asset": {
            k: ident[k]
            for k in (
                "bios_uuid",
                "device_type",
                "fqdn",
                "hostname",
                "uuid",
                "ipv4",
                "mac_address",
                "netbios_name",
                "operating_system",
            )
        }
        | {"agent_uuid": ident["agent_uuid"], "tracked": True, "last_authenticated_results": _iso(last)},
        "output": f"\nPlugin {pid} on {ident['hostname']} ({ident['ipv4']}) port {port}/{proto.lower()}.\n",
        "plugin": {
            "id": pid,
            "name": name,
            "family": family,
            "family_id": family_id,
            "type": ptype,
            "risk_factor": severity.capitalize() if severity != "info" else "None",
            "synopsis": synopsis,
            "description": f"{synopsis} See the vendor advisory for details.",
            "solution": solution,
            "has_patch": has_patch,
            "exploit_available": exploit,
            "cve": cves or None,
            "cvss_base_score": cvss,
            "cvss3_base_score": cvss3,
            "see_also": [],
            "publication_date": "2018-01-04T00:00:00Z",
            "modification_date": "2023-06-07T00:00:00Z",
            "version": "1.12",
        },
        "port": {"port": port, "protocol": proto, "service": service},
        "scan": {**scan, "started_at": _iso(last), "completed_at": _iso(last)},
        "severity": severity,
        "severity_id": _SEVERITY_ID[severity],
        "severity_default_id": _SEVERITY_ID[severity],
        "severity_modification_type": "NONE",
        "first_found": _iso(first),
        "last_found": _iso(last),
        "state": state,
        "indexed": _iso(last),
    }
    if fixed is not None:
        record["last_fixed"] = _iso(fixed)
    return record


def make_compliance(seed: int, index: int, asset: int, now: Optional[datetime] = None) -> dict[str, Any]:
    """One compliance (host audit) finding, with the properties Tenable documents for compliance exports."""
    rng = _rng(seed, "compliance", index)
    ident = asset_identity(seed, asset, now)
    audit_file, benchmark, version = _AUDITS[asset % len(_AUDITS)]
    check, expected, control = rng.choice(_CHECKS)
    status = rng.choice(_COMPLIANCE_STATUS)
    first, last = _found(rng, ident), ident["last_seen"]  # audited again by the asset's last scan
    return {
        "finding_id": _uuid(rng),
        "asset_uuid": ident["uuid"],
        "first_seen": _iso(first),
        "last_seen": _iso(last),
        "last_observed": _iso(last),
        "indexed_at": _iso(last),
        "audit_file": audit_file,
        "check_id": _uuid(rng),
        "check_name": check,
        "check_info": f"{check}. The recommended state for this setting is: {expected}.",
        "expected_value": expected,
        "actual_value": expected if status == "PASSED" else "0",
        "status": status,
        "state": "ACTIVE" if status != "PASSED" else "FIXED",
        "reference": [{"framework": "800-53", "control": control}, {"framework": "CSCv8", "control": "4.1"}],
        "see_also": "https://workbench.cisecurity.org/benchmarks",
        "solution": f"Set '{check.split(' ', 1)[1]}'.",
        "plugin_id": 21157 if "Windows" in benchmark else 21156,
        "plugin_name": "Windows Compliance Checks" if "Windows" in benchmark else "Unix Compliance Checks",
        "compliance_benchmark_name": benchmark,
        "compliance_benchmark_version": version,
        "compliance_control_id": _uuid(rng),
        "compliance_full_id": _uuid(rng),
        "compliance_functional_id": _uuid(rng),
        "compliance_informational_id": _uuid(rng),
        "synopsis": "Compliance checks",
        "description": check,
        "asset": {
            "id": ident["uuid"],
            "name": ident["hostname"],
            "ipv4_addresses": [ident["ipv4"]],
            "ipv6_addresses": [],
            "fqdns": [ident["fqdn"]],
            "host_name": ident["hostname"],
            "agent_uuid": ident["agent_uuid"],
            "mac_addresses": [ident["mac_address"]],
            "netbios_name": ident["netbios_name"],
            "operating_system": ident["operating_system"],
            "system_type": ident["device_type"],
            "tags": [],
            "network_id": "00000000-0000-0000-0000-000000000000",
        },
    }


def was_finding(seed: int, index: int, target_url: str) -> dict[str, Any]:
    """One finding of a WAS scan report (shape of the recorded reports)."""
    rng = _rng(seed, "was-finding", index)
    pid, name, family, risk, cvss, cvss3, cwe = _WAS_PLUGINS[index % len(_WAS_PLUGINS)]
    return {
        "plugin_publication_date": "2019-03-31T00:00:00+00:00",
        "plugin_modification_date": "2023-01-31T00:00:00+00:00",
        "attachments": [],
        "plugin_id": pid,
        "cvssv3": cvss3,
        "cvssv3_vector": None,
        "cvss": cvss,
        "cvss_vector": None,
        "cves": [],
        "risk_factor": risk,
        "uri": target_url if rng.random() < 0.7 else f"{target_url}/login",
        "name": name,
        "family": family,
        "synopsis": name,
        "description": f"{name} on the scanned application.",
        "solution": None if risk == "info" else "Review the web server configuration.",
        "see_also": [],
        "wasc": [],
        "cwe": cwe,
        "owasp": [],
        "bid": [],
        "input_name": None,
        "input_type": None,
        "proof": None,
        "request_headers": None,
        "response_headers": None,
        "payload": None,
        "output": f"\n{name}\n",
        "xrefs": [],
    }


# -------------------------------------------------------------------------------------------- export jobs


@dataclass
class _Job:
    uuid: str
    kind: str
    key: str  # the request, canonical: an identical request while this job runs is a duplicate (409)
    created: int
    filters: dict[str, Any]
    per_chunk: int
    chunk_ranges: Callable[[int], tuple[int, int]]  # chunk id -> [start, end) record indexes
    total_chunks: int
    states: tuple[str, ...] = ()
    polls: int = 0
    cancelled: bool = False


class _TenableApi(VendorApi):
    volume: TenableVolume

    def __init__(self, context: VendorContext, volume: TenableVolume) -> None:
        super().__init__(context, volume)
        self.jobs: dict[str, _Job] = {}
        self.lock = threading.Lock()
        self.job_counter = 0
        # WAS layout: ~21 findings per target scan, two target scans per scan configuration.
        self.was_targets = -(-volume.was // FINDINGS_PER_WAS_REPORT) if volume.was else 0
        self.was_configs = -(-self.was_targets // WAS_TARGETS_PER_CONFIG)
        self.parent_index = {self._was_id("parent", c): c for c in range(self.was_configs)}
        self.target_index = {self._was_id("target", t): t for t in range(self.was_targets)}

    # auth

    def authorized(self, request: Request) -> bool:
        # pyTenable sends 'X-APIKeys': f'accessKey={access_key}; secretKey={secret_key}' (tenable/base/platform.py).
        raw = request.headers.get("X-APIKeys") or ""
        parts = dict(p.strip().partition("=")[::2] for p in raw.split(";") if "=" in p)
        return parts.get("accessKey") == self.secret and parts.get("secretKey") == self.secret

    # export plumbing

    def _asset_start(self, asset: int) -> int:
        """Index of the first finding of `asset`: findings are spread evenly over the assets, in asset order."""
        return asset * self.volume.vulnerabilities // self.volume.assets

    def _asset_of(self, index: int) -> int:
        a = index * self.volume.assets // max(1, self.volume.vulnerabilities)
        while a + 1 < self.volume.assets and self._asset_start(a + 1) <= index:
            a += 1
        while a > 0 and self._asset_start(a) > index:
            a -= 1
        return a

    def _plan(
        self, kind: str, body: dict[str, Any]
    ) -> tuple[Response | None, int, int, Callable[[int], tuple[int, int]]]:
        """Validate a POST body like Tenable does; returns (error, per-chunk size, total chunks, chunk -> range)."""
        forced = self.volume.chunk_size

        def even(total: int, size: int) -> tuple[int, Callable[[int], tuple[int, int]]]:
            return -(-total // size), lambda c: ((c - 1) * size, min(c * size, total))

        if kind == "vulns":
            # Ranges from the developer portal's export requests (num_assets 50-5000, chunk_size 100-10000,
            # num_findings 50-10000); pyTenable's defaults (num_assets 500, chunk_size 1000, num_findings 5000,
            # tenable/io/exports/api.py) sit inside them. The 400 detail texts: no source.
            size, low, high, name = body.get("num_assets", 50), 50, 5000, "num_assets"
        elif kind == "assets":
            size, low, high, name = body.get("chunk_size"), 100, 10000, "chunk_size"
        else:
            size, low, high, name = body.get("num_findings", 5000), 50, 10000, "num_findings"
        try:
            size = int(size)
        except (TypeError, ValueError):
            return error(400, f"{name} must be an integer between {low} and {high}"), 0, 0, even(0, 1)[1]
        if not low <= size <= high:
            return error(400, f"{name} must be between {low} and {high}, got {size}"), 0, 0, even(0, 1)[1]
        if kind == "assets":
            return (None, forced or size, *even(self.volume.assets, forced or size))
        if kind == "compliance":
            return (None, forced or size, *even(self.volume.findings, forced or size))
        if forced or not self.volume.vulnerabilities:
            return (None, forced or size, *even(self.volume.vulnerabilities, forced or size))
        # Tenable groups findings by asset: chunk n holds every finding of `num_assets` consecutive assets.
        chunks = -(-self.volume.assets // size)
        return (
            None,
            size,
            chunks,
            lambda c: (
                self._asset_start((c - 1) * size),
                self._asset_start(min(c * size, self.volume.assets))
                if c * size < self.volume.assets
                else self.volume.vulnerabilities,
            ),
        )

    def _status_of(self, job: _Job) -> tuple[str, list[int], list[int]]:
        """(status, chunks_available, chunks_failed) after `job.polls` status requests.

        States QUEUED, PROCESSING, FINISHED, ERROR, CANCELLED and chunks that become available while PROCESSING,
        as pyTenable's ExportsIterator reads them (tenable/io/exports/iterator.py: it downloads chunks_available as
        they appear and stops on FINISHED or ERROR). How long a finished export's chunks stay downloadable is not
        modelled (Tenable documents an expiry; the exact window was not checked here).
        """
        stages = max(1, self.volume.status_polls)
        everything = list(range(1, job.total_chunks + 1))
        if job.cancelled:
            return "CANCELLED", [], []
        if job.polls < stages:
            if job.polls <= 1 and stages >= 3:
                return "QUEUED", [], []
            return "PROCESSING", everything[: job.total_chunks * job.polls // stages], []
        partial = everything[: job.total_chunks * (stages - 1) // stages]
        outcome = self.volume.outcome(job.kind)
        if outcome in ("ERROR", "CANCELLED"):
            return outcome, partial, []
        if outcome == "chunks_failed" and everything:
            return "FINISHED", everything[:-1], everything[-1:]
        return "FINISHED", everything, []

    def _summary(self, job: _Job) -> dict[str, Any]:
        status, available, failed = self._status_of(job)
        summary = {
            "uuid": job.uuid,
            "status": status,
            "chunks_available": available,
            "chunks_failed": failed,
            "chunks_cancelled": [],
            "total_chunks": job.total_chunks,
            "chunks_available_count": len(available),
            "empty_chunks_count": 0,
            "finished_chunks": len(available),
            "filters": job.filters,
            "created": job.created,
        }
        if job.kind == "vulns":
            summary["num_assets_per_chunk"] = job.per_chunk
        return summary

    def _records(self, job: _Job, chunk: int) -> Iterator[dict[str, Any]]:
        start, end = job.chunk_ranges(chunk)
        if job.kind == "assets":
            for i in range(start, end):
                yield make_asset(self.seed, i, self.now)
        elif job.kind == "compliance":
            for i in range(start, end):
                yield make_compliance(self.seed, i, i % self.volume.assets, self.now)
        else:
            asset = self._asset_of(start) if end > start else 0
            for i in range(start, end):
                while asset + 1 < self.volume.assets and self._asset_start(asset + 1) <= i:
                    asset += 1
                record = make_vulnerability(self.seed, i, asset, self.now)
                if record["state"] in job.states:
                    yield record

    def _job(self, request: Request) -> tuple[Response | None, _Job | None]:
        if not self.authorized(request):
            return error(401), None
        job = self.jobs.get(request.params["uuid"])
        if job is None or job.kind != request.params["kind"]:
            return error(404, "Export not found or it has expired"), None  # status 404: assumed, text: no source
        return None, job

    # handlers

    def start_export(self, request: Request) -> Response:
        if not self.authorized(request):
            return error(401)
        kind = request.params["kind"]
        try:
            body = json.loads(request.body or b"{}")
        except ValueError:
            return error(400, "Invalid JSON body")
        if not isinstance(body, dict) or not isinstance(body.get("filters", {}), dict):
            return error(400, "The request body must be a JSON object whose 'filters' is an object")
        filters = body.get("filters", {})
        states: tuple[str, ...] = ()
        if kind == "vulns":
            raw = filters.get("state") or list(_DEFAULT_STATES)
            states = tuple(str(s).upper() for s in raw)
            if not isinstance(raw, list) or any(s not in _VULN_STATES for s in states):
                return error(400, f"filters.state must be a list of {', '.join(_VULN_STATES)}")
        problem, per_chunk, total_chunks, ranges = self._plan(kind, body)
        if problem:
            return problem
        key = kind + json.dumps(body, sort_keys=True)
        with self.lock:
            for job in self.jobs.values():
                if job.key == key and self._status_of(job)[0] in ("QUEUED", "PROCESSING"):
                    return Response(
                        409,
                        {
                            "active_job_id": job.uuid,
                            # pyTenable adopts active_job_id from this 409 and logs failure_reason
                            # (tenable/io/exports/api.py, RequestConflictError).
                            "failure_reason": "Duplicate export not allowed. Please modify request or wait until existing "
                            f"export is complete (job_uuid={job.uuid}).",
                        },
                        content_type=_JSON,
                    )
            self.job_counter += 1
            job_uuid = _uuid(_rng(self.seed, "export", self.job_counter))
            # Epoch milliseconds (the recorded status answers); the sandbox's clock, one second per job since.
            created = int((self.now + timedelta(seconds=self.job_counter)).timestamp() * 1000)
            self.jobs[job_uuid] = _Job(job_uuid, kind, key, created, filters, per_chunk, ranges, total_chunks, states)
        return Response(200, {"export_uuid": job_uuid}, content_type=_JSON)

    def status(self, request: Request) -> Response:
        problem, job = self._job(request)
        if problem:
            return problem
        with self.lock:
            job.polls += 1
            summary = self._summary(job)
        return Response(200, summary, content_type=_JSON)

    def chunk(self, request: Request) -> Response:
        problem, job = self._job(request)
        if problem:
            return problem
        try:
            chunk = int(request.params["chunk"])
        except ValueError:
            return error(400, "chunk_id must be an integer")
        with self.lock:
            available = self._status_of(job)[1]
        if chunk not in available:
            return error(404, f"Chunk {chunk} of export {job.uuid} is not available")
        # Encoded record by record: the sandbox holds one chunk's text, never its objects.
        body = b"[" + b",".join(json.dumps(r, separators=(",", ":")).encode() for r in self._records(job, chunk)) + b"]"
        return Response(200, body=body, content_type=_JSON)

    def cancel(self, request: Request) -> Response:
        problem, job = self._job(request)
        if problem:
            return problem
        with self.lock:
            job.cancelled = True
        return Response(200, {"status": "CANCELLED"}, content_type=_JSON)

    def jobs_list(self, request: Request) -> Response:
        if not self.authorized(request):
            return error(401)
        kind = request.params["kind"]
        with self.lock:
            exports = [self._summary(job) for job in self.jobs.values() if job.kind == kind]
        return Response(200, {"exports": exports}, content_type=_JSON)

    # WAS

    def _was_id(self, kind: str, index: int) -> str:
        return _uuid(_rng(self.seed, f"was-{kind}", index))

    def _was_time(self, config: int) -> datetime:
        """When configuration `config`'s last scan started: within the month before the sandbox's clock."""
        return self.now - timedelta(days=1 + config % 30, hours=config % 24)

    def _page(self, request: Request, total: int, make: Callable[[int], dict], sort: str) -> Response:
        # WAS v2 searches page with limit/offset and answer {"pagination": {"total", "offset", "limit", "sort"},
        # "items"} (the recorded WAS cassettes): `pagination.total` is the vendor's count. The 1-200 limit bound:
        # an assumption (no source read here).
        try:
            limit = int(request.arg("limit", "200"))
            offset = int(request.arg("offset", "0"))
        except ValueError:
            return error(400, "limit and offset must be integers")
        if not 1 <= limit <= 200 or offset < 0:
            return error(400, "limit must be between 1 and 200 and offset not negative")
        items = [make(i) for i in range(offset, min(offset + limit, total))]
        return Response(
            200,
            {
                "pagination": {
                    "total": total,
                    "offset": offset,
                    "limit": limit,
                    "sort": [{"name": sort, "order": "desc"}],
                },
                "items": items,
            },
            content_type=_JSON,
        )

    def _config(self, c: int) -> dict[str, Any]:
        started = self._was_time(c)
        targets = min(WAS_TARGETS_PER_CONFIG, self.was_targets - c * WAS_TARGETS_PER_CONFIG)
        config_id = self._was_id("config", c)
        return {
            "target": f"https://app{c}.example.com",
            "config_id": config_id,
            "owner_id": self._was_id("owner", 0),
            "is_shared": True,
            "user_permissions": "configure",
            "name": f"Web app {c}",
            "target_count": targets,
            "description": "Weekly scan",
            "created_at": _iso(started - timedelta(days=7)),
            "updated_at": _iso(started - timedelta(days=7)),
            "schedule": None,
            "in_trash": False,
            "imported": False,
            "template_id": self._was_id("template", 0),
            "last_scan": {
                "scan_id": self._was_id("parent", c),
                "user_id": self._was_id("owner", 0),
                "config_id": config_id,
                "created_at": _iso(started),
                "updated_at": _iso(started + timedelta(minutes=12)),
                "started_at": _iso(started),
                "finalized_at": _iso(started + timedelta(minutes=12)),
                "requested_action": "start",
                "status": "completed",
                "metadata": {"finalized_children": targets, "total_children": targets},
                "template_name": "quick",
                "target_scans": {"completed": targets},
            },
            "user_template": None,
        }

    def _target_range(self, t: int) -> tuple[int, int]:
        return t * self.volume.was // self.was_targets, (t + 1) * self.volume.was // self.was_targets

    def was_configs_search(self, request: Request) -> Response:
        if not self.authorized(request):
            return error(401)
        try:
            body = json.loads(request.body or b"{}")
        except ValueError:
            return error(400, "Invalid JSON body")
        clauses = [body] if "field" in body else (body.get("AND") or []) + (body.get("OR") or [])
        if any(not isinstance(c, dict) or not {"field", "operator", "value"} <= set(c) for c in clauses):
            return error(400, "each filter needs field, operator and value")
        return self._page(request, self.was_configs, self._config, "configs.updated_at")

    def was_targets_search(self, request: Request) -> Response:
        if not self.authorized(request):
            return error(401)
        c = self.parent_index.get(request.params["scan"])
        if c is None:
            return error(404, "Scan not found")
        first = c * WAS_TARGETS_PER_CONFIG
        count = min(WAS_TARGETS_PER_CONFIG, self.was_targets - first)

        def item(i: int) -> dict[str, Any]:
            t = first + i
            start, end = self._target_range(t)
            return {
                "target": {
                    "target_id": self._was_id("target-id", t),
                    "asset_id": self._was_id("asset", c),
                    "target_url": f"https://app{c}.example.com/t{t}",
                },
                "scan": {
                    "scan_id": self._was_id("target", t),
                    "created_at": _iso(self._was_time(c)),
                    "started_at": _iso(self._was_time(c)),
                    "status": "completed",
                    "estimate_percent_complete": None,
                },
                "findings": {"finding_count": end - start},
            }

        return self._page(request, count, item, "target")

    def was_report(self, request: Request) -> Response:
        if not self.authorized(request):
            return error(401)
        t = self.target_index.get(request.params["scan"])
        if t is None:
            return error(404, "Scan not found")
        c = t // WAS_TARGETS_PER_CONFIG
        url = f"https://app{c}.example.com/t{t}"
        started = self._was_time(c)
        start, end = self._target_range(t)
        config = self._config(c)
        return Response(
            200,
            {
                "report": {"version": "1.1", "created_at": _iso(started + timedelta(minutes=13))},
                "config": {
                    "config_id": config["config_id"],
                    "owner_id": config["owner_id"],
                    "name": config["name"],
                    "description": config["description"],
                    "scanner_type": "cloud",
                    "settings": {"timeout": "00:10:00"},
                },
                "template": {
                    "name": "quick",
                    "description": "A quick scan for web applications",
                    "template_id": config["template_id"],
                },
                "user_template": {"name": None, "owner_id": None, "description": None, "user_template_id": None},
                "scan": {
                    "user_id": config["owner_id"],
                    "scan_id": self._was_id("target", t),
                    "status": "completed",
                    "started_at": _iso(started),
                    "finalized_at": _iso(started + timedelta(minutes=12)),
                    "asset_id": self._was_id("asset", c),
                    "target": url,
                    "created_at": _iso(started),
                },
                "findings": [was_finding(self.seed, i, url) for i in range(start, end)],
                "notes": [],
            },
            content_type=_JSON,
        )


def _install(router: Router, context: VendorContext, volume: TenableVolume) -> None:
    api = _TenableApi(context, volume)
    failure = lambda status, request: error(status)  # noqa: E731
    for kind in EXPORT_KINDS:
        base = rf"/(?P<kind>{kind})/export"
        job = rf"{base}/(?P<uuid>[^/]+)"
        router.add("POST", base, f"tenable.{kind}.export", api.start_export, failure)
        router.add("GET", rf"{base}/status", f"tenable.{kind}.jobs", api.jobs_list, failure)
        router.add("GET", rf"{job}/status", f"tenable.{kind}.status", api.status, failure)
        router.add("GET", rf"{job}/chunks/(?P<chunk>[^/]+)", f"tenable.{kind}.chunk", api.chunk, failure)
        router.add("POST", rf"{job}/cancel", f"tenable.{kind}.cancel", api.cancel, failure)
    router.add("POST", r"/was/v2/configs/search", "tenable.was.configs", api.was_configs_search, failure)
    router.add(
        "POST",
        r"/was/v2/scans/(?P<scan>[^/]+)/vulnerabilities/by-targets/search",
        "tenable.was.targets",
        api.was_targets_search,
        failure,
    )
    router.add("GET", r"/was/v2/scans/(?P<scan>[^/]+)/report", "tenable.was.report", api.was_report, failure)


register_vendor(Vendor("tenable", TenableVolume, _install))
