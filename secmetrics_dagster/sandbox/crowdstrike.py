"""CrowdStrike Falcon in the sandbox: OAuth2 tokens, hosts (ids + details), Spotlight with `after`, Zero Trust.

Every behaviour is modelled on a vendor source, cited beside it; where none was found the comment says so. The
sources used most: falconpy 1.6.6 (CrowdStrike's Python SDK), CrowdStrike's rate-limit documentation as quoted by a
CrowdStrike maintainer in https://github.com/CrowdStrike/gofalcon/issues/364 ("RATE LIMITS" below), and answers
users pasted into public issues. Every record is computed from (seed, index) when a page is served, so volume costs
no memory. Vendor-specific knobs (in `CrowdStrikeVolume`, each also a CLI flag) make tokens and cursors expire and
the rate limit bite, deterministically:

- `token_ttl`: the `expires_in` of each token, enforced (a request with an older token gets 401);
- `token_uses`: a token is refused (401) after this many API calls, as one revoked elsewhere would be; 0 = never;
- `cursor_pages`: an `after` token is refused as expired (404) once a query has served this many pages; 0 = never;
- `rate_limit` per `rate_window` seconds: the sliding window every request with a valid token counts against.

The Spotlight filter understands the FQL the collectors send: `cve.id:!['']`, `last_seen_within:'N'` (accepted, not
applied: every generated vulnerability counts as seen recently) and range comparisons on `created_timestamp`, joined
by `+`, in parentheses or not. Records come sorted by `created_timestamp` (ties included: a scan finds several at once).

Timestamps count back from the sandbox's clock (`CrowdStrikeVolume.now`, default the moment the sandbox is created):
most sensors checked in within the day, about one host in ten not for over a week (a few for over a month); Spotlight
found the vulnerabilities over the 400 days before it, the newest a few days ago, and closed ones were closed within
15 days about half the time. The CVE catalogue's publication dates are its own, fixed.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
import math
import random
import re
import secrets
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Optional
from urllib.parse import parse_qsl

from .records import VendorApi, check_volume
from .server import Request, Response, Router, Vendor, VendorContext, register_vendor

MAX_LIMIT = 5000
MAX_SCROLL_LIMIT = 10_000  # QueryDevicesByFilterScroll's `limit (1-10000)`, falconpy hosts.py
# "QueryDevicesByFilter is limited to a maximum of 10K records. (Setting your offset to 10K or higher will produce a
# 400 error.)": falconpy's samples/hosts/offset_vs_token.py. The scroll query has "no maximum limit" (hosts.py).
MAX_OFFSET = 10_000
MAX_ZTA_IDS = 1000
# The clouds falconpy's autodiscover_region can switch to (its BaseURL enum, _enum/_base_url.py, also has us-3 and
# us-gov-2; the collector's region list does not, so they are not offered here).
REGIONS = ("us-1", "us-2", "eu-1", "us-gov-1")
# combinedQueryVulnerabilities' `facet` values, and `filter` required, in falconpy's swagger-derived
# _endpoint/_spotlight_vulnerabilities.py (its service docstring's "cve_details", "remediation_details" are stale).
FACETS = ("cve", "host_info", "remediation", "evaluation_logic")

# RATE LIMITS, CrowdStrike's documentation as quoted in https://github.com/CrowdStrike/gofalcon/issues/364: "The
# default rate limit for requests containing a valid bearer token is 6,000 requests per minute per customer account
# ... calculated on a sliding window. Requests with missing, malformed, or expired bearer tokens are rate limited at
# 15 requests per minute per source IP address (not per customer account)." and "For /oauth2/token the 15 requests
# per minute is overridden to allow 300 per IP per minute." A 401 carrying X-Ratelimit-Limit: 15 is shown in
# https://github.com/CrowdStrike/falconpy/issues/130 and the jump from 6000 to 15 in
# https://github.com/CrowdStrike/psfalcon/issues/170. Every sandbox client is 127.0.0.1: one address, one window.
INVALID_TOKEN_LIMIT = 15
TOKEN_ENDPOINT_LIMIT = 300
LIMITS_WINDOW = 60


@dataclass(frozen=True)
class CrowdStrikeVolume:
    """How much Falcon data the sandbox serves and how it misbehaves; int fields are CLI flags (--crowdstrike-hosts)."""

    hosts: int = 40
    vulnerabilities: int = 300
    # 1799: what Falcon's token answer says ("Tokens expire after 30 minutes", CrowdStrike's API specification as
    # generated into https://docs.rs/crate/rusty_falcon/latest/source/src/apis/oauth2_api.rs; falconpy assumes 1799
    # for a token it is handed, _auth_object/_falcon_interface.py).
    token_ttl: int = 1799
    token_uses: int = 0
    cursor_pages: int = 0
    rate_limit: int = 6000  # see RATE LIMITS; also the X-Ratelimit-Limit seen in elastic/integrations#9199
    rate_window: int = 60
    region: str = "us-1"  # sent as X-Cs-Region on every answer, as Falcon does (see _FalconApi._headers)
    # The tenant's "now" (epoch seconds) every generated timestamp counts back from; None: when the sandbox is created.
    now: Optional[float] = None

    def __post_init__(self) -> None:
        positive = ("token_ttl", "rate_limit", "rate_window")
        check_volume(
            self,
            ("hosts", "vulnerabilities", "token_uses", "cursor_pages", *positive),
            least=dict.fromkeys(positive, 1),
        )
        if self.vulnerabilities and not self.hosts:
            raise ValueError("CrowdStrikeVolume: vulnerabilities need at least one host")
        if self.region not in REGIONS:
            raise ValueError(f"CrowdStrikeVolume.region must be one of {', '.join(REGIONS)}, got {self.region!r}")


# --------------------------------------------------------------------------------------- error bodies

JSON = "application/json"
# Gateway refusals, as users pasted them: 401 "access denied, invalid bearer token" (CrowdStrike/rusty-falcon#98,
# a long Spotlight pull whose token expired; CrowdStrike/falconpy#130), 403 "access denied, authorization failed"
# (elastic/integrations#9051; CrowdStrike/psfalcon#254). The other wordings: no source found.
_MESSAGES = {
    400: "Bad request",
    401: "access denied, invalid bearer token",
    403: "access denied, authorization failed",
    404: "Not Found",
    429: "API rate limit exceeded.",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
GATEWAY = "crowdstrike-api-gateway"
# A token request with unknown credentials: HTTP 403 from the "csam" service with this message
# (https://github.com/elastic/kibana/pull/235139, where an agent's login was refused).
TOKEN_REFUSED = (
    "Failed to issue access token - Client authentication failed (e.g., unknown client, no client authentication "
    "included, or unsupported authentication method)"
)


def _meta(powered_by: str, started: Optional[float] = None, **extra: Any) -> dict[str, Any]:
    elapsed = (time.perf_counter() - started) if started is not None else 1.2e-05
    return {"query_time": round(elapsed, 9), **extra, "powered_by": powered_by, "trace_id": str(uuid.uuid4())}


def answer(status: int, body: dict[str, Any], headers: Optional[dict[str, str]] = None, **extra: Any) -> Response:
    """A Falcon answer: JSON, and the X-Cs-Traceid header equal to meta.trace_id (both in the raw answer quoted in
    https://github.com/elastic/integrations/issues/9051)."""
    trace = {"X-Cs-Traceid": body["meta"]["trace_id"]} if isinstance(body.get("meta"), dict) else {}
    return Response(status, body, content_type=JSON, headers={**(headers or {}), **trace}, **extra)


def falcon_error(
    status: int,
    message: Optional[str] = None,
    headers: Optional[dict[str, str]] = None,
    powered_by: str = GATEWAY,
) -> Response:
    """Falcon's error shape: meta, errors[{code, message}], and an empty resources list from the services.

    The API gateway's refusals (401, 403, 429) and the token service's carry no `resources` at all (the 401 bodies
    in CrowdStrike/rusty-falcon#98 and CrowdStrike/falconpy#130, the 403 in elastic/integrations#9051); a service's
    own errors do (the 400 of msa-api in elastic/integrations#9199, the 404 of spapi in elastic/integrations#19206).
    """
    body: dict[str, Any] = {"meta": _meta(powered_by)}
    if powered_by not in (GATEWAY, "csam"):
        body["resources"] = []
    body["errors"] = [{"code": status, "message": message or _MESSAGES.get(status, f"HTTP {status}")}]
    return answer(status, body, headers)


def cursor_expired(limit: int, headers: dict[str, str]) -> Response:
    """An aged-out `after` cursor: HTTP 404, the message and the emptied pagination exactly as Falcon answered it in
    https://github.com/elastic/integrations/issues/19206 (the failure reported in
    https://github.com/elastic/integrations/issues/14670). Falcon ages a cursor out by time; the sandbox does it
    after `cursor_pages` pages so that a test can be exact (no source gives the lifetime)."""
    body = {
        "meta": _meta("spapi", pagination={"limit": limit, "total": 0, "after": ""}),
        "resources": [],
        "errors": [{"code": 404, "message": "Search context expired, 'after' key no longer valid"}],
    }
    return answer(404, body, headers)


# ------------------------------------------------------------------------------------------ generation
# Records carry the field names of Falcon's host, Spotlight and Zero Trust records as the collectors and their
# checks read them (device_id, hostname, platform_name, last_seen; id, aid, status, cve.id, created_timestamp with
# the cve/host_info/remediation facets of falconpy's query_vulnerabilities_combined; aid, assessment.overall). The
# other fields and all values are made up: no source was checked field by field.

_U64 = (1 << 64) - 1
_ODD = 0x9E3779B97F4A7C15  # a bijection on 64 bits: index -> scrambled id and back, no lookup table
_ODD_INV = pow(_ODD, -1, 1 << 64)

_K_HOST, _K_VULN, _K_ZTA, _K_CVE, _K_CID = 1, 2, 3, 4, 5

DAY = 86400
_VULN_SPAN = 400 * DAY  # vulnerabilities were created over the 400 days before the sandbox's clock
# When each sensor last checked in (share of hosts in %, low and high days before the clock): most within the day,
# some within the week, a few for longer (an offline laptop, a retired server never removed). How long closed
# vulnerabilities took to close: about half within 15 days. Shares chosen for realistic metrics, not from a source.
_LAST_SEEN_BANDS = [(80, 0, 1), (90, 1, 7), (95, 8, 30), (100, 31, 90)]
_CLOSE_BANDS = [(50, 1, 14), (100, 16, 60)]
TIES = 3  # vulnerabilities created in the same second (one scan finds several)


def _rng(seed: int, kind: int, index: int) -> random.Random:
    return random.Random((seed << 48) ^ (kind << 40) ^ index)  # int seeds: fast and stable across processes


def _hex(seed: int, kind: int, index: int, length: int = 32) -> str:
    return hashlib.blake2b(f"{seed}:{kind}:{index}".encode(), digest_size=16).hexdigest()[:length]


def host_serial(seed: int, index: int) -> str:
    """The serial number of host `index` (its hosts record and its Zero Trust assessment); the sandbox's Intune
    devices carry most of these, so the endpoint sensor coverage metric can join the two by serial."""
    return _hex(seed, 97, index, 12).upper()


def _ts(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _days(rng: random.Random, bands: list[tuple[int, int, int]]) -> timedelta:
    """A duration in one of `bands` [(cumulative share in %, low days, high days)], to the second."""
    roll = rng.randrange(100)
    low, high = next((low, high) for bound, low, high in bands if roll < bound)
    return timedelta(seconds=rng.randrange(low * DAY, high * DAY))


def customer_id(seed: int) -> str:
    return _hex(seed, _K_CID, 0)


def device_id(seed: int, index: int) -> str:
    scrambled = ((index + 1) * _ODD) & _U64
    return _hex(seed, _K_HOST, index, 16) + f"{scrambled:016x}"


def device_index(seed: int, aid: str, hosts: int) -> Optional[int]:
    """The host index an agent id stands for, or None when this sandbox never issued it."""
    if not re.fullmatch(r"[0-9a-f]{32}", aid or ""):
        return None
    index = ((int(aid[16:], 16) * _ODD_INV) & _U64) - 1
    if not 0 <= index < hosts or device_id(seed, index) != aid:
        return None
    return index


# fmt: off
_PLATFORMS = [
    # platform_name, os_version, os_product_name, product_type_desc, kernel/build, manufacturer, model
    ("Windows", "Windows 11", "Windows 11 Enterprise", "Workstation", "22631", "Dell Inc.", "Latitude 7440"),
    ("Windows", "Windows 10", "Windows 10 Enterprise", "Workstation", "19045", "LENOVO", "20XW004XUS"),
    ("Windows", "Windows Server 2022", "Windows Server 2022 Datacenter", "Server", "20348", "VMware, Inc.", "VMware7,1"),
    ("Windows", "Windows Server 2019", "Windows Server 2019 Standard", "Server", "17763", "Microsoft Corporation", "Virtual Machine"),
    ("Mac", "Sonoma (14)", "macOS", "Workstation", "23.4.0", "Apple Inc.", "MacBookPro18,3"),
    ("Mac", "Ventura (13)", "macOS", "Workstation", "22.6.0", "Apple Inc.", "Mac14,2"),
    ("Linux", "Ubuntu 22.04", "Ubuntu", "Server", "5.15.0-105-generic", "Amazon EC2", "m5.large"),
    ("Linux", "RHEL 9.3", "Red Hat Enterprise Linux", "Server", "5.14.0-362.24.1.el9_3.x86_64", "Google", "Google Compute Engine"),
]
# fmt: on
_PLATFORM_WEIGHTS = [0] * 10 + [1] * 8 + [2] * 3 + [3] * 2 + [4] * 4 + [5] * 2 + [6] * 4 + [7] * 2
_PLATFORM_IDS = {"Windows": "0", "Mac": "1", "Linux": "3"}
_SITES = ["HQ-NYC", "LON-1", "FRA-DC", "SFO", "AWS-us-east-1", "GCP-europe-west1", "Remote"]
_OUS = [
    ["Workstations", "Engineering"],
    ["Workstations", "Finance"],
    ["Servers", "Production"],
    ["Servers", "Staging"],
    ["Workstations", "Sales"],
    [],
]
_DEPTS = ["eng", "fin", "ops", "sales", "hr", "it", "sec"]
_AGENT_VERSIONS = ["7.10.17706.0", "7.11.18110.0", "7.12.18306.0", "7.13.18403.0", "7.14.18508.0"]
_HOST_STATUS = ["normal"] * 40 + ["containment_pending", "contained"]


@functools.lru_cache(maxsize=8192)  # Spotlight pages look hosts up again and again; bounded, so memory stays flat
def _host_core(seed: int, index: int) -> tuple:
    rng = _rng(seed, _K_HOST, index)
    platform = _PLATFORMS[rng.choice(_PLATFORM_WEIGHTS)]
    name, os_version, product, kind, build, maker, model = platform
    dept = rng.choice(_DEPTS)
    prefix = {"Windows": "WIN" if kind == "Workstation" else "SRV", "Mac": "MAC", "Linux": "lnx"}[name]
    hostname = f"{prefix}-{dept}-{index:05d}" if name != "Linux" else f"{prefix}-{dept}-{index:05d}.prod.internal"
    local_ip = f"10.{rng.randrange(1, 250)}.{rng.randrange(0, 255)}.{rng.randrange(2, 254)}"
    site = rng.choice(_SITES)
    ou = rng.choice(_OUS) if name == "Windows" else []
    return name, os_version, product, kind, build, maker, model, hostname, local_ip, site, ou, rng.getrandbits(64)


# Host details are asked for in batches by several threads at once; caching them keeps this one Python process
# from being the bottleneck when a benchmark measures the client's concurrency. Bounded (~100 MB when full).
@functools.lru_cache(maxsize=16384)
def make_host(seed: int, index: int, now: datetime) -> dict[str, Any]:
    """One host's details; `now`: the sandbox's clock its timestamps count back from."""
    name, os_version, product, kind, build, maker, model, hostname, local_ip, site, ou, bits = _host_core(seed, index)
    rng = _rng(seed, _K_HOST + 100, index)
    last_seen = now - _days(rng, _LAST_SEEN_BANDS)
    first_seen = last_seen - timedelta(seconds=rng.randrange(30 * DAY, 3 * 365 * DAY))
    mac = "-".join(f"{(bits >> (8 * k)) & 0xFF:02x}" for k in range(6))
    agent_version = rng.choice(_AGENT_VERSIONS)
    groups = [_hex(seed, 90, g) for g in range(rng.randrange(0, 3))]
    policies = [
        {
            "policy_type": "prevention",
            "policy_id": _hex(seed, 91, 0 if kind == "Workstation" else 1),
            "applied": True,
            "settings_hash": _hex(seed, 92, index, 8),
            "assigned_date": _ts(first_seen),
            "applied_date": _ts(first_seen),
        },
    ]
    device_policies = {
        "prevention": {**policies[0], "rule_groups": []},
        "sensor_update": {
            "policy_type": "sensor-update",
            "policy_id": _hex(seed, 93, 0),
            "applied": True,
            "settings_hash": "tagged|7;101",
            "uninstall_protection": "ENABLED",
        },
        "firewall": {
            "policy_type": "firewall",
            "policy_id": _hex(seed, 94, 0),
            "applied": rng.random() < 0.9,
            "rule_set_id": _hex(seed, 95, 0),
        },
    }
    return {
        "device_id": device_id(seed, index),
        "cid": customer_id(seed),
        "agent_load_flags": "1",
        "agent_local_time": _ts(last_seen),
        "agent_version": agent_version,
        "bios_manufacturer": maker,
        "bios_version": f"{rng.randrange(1, 3)}.{rng.randrange(0, 30)}.{rng.randrange(0, 9)}",
        "config_id_base": "65994763",
        "config_id_build": agent_version.split(".")[2],
        "config_id_platform": "3" if name == "Windows" else "4",
        "cpu_signature": str(rng.choice([526054, 591594, 460530])),
        "cpu_vendor": rng.choice(["0", "1"]),
        "external_ip": f"203.0.{rng.randrange(0, 113)}.{rng.randrange(1, 254)}",
        "mac_address": mac,
        "hostname": hostname,
        "first_seen": _ts(first_seen),
        "last_seen": _ts(last_seen),
        "local_ip": local_ip,
        "connection_ip": local_ip,
        "default_gateway_ip": local_ip.rsplit(".", 1)[0] + ".1",
        "connection_mac_address": mac,
        "major_version": build.split(".")[0] if name != "Windows" else "10",
        "minor_version": "0",
        "os_version": os_version,
        "os_build": build,
        "os_product_name": product,
        "kernel_version": build,
        "platform_id": _PLATFORM_IDS[name],
        "platform_name": name,
        "policies": policies,
        "reduced_functionality_mode": "no" if name != "Linux" else rng.choice(["no", "no", "yes"]),
        "device_policies": device_policies,
        "groups": groups,
        "group_hash": _hex(seed, 96, len(groups)),
        "product_type": "1" if kind == "Workstation" else "3",
        "product_type_desc": kind,
        "provision_status": "Provisioned",
        "serial_number": host_serial(seed, index),
        "status": rng.choice(_HOST_STATUS),
        "system_manufacturer": maker,
        "system_product_name": model,
        "site_name": site,
        "ou": ou,
        "machine_domain": "corp.acme.example" if name == "Windows" else "",
        "tags": [f"SensorGroupingTags/{site}"] if rng.random() < 0.4 else [],
        "modified_timestamp": _ts(last_seen + timedelta(seconds=rng.randrange(600))),
        "meta": {
            "version": str(rng.randrange(100, 9000)),
            "version_string": f"{rng.randrange(1, 40)}:{rng.randrange(10**8)}",
        },
        "chassis_type": "3" if kind == "Workstation" else "1",
        "chassis_type_desc": "Desktop" if kind == "Workstation" else "Other",
        "filesystem_containment_status": "normal",
        "zone_group": "",
        "instance_id": f"i-{_hex(seed, 98, index, 17)}" if maker == "Amazon EC2" else "",
        "service_provider": "AWS_EC2_V2" if maker == "Amazon EC2" else ("GCP" if maker == "Google" else ""),
        "service_provider_account_id": "123456789012" if maker == "Amazon EC2" else "",
    }


# Products Spotlight finds and how they get fixed: (product, version, vendor, remediation reference, link)
_PRODUCTS = [
    ("Google Chrome", "124.0.6367.91", "Google", "Update Google Chrome", "https://chromereleases.googleblog.com/"),
    ("Mozilla Firefox", "125.0.2", "Mozilla", "Update Mozilla Firefox", "https://www.mozilla.org/security/advisories/"),
    ("Microsoft Windows", "", "Microsoft", "KB5036893", "https://support.microsoft.com/help/5036893"),
    ("Microsoft Office", "16.0.17328", "Microsoft", "KB5002537", "https://support.microsoft.com/help/5002537"),
    (
        "Microsoft Edge",
        "124.0.2478.67",
        "Microsoft",
        "Update Microsoft Edge",
        "https://msrc.microsoft.com/update-guide",
    ),
    ("OpenSSL", "3.0.2", "OpenSSL", "Update OpenSSL", "https://www.openssl.org/news/vulnerabilities.html"),
    (
        "Adobe Acrobat Reader DC",
        "23.008.20533",
        "Adobe",
        "APSB24-07",
        "https://helpx.adobe.com/security/products/acrobat/apsb24-07.html",
    ),
    ("Oracle Java SE", "8u401", "Oracle", "Update Oracle Java SE", "https://www.oracle.com/security-alerts/"),
    ("Zoom Workplace", "5.17.11", "Zoom", "Update Zoom", "https://www.zoom.com/en/trust/security-bulletin/"),
    ("7-Zip", "23.01", "Igor Pavlov", "Update 7-Zip", "https://www.7-zip.org/history.txt"),
    ("linux-image", "5.15.0-105", "Canonical", "USN-6795-1", "https://ubuntu.com/security/notices/USN-6795-1"),
    ("openssh", "8.9p1", "OpenBSD", "Update OpenSSH", "https://www.openssh.com/security.html"),
    ("Apple macOS", "14.4", "Apple", "Update macOS", "https://support.apple.com/en-us/HT201222"),
]
_CVES = 2000  # the catalogue vulnerabilities are drawn from: many hosts share a CVE, as in a real fleet
_VULN_STATUS = ["open"] * 14 + ["reopen"] * 2 + ["closed"] * 3 + ["expired"]
_EXPRT = ["LOW", "LOW", "MEDIUM", "MEDIUM", "HIGH", "CRITICAL"]


def _severity(score: float) -> str:
    return "CRITICAL" if score >= 9 else "HIGH" if score >= 7 else "MEDIUM" if score >= 4 else "LOW"


@functools.lru_cache(maxsize=_CVES)
def _cve(seed: int, index: int) -> tuple[dict[str, Any], int]:
    rng = _rng(seed, _K_CVE, index)
    year = rng.choice([2021, 2022, 2023, 2023, 2024, 2024, 2024])
    score = round(rng.uniform(2.0, 10.0), 1)
    product = rng.randrange(len(_PRODUCTS))
    published = datetime(year, 1, 1, tzinfo=UTC) + timedelta(days=rng.randrange(360))
    exploit = rng.choice([0, 0, 0, 30, 60, 90])
    cve = {
        "id": f"CVE-{year}-{rng.randrange(1000, 52000)}",
        "base_score": score,
        "severity": _severity(score),
        "exploit_status": exploit,
        "exprt_rating": rng.choice(_EXPRT),
        "remediation_level": "O",
        "cisa_info": {"is_cisa_kev": exploit >= 60 and rng.random() < 0.5},
        "spotlight_published_date": _ts(published + timedelta(days=rng.randrange(1, 10))),
        "published_date": _ts(published),
        "description": f"A vulnerability in {_PRODUCTS[product][0]} allows "
        + rng.choice(
            [
                "remote code execution",
                "privilege escalation",
                "information disclosure",
                "denial of service",
                "a security feature bypass",
            ]
        )
        + ".",
        "vector": "CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:U/C:H/I:H/A:H",
        "exploitability_score": round(rng.uniform(1.0, 3.9), 1),
        "impact_score": round(rng.uniform(1.0, 6.0), 1),
        "types": [
            rng.choice(["Memory Corruption", "Use After Free", "Improper Input Validation", "Out-of-bounds Write"])
        ],
    }
    return cve, product


def vulnerability_count_created_before(
    volume: CrowdStrikeVolume, moment: datetime, inclusive: bool, now: datetime
) -> int:
    """How many vulnerabilities were created before `moment` (or at it, when inclusive): where a range filter starts."""
    step = _vuln_step(volume.vulnerabilities)
    seconds = (moment - (now - timedelta(seconds=_VULN_SPAN))).total_seconds()
    groups = math.floor(seconds / step) + 1 if inclusive else math.ceil(seconds / step)
    return max(0, min(volume.vulnerabilities, groups * TIES))


@functools.lru_cache(maxsize=64)
def _vuln_step(total: int) -> int:
    return max(1, _VULN_SPAN // max(1, math.ceil(total / TIES)))


def vulnerability_created(total: int, index: int, now: datetime) -> datetime:
    """When vulnerability `index` of `total` was created: evenly over the _VULN_SPAN before `now`, in index order."""
    return now - timedelta(seconds=_VULN_SPAN) + timedelta(seconds=(index // TIES) * _vuln_step(total))


def make_vulnerability(
    seed: int, index: int, volume: CrowdStrikeVolume, facets: frozenset[str], now: datetime
) -> dict[str, Any]:
    rng = _rng(seed, _K_VULN, index)
    host = rng.randrange(volume.hosts)
    aid = device_id(seed, host)
    cve, product_index = _cve(seed, rng.randrange(_CVES))
    product, version, vendor, reference, link = _PRODUCTS[product_index]
    created = vulnerability_created(volume.vulnerabilities, index, now)
    updated = min(now, created + timedelta(seconds=rng.randrange(120 * DAY)))
    status = rng.choice(_VULN_STATUS)
    if status == "closed":
        updated = min(now, created + _days(rng, _CLOSE_BANDS))  # closed_timestamp: the last update
    remediation_id = _hex(seed, _K_CVE + 50, product_index)
    version = version or _host_core(seed, host)[4]
    record: dict[str, Any] = {
        "id": f"{aid}_{_hex(seed, _K_VULN, index)}",
        "cid": customer_id(seed),
        "aid": aid,
        "created_timestamp": _ts(created),
        "updated_timestamp": _ts(updated),
        "status": status,
        "confidence": "confirmed",
        "apps": [
            {
                "product_name_version": f"{product} {version}".strip(),
                "product_name_normalized": product,
                "vendor_normalized": vendor,
                "sub_status": status if status != "expired" else "open",
                "remediation": {"ids": [remediation_id]},
                "evaluation_logic": {"id": _hex(seed, _K_VULN + 50, index % 97)},
            }
        ],
        "suppression_info": {"is_suppressed": False},
        "data_providers": [{"provider": "Falcon sensor"}],
        "cve": cve if "cve" in facets else {"id": cve["id"]},
    }
    if status == "closed":
        record["closed_timestamp"] = _ts(updated)
    if "host_info" in facets:
        name, os_version, _product, kind, _build, maker, _model, hostname, local_ip, site, ou, _bits = _host_core(
            seed, host
        )
        record["host_info"] = {
            "hostname": hostname,
            "local_ip": local_ip,
            "machine_domain": "corp.acme.example" if name == "Windows" else "",
            "os_version": os_version,
            "ou": "/".join(ou),
            "site_name": site,
            "system_manufacturer": maker,
            "platform": name,
            "product_type_desc": kind,
            "tags": [],
            "groups": [],
            "asset_criticality": rng.choice(["Unassigned", "Unassigned", "Low", "Medium", "High", "Critical"]),
            "internet_exposure": rng.choice(["No", "No", "No", "Yes"]),
            "managed_by": "Falcon sensor",
            "instance_state": "running" if maker in ("Amazon EC2", "Google") else "",
        }
    if "remediation" in facets:
        record["remediation"] = {
            "entities": [
                {
                    "id": remediation_id,
                    "reference": reference,
                    "title": f"Update {product}"
                    if not reference.startswith(("KB", "APSB", "USN"))
                    else f"Install {reference}",
                    "action": f"Install the latest version of {product} from {vendor}"
                    if not reference.startswith("KB")
                    else f"Install patch for {product}: {reference}",
                    "link": link,
                    "vendor_url": link,
                }
            ]
        }
    if "evaluation_logic" in facets:
        record["evaluation_logic"] = {"id": record["apps"][0]["evaluation_logic"]["id"], "logic": []}
    return record


def make_assessment(seed: int, index: int, now: datetime) -> dict[str, Any]:
    name, _os_version, _product, kind, _build, _maker, _model, _hostname, _ip, _site, _ou, _bits = _host_core(
        seed, index
    )
    rng = _rng(seed, _K_ZTA, index)
    os_score = rng.randrange(20, 101)
    sensor = rng.randrange(30, 101)
    signals = [
        ("firewall_enabled", "Firewall enabled", "Firewall"),
        ("disk_encryption", "Disk encryption", "Encryption"),
        ("secure_boot", "Secure Boot", "Boot security"),
        ("os_up_to_date", "Operating system up to date", "Patching"),
    ]
    sensor_signals = [
        ("ml_prevention", "Machine learning prevention", "Prevention"),
        ("sensor_tamper", "Sensor tamper protection", "Sensor"),
        ("script_control", "Script-based execution monitoring", "Prevention"),
    ]

    def items(pairs: list[tuple[str, str, str]]) -> list[dict[str, Any]]:
        return [
            {
                "signal_id": f"{sid}_{name.lower()}",
                "signal_name": label,
                "group_name": group,
                "criteria": f"{label}: enabled",
                "meets_criteria": rng.choice(["yes", "yes", "no"]),
            }
            for sid, label, group in pairs
        ]

    return {
        "aid": device_id(seed, index),
        "cid": customer_id(seed),
        "event_platform": {"Windows": "Win", "Mac": "Mac", "Linux": "Lin"}[name],
        "product_type_desc": kind,
        "sensor_file_status": rng.choice(["not deployed", "deployed"]),
        "system_serial_number": host_serial(seed, index),
        "assessment": {
            "sensor_config": sensor,
            "os": os_score,
            "overall": (sensor + os_score) // 2,
            "version": "3.6.1",
        },
        "assessment_items": {"os_signals": items(signals), "sensor_signals": items(sensor_signals)},
        "modified_time": _ts(now - timedelta(seconds=rng.randrange(DAY))),
    }


# ----------------------------------------------------------------------------------------- the filter

_RANGE_OPS = (">=", "<=", ">", "<")


def _split_top(text: str, separator: str) -> list[str]:
    """Split on `separator` outside quotes, brackets and parentheses."""
    parts, depth, quote, current = [], 0, "", []
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
        elif char == separator and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def _parse_time(value: str) -> datetime:
    text = _unquote(value)
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def spotlight_range(filter_text: str, volume: CrowdStrikeVolume, now: datetime) -> tuple[int, int]:
    """[start, end) of the vulnerabilities an FQL filter selects; ValueError with Falcon's wording when it cannot."""
    start, end = 0, volume.vulnerabilities
    text = filter_text.strip()
    if not text:
        raise ValueError("filter is required")
    if len(_split_top(text, ",")) > 1:
        raise ValueError("the sandbox only supports '+' (and) between filter terms")
    for raw in _split_top(text, "+"):
        term = raw.strip()
        if term.startswith("(") and term.endswith(")"):
            inner_start, inner_end = spotlight_range(term[1:-1], volume, now)
            start, end = max(start, inner_start), min(end, inner_end)
            continue
        name, sep, rest = term.partition(":")
        if not sep:
            raise ValueError(f"invalid filter term {term!r}")
        name, rest = name.strip(), rest.strip()
        if name == "cve.id" and rest.replace(" ", "") in ("!['']", '![""]'):
            continue  # every vulnerability has a CVE id
        if name == "last_seen_within":
            days = _unquote(rest)
            if not days.isdigit() or int(days) < 1:
                raise ValueError(f"invalid last_seen_within value {rest!r}")
            continue  # not applied: every generated vulnerability counts as seen recently
        if name == "created_timestamp":
            op = next((o for o in _RANGE_OPS if rest.startswith(o)), "")
            if not op:
                raise ValueError("created_timestamp supports only the range operators >, >=, <, <=")
            try:
                moment = _parse_time(rest[len(op) :])
            except ValueError:
                raise ValueError(f"invalid timestamp in {term!r}") from None
            if op in (">=", ">"):
                start = max(start, vulnerability_count_created_before(volume, moment, op == ">", now))
            else:
                end = min(end, vulnerability_count_created_before(volume, moment, op == "<=", now))
            continue
        raise ValueError(f"the sandbox does not support filtering on {name!r} here")
    return start, max(start, end)


# -------------------------------------------------------------------------------------------- cursors


def _fingerprint(*parts: Any) -> str:
    return hashlib.blake2b(json.dumps(parts).encode(), digest_size=6).hexdigest()


def encode_after(position: int, page: int, query: str) -> str:
    raw = json.dumps({"version": "v1", "p": page, "o": position, "q": query}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def encode_scroll(position: int) -> str:
    raw = json.dumps({"v": 1, "o": position}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_scroll(token: str) -> int:
    try:
        position = int(json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))["o"])
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise ValueError("invalid offset: not a pointer from a previous scroll call") from None
    if position < 0:
        raise ValueError("invalid offset: not a pointer from a previous scroll call")
    return position


def decode_after(token: str) -> tuple[int, int, str]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        return int(data["o"]), int(data["p"]), str(data["q"])
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise ValueError("invalid after token") from None


# ------------------------------------------------------------------------------------------- the API


class _SlidingWindow:
    """At most `limit` requests in any `window` seconds (RATE LIMITS: "calculated on a sliding window").

    How Falcon's window is kept (a log, or counters) is not documented; a log of request times is the exact reading.
    """

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self.times: deque[float] = deque()
        self.lock = threading.Lock()

    def take(self) -> tuple[bool, int, float]:
        """(allowed, remaining after this request, seconds until the next request would be allowed)."""
        with self.lock:
            now = time.monotonic()
            while self.times and self.times[0] <= now - self.window:
                self.times.popleft()
            if len(self.times) < self.limit:
                self.times.append(now)
                return True, self.limit - len(self.times), 0.0
            return False, 0, self.times[0] + self.window - now

    def headers(self, allowed: bool, remaining: int, wait: float) -> dict[str, str]:
        """X-Ratelimit-Limit and -Remaining on every answer (elastic/integrations#9199 and #9051, the raw answers),
        X-Ratelimit-Retryafter on a refusal: epoch seconds (CrowdStrike's psfalcon reads it with
        FromUnixTimeSeconds, class/Class.ps1; CrowdStrike/gofalcon#646 added it to gofalcon)."""
        headers = {"X-Ratelimit-Limit": str(self.limit), "X-Ratelimit-Remaining": str(remaining)}
        if not allowed:
            headers["X-Ratelimit-Retryafter"] = str(math.ceil(time.time() + wait))
        return headers


class _FalconApi(VendorApi):
    volume: CrowdStrikeVolume

    def __init__(self, context: VendorContext, volume: CrowdStrikeVolume) -> None:
        super().__init__(context, volume)
        self.limiter = _SlidingWindow(volume.rate_limit, volume.rate_window)  # the customer's pool
        self.invalid = _SlidingWindow(INVALID_TOKEN_LIMIT, min(LIMITS_WINDOW, volume.rate_window))  # per address
        self.token_limiter = _SlidingWindow(TOKEN_ENDPOINT_LIMIT, min(LIMITS_WINDOW, volume.rate_window))
        self.lock = threading.Lock()
        self.tokens: dict[str, list[float]] = {}  # token -> [expiry (monotonic), uses]; expired ones are pruned

    # auth and rate limit

    def _headers(self, rate: dict[str, str]) -> dict[str, str]:
        # X-Cs-Region on data answers too: in CrowdStrike/falconpy#917, CrowdStrike/psfalcon#170 and
        # elastic/integrations#9199 (falconpy reads it from token answers only, autodiscover_region).
        return {**rate, "X-Cs-Region": self.volume.region}

    def _refuse_token(self) -> Response:
        """401 for a missing, malformed, expired or revoked token, metered against the 15 per address (RATE LIMITS);
        past them, 429 (what Falcon answers then is not documented: 429 is its answer to any exhausted limit)."""
        allowed, remaining, wait = self.invalid.take()
        headers = self._headers(self.invalid.headers(allowed, remaining, wait))
        return falcon_error(401 if allowed else 429, headers=headers)

    def fault_error(self, status: int, request: Request) -> Response:
        """Error factory for injected faults: Falcon's body; a 401 as a refused token, a 429 with the pool's headers."""
        if status == 401:
            return self._refuse_token()
        headers = self._headers({})
        if status == 429:
            headers.update(self.limiter.headers(False, 0, 0.0))  # the next second
        return falcon_error(status, headers=headers)

    def _gate(self, request: Request) -> tuple[Optional[Response], dict[str, str]]:
        """Bearer token, then the rate limit; returns (error or None, headers for the answer)."""
        scheme, _, token = (request.headers.get("Authorization") or "").partition(" ")
        with self.lock:
            entry = self.tokens.get(token.strip()) if scheme.lower() == "bearer" else None
            # A token lives `expires_in` seconds from its answer (falconpy's BearerToken counts from then too).
            valid = entry is not None and entry[0] > time.monotonic()
            if valid and self.volume.token_uses:
                # No source for a use count: it stands for a token revoked elsewhere (POST /oauth2/revoke, falconpy
                # wiki "OAuth2"), at a moment a test can choose.
                entry[1] += 1
                valid = entry[1] <= self.volume.token_uses
        if not valid:
            return self._refuse_token(), {}
        allowed, remaining, wait = self.limiter.take()
        headers = self._headers(self.limiter.headers(allowed, remaining, wait))
        if not allowed:
            return falcon_error(429, headers=headers), headers
        return None, headers

    def token(self, request: Request) -> Response:
        """POST /oauth2/token, form-encoded client_id and client_secret (falconpy's login_payloads, _util/_auth.py);
        201 with access_token and expires_in, which falconpy's login reads (_auth_object/_falcon_interface.py), and
        X-Cs-Region naming the API client's cloud (falconpy's autodiscover_region, _util/_functions.py). HTTP
        redirects to another cloud, which falconpy follows on /oauth2/token and /oauth2/revoke only (perform_request,
        _util/_functions.py), are not simulated."""
        allowed, remaining, wait = self.token_limiter.take()
        headers = self._headers(self.token_limiter.headers(allowed, remaining, wait))
        if not allowed:
            return falcon_error(429, headers=headers, powered_by="csam")
        form = dict(parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True))
        client_id, client_secret = form.get("client_id", ""), form.get("client_secret", "")
        if not client_id or not client_secret:
            # No source for the answer to a form without credentials; the 403 below is the documented refusal.
            return falcon_error(400, "invalid request: client_id and client_secret are required", headers, "csam")
        if client_secret != self.secret:
            return falcon_error(403, TOKEN_REFUSED, headers, "csam")
        token = secrets.token_urlsafe(48)
        now = time.monotonic()
        with self.lock:
            for old in [t for t, (expiry, _uses) in self.tokens.items() if expiry <= now]:
                del self.tokens[old]
            self.tokens[token] = [now + self.volume.token_ttl, 0]
        body = {"access_token": token, "token_type": "bearer", "expires_in": self.volume.token_ttl}
        return Response(201, body, content_type=JSON, headers=headers)

    def revoke(self, request: Request) -> Response:
        """POST /oauth2/revoke with the token in the form (falconpy wiki "OAuth2": revoke "before the end of its
        standard 30-minute lifespan"). falconpy authenticates it with the client's Basic credentials (logout_payloads,
        _util/_auth.py); the sandbox does not check them, and the 200 body's shape has no source."""
        form = dict(parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True))
        with self.lock:
            self.tokens.pop(form.get("token", ""), None)
        return answer(200, {"meta": _meta("csam"), "resources": [], "errors": []}, self._headers({}))

    @staticmethod
    def _limit(request: Request, default: int = 100, maximum: int = MAX_LIMIT) -> int:
        # 5000: the maximum `limit` of the devices query and Spotlight in falconpy's docstrings (hosts.py,
        # spotlight_vulnerabilities.py); the wording of the refusal has no source.
        raw = request.arg("limit", str(default))
        try:
            limit = int(raw)
        except ValueError:
            raise ValueError(f"invalid limit {raw!r}: expected an integer from 1 to {maximum}") from None
        if not 1 <= limit <= maximum:
            raise ValueError(f"limit {limit} is out of range: it must be from 1 to {maximum}")
        return limit

    # hosts

    def device_ids(self, request: Request) -> Response:
        """GET /devices/queries/devices/v1: ids by offset and limit, meta.pagination {offset, limit, total}
        (falconpy's samples/hosts/offset_vs_token.py pages it by offset up to the total), never past MAX_OFFSET."""
        error, headers = self._gate(request)
        if error:
            return error
        started = time.perf_counter()
        try:
            limit = self._limit(request)
            offset = int(request.arg("offset", "0") or 0)
            if offset < 0:
                raise ValueError("offset must not be negative")
            if offset >= MAX_OFFSET:  # the wording has no source; the 400 has (MAX_OFFSET)
                raise ValueError(f"offset {offset} is too large: page past {MAX_OFFSET} hosts with the scroll query")
        except ValueError as exc:
            return falcon_error(400, str(exc), headers, "device-api")
        total = self.volume.hosts
        stop = min(offset + limit, total, MAX_OFFSET)
        ids = [device_id(self.seed, i) for i in range(min(offset, total), stop)]
        meta = _meta("device-api", started, pagination={"offset": offset, "limit": limit, "total": total})
        body = {"meta": meta, "resources": ids, "errors": []}
        return answer(200, body, headers, records_key="resources", paginated=True)

    def device_ids_scroll(self, request: Request) -> Response:
        """GET /devices/queries/devices-scroll/v1: the `offset` is a string "provided from the previous scroll call,
        for the next result set. For the first call, do not supply an offset" (falconpy hosts.py,
        query_devices_by_filter_scroll), read from meta.pagination.offset (samples/hosts/offset_vs_token.py, which
        stops once it has `total` ids). The pointer "expires after 2 minutes" (hosts.py): not enforced here, as no
        source shows the answer to an expired one. `expires_at` (epoch ms) and the token's format: no source."""
        error, headers = self._gate(request)
        if error:
            return error
        started = time.perf_counter()
        try:
            limit = self._limit(request, maximum=MAX_SCROLL_LIMIT)
            token = request.arg("offset") or ""
            position = decode_scroll(token) if token else 0
        except ValueError as exc:
            return falcon_error(400, str(exc), headers, "device-api")
        total = self.volume.hosts
        stop = min(position + limit, total)
        ids = [device_id(self.seed, i) for i in range(min(position, total), stop)]
        pagination = {
            "offset": encode_scroll(stop),
            "expires_at": int((time.time() + 120) * 1000),
            "limit": limit,
            "total": total,
        }
        body = {"meta": _meta("device-api", started, pagination=pagination), "resources": ids, "errors": []}
        return answer(200, body, headers, records_key="resources", paginated=True)

    def _ids_of(self, ids: Any) -> tuple[list[int], list[dict[str, Any]]]:
        found, errors = [], []
        for aid in ids:
            index = device_index(self.seed, aid if isinstance(aid, str) else "", self.volume.hosts)
            if index is None:
                errors.append({"code": 404, "message": f"No host found for id: {str(aid)[:64]}", "id": str(aid)[:64]})
            else:
                found.append(index)
        return found, errors

    def device_details(self, request: Request) -> Response:
        """POST /devices/entities/devices/v2 {"ids": [...]}. An id it does not know (a host deleted since the ids
        were listed) comes back as an errors[] entry with code 404 and the others as resources: per-id errors in
        errors[] are Falcon's way (CrowdStrike/falconpy#917 shows one for an entity lookup); the message wording,
        and 200 for a partly found batch and 404 for one found not at all, have no source."""
        error, headers = self._gate(request)
        if error:
            return error
        started = time.perf_counter()
        try:
            ids = json.loads(request.body or b"null").get("ids")
        except (ValueError, AttributeError):
            ids = None
        if not isinstance(ids, list) or not ids:
            return falcon_error(
                400, 'the request body must be {"ids": [...]} with at least one id', headers, "device-api"
            )
        if len(ids) > MAX_LIMIT:
            return falcon_error(400, f"too many ids: {len(ids)}, the maximum is {MAX_LIMIT}", headers, "device-api")
        found, errors = self._ids_of(ids)
        body = {
            "meta": _meta("device-api", started),
            "resources": [make_host(self.seed, i, self.now) for i in found],
            "errors": errors,
        }
        return answer(200 if found or not errors else 404, body, headers, records_key="resources")

    # spotlight

    def spotlight(self, request: Request) -> Response:
        """GET /spotlight/combined/vulnerabilities/v1: filter, sort, facet, limit, and the `after` cursor of
        meta.pagination (falconpy's query_vulnerabilities_combined, spotlight_vulnerabilities.py; the page shape is
        the one quoted in elastic/integrations#19206). No `after` on the last page: the collectors stop there."""
        error, headers = self._gate(request)
        if error:
            return error
        started = time.perf_counter()
        facets = [value for key, value in request.query if key == "facet"]
        unknown = sorted(set(facets) - set(FACETS))
        sort = request.arg("sort") or "created_timestamp|asc"
        filter_text = request.arg("filter") or ""
        try:
            if unknown:
                raise ValueError(f"invalid facet {unknown[0]!r}: supported values are {', '.join(FACETS)}")
            if sort.replace(".", "|") != "created_timestamp|asc":
                raise ValueError(f"the sandbox sorts only by created_timestamp|asc, not {sort!r}")
            limit = self._limit(request)
            start, end = spotlight_range(filter_text, self.volume, self.now)
        except ValueError as exc:
            return falcon_error(400, str(exc), headers, "spapi")
        query = _fingerprint(filter_text, sort, sorted(facets))
        after = request.arg("after")
        page = 1
        position = start
        if after:
            # An unreadable cursor, or one of another query: 400 (no source shows what Falcon answers).
            try:
                position, issued_page, token_query = decode_after(after)
            except ValueError as exc:
                return falcon_error(400, str(exc), headers, "spapi")
            if token_query != query:
                return falcon_error(400, "invalid after token: it belongs to a different query", headers, "spapi")
            if self.volume.cursor_pages and issued_page >= self.volume.cursor_pages:
                return cursor_expired(limit, headers)
            page = issued_page + 1
            position = max(start, min(position, end))
        # The same `after` asked for again answers the same page (the token is stateless here; no source says what
        # Falcon does with a reused one). The "short" fault (records_key) leaves a record out while `after` moves on.
        stop = min(position + limit, end)
        chosen = frozenset(facets)
        resources = [make_vulnerability(self.seed, i, self.volume, chosen, self.now) for i in range(position, stop)]
        pagination: dict[str, Any] = {"limit": limit, "total": end - start}
        if stop < end:
            pagination["after"] = encode_after(stop, page, query)
        body = {"meta": _meta("spapi", started, pagination=pagination), "resources": resources, "errors": []}
        return answer(200, body, headers, records_key="resources", paginated=True)

    # zero trust assessment

    def assessments(self, request: Request) -> Response:
        """GET /zero-trust-assessment/entities/assessments/v1?ids=...: one `ids` per agent id (falconpy's
        get_assessment, zero_trust_assessment.py); hosts without an assessment come back in errors[] with code 404
        (their message wording, and the 1000-id maximum, have no source)."""
        error, headers = self._gate(request)
        if error:
            return error
        started = time.perf_counter()
        ids = [value for key, value in request.query if key == "ids"]
        if not ids:
            return falcon_error(400, "ids is required", headers, "zta-api")
        if len(ids) > MAX_ZTA_IDS:
            return falcon_error(400, f"too many ids: {len(ids)}, the maximum is {MAX_ZTA_IDS}", headers, "zta-api")
        found, errors = self._ids_of(ids)
        for error_item in errors:
            error_item["message"] = f"No ZTA data found for aid: {error_item['id']}"
        body = {
            "meta": _meta("zta-api", started),
            "resources": [make_assessment(self.seed, i, self.now) for i in found],
            "errors": errors,
        }
        return answer(200 if found or not errors else 404, body, headers, records_key="resources")


def _install(router: Router, context: VendorContext, volume: CrowdStrikeVolume) -> None:
    api = _FalconApi(context, volume)
    for method, pattern, name, handler in (
        ("POST", r"/oauth2/token", "token", api.token),
        ("POST", r"/oauth2/revoke", "revoke", api.revoke),
        ("GET", r"/devices/queries/devices/v1", "devices", api.device_ids),
        ("GET", r"/devices/queries/devices-scroll/v1", "devices_scroll", api.device_ids_scroll),
        ("POST", r"/devices/entities/devices/v2", "device_details", api.device_details),
        ("GET", r"/spotlight/combined/vulnerabilities/v1", "spotlight", api.spotlight),
        ("GET", r"/zero-trust-assessment/entities/assessments/v1", "zta", api.assessments),
    ):
        router.add(method, pattern, f"crowdstrike.{name}", handler, api.fault_error)


register_vendor(Vendor("crowdstrike", CrowdStrikeVolume, _install))
