"""The Falcon API as this package uses it: clouds, the operations called through falconpy, and reading answers."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Optional
from urllib.parse import urlsplit

from ...collection.errors import CollectionError, ConfigError
from ...collection.http import RetryableFailure, origin_of

VENDOR = "CrowdStrike Falcon"
DEFAULT_REGION = "us-1"
MAX_PAGE = 5000

# Falcon's API hosts per cloud (falconpy's BaseURL enum, _enum/_base_url.py, has the same); the names are what
# the Falcon console shows.
REGION_URLS = {
    "us-1": "https://api.crowdstrike.com",
    "us-2": "https://api.us-2.crowdstrike.com",
    "eu-1": "https://api.eu-1.crowdstrike.com",
    "us-gov-1": "https://api.laggar.gcw.crowdstrike.com",
    "us-gov-2": "https://api.us-gov-2.crowdstrike.mil",
}

# The clouds a token answer may move a pull between (token.py, _follow_region): CrowdStrike's own API hosts, as in
# falconpy's BaseURL enum (_enum/_base_url.py: US1, US2, EU1, USGOV1), to which falconpy's autodiscover_region
# (_util/_functions.py) switches when X-Cs-Region names another cloud than the base URL's. falconpy 1.6.6's enum
# also has US3 and USGOV2 (api.us-3.crowdstrike.com, api.us-gov-2.crowdstrike.mil); a move to either is not
# followed: the pull stays on the configured cloud (FALCON_BASE_URL=us-gov-2 is still usable, it is never left).
FOLLOWED_CLOUDS = frozenset(
    ("https", host, 443)
    for host in (
        "api.crowdstrike.com",
        "api.us-2.crowdstrike.com",
        "api.eu-1.crowdstrike.com",
        "api.laggar.gcw.crowdstrike.com",
    )
)

CREDENTIALS_HINT = (
    "Check FALCON_CLIENT_ID and FALCON_SECRET (an API client of this Falcon cloud), and FALCON_BASE_URL "
    "(the cloud the API client belongs to: us-1, us-2, eu-1, us-gov-1 or a URL)"
)


def resolve_base_url(value: Optional[str]) -> str:
    """FALCON_BASE_URL as falconpy wants it: a region name becomes its API host, a URL loses its trailing slash."""
    text = (value or DEFAULT_REGION).strip()
    if text.lower() in REGION_URLS:
        return REGION_URLS[text.lower()]
    if "://" not in text and "." in text:
        text = "https://" + text
    if not re.fullmatch(r"(https?)://([^/\s?#]+)(/[^\s?#]*)?", text):
        raise ConfigError(
            f"FALCON_BASE_URL {value!r} is neither a Falcon region ({', '.join(REGION_URLS)}) nor an http(s) URL."
        )
    return text.rstrip("/")


def followed_cloud(url: Optional[str]) -> bool:
    """True for the bare https URL of one of FOLLOWED_CLOUDS (no path, query, credentials or other port): the only
    base URLs a pull may start from and move to when a token answer names another cloud. A proxy, a private
    endpoint or the sandbox is never one, so a custom FALCON_BASE_URL never follows a region."""
    if not isinstance(url, str):
        return False
    parts = urlsplit(url)
    if parts.path not in ("", "/") or parts.query or parts.fragment or "@" in parts.netloc:
        return False
    return origin_of(url) in FOLLOWED_CLOUDS


@dataclass(frozen=True)
class Endpoint:
    """One Falcon operation: the falconpy service class and method that call it, and what errors should name."""

    service: str  # the falconpy class, by name: falconpy is imported when a client is built, not with this module
    function: str
    method: str
    path: str
    scope: str  # the API client scope it needs, for 403 messages


# The scroll query, not query_devices_by_filter: that one stops at 10,000 hosts ("Setting your offset to 10K or higher
# will produce a 400 error", falconpy's samples/hosts/offset_vs_token.py); this one pages by a pointer, no maximum.
DEVICES = Endpoint(
    "Hosts", "query_devices_by_filter_scroll", "GET", "/devices/queries/devices-scroll/v1", "Hosts: Read"
)
DEVICE_DETAILS = Endpoint("Hosts", "get_device_details", "POST", "/devices/entities/devices/v2", "Hosts: Read")
SPOTLIGHT = Endpoint(
    "SpotlightVulnerabilities",
    "query_vulnerabilities_combined",
    "GET",
    "/spotlight/combined/vulnerabilities/v1",
    "Vulnerabilities: Read",
)
ZTA = Endpoint(
    "ZeroTrustAssessment",
    "get_assessment",
    "GET",
    "/zero-trust-assessment/entities/assessments/v1",
    "Zero Trust Assessment: Read",
)
TOKEN = Endpoint("OAuth2", "login", "POST", "/oauth2/token", "")
SERVICES = ("Hosts", "SpotlightVulnerabilities", "ZeroTrustAssessment")


class FalconApiError(CollectionError):
    """A Falcon answer that is neither success nor worth retrying (4xx other than 401/403/429).

    `messages` are the answer's `errors[].message` texts, for callers that recognise a documented refusal.
    """

    def __init__(self, message: str, status: int, messages: tuple[str, ...] = ()):
        super().__init__(message)
        self.status = status
        self.messages = messages


def header(headers: Any, name: str) -> Optional[str]:
    """One header of a falconpy result (a plain dict, so not case-insensitive)."""
    if not isinstance(headers, dict):
        return None
    lowered = name.lower()
    return next((str(v) for k, v in headers.items() if str(k).lower() == lowered), None)


def errors(body: Any) -> list[dict]:
    found = body.get("errors") if isinstance(body, dict) else None
    return [e for e in found if isinstance(e, dict)] if isinstance(found, list) else []


def error_messages(body: Any) -> tuple[str, ...]:
    return tuple(str(e.get("message") or "") for e in errors(body))


def describe(body: Any, secrets: Iterable[str] = ()) -> str:
    """The first few error messages of an answer, on one line, with any secret masked."""
    messages = [str(e.get("message") or e.get("code") or "") for e in errors(body)][:3]
    text = " ".join("; ".join(m for m in messages if m).split())[:300] or "no error message"
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def sdk_failure(body: Any, where: str, secrets: Iterable[str] = ()) -> Exception:
    """What a falconpy-made result (no `meta`: the SDK caught an exception) stands for: mostly worth a retry."""
    detail = describe(body, secrets)
    lowered = detail.lower()
    if "certificate_verify_failed" in lowered or "sslcertverificationerror" in lowered:
        return CollectionError(
            f"{VENDOR}: {where}: the server's TLS certificate is not trusted ({detail[:200]}). If a proxy re-signs "
            "TLS, point REQUESTS_CA_BUNDLE at its CA bundle; check FALCON_BASE_URL otherwise."
        )
    if "timed out" in lowered:
        kind = "timed out"
    elif "incompleteread" in lowered or "connection broken" in lowered:
        kind = "body cut short"
    elif "connection" in lowered or "max retries exceeded" in lowered:
        kind = "connection failed"
    else:
        kind = "malformed body"
    return RetryableFailure(f"{kind}; falconpy reported: {detail[:200]}", where)


def body_list(body: dict, endpoint: Endpoint, key: str = "resources") -> list:
    value = body.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise CollectionError(f"{VENDOR}: {endpoint.method} {endpoint.path} answered without a `{key}` list")
    return value


def pagination(body: dict) -> dict:
    meta = body.get("meta") if isinstance(body.get("meta"), dict) else {}
    return meta.get("pagination") if isinstance(meta.get("pagination"), dict) else {}
