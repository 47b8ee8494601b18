"""The header checks of the Domains source: GET https:// and http:// of each domain, recording status, redirect,
security headers and cookie flags exactly as answered.

Not HttpSession: every status, 4xx and 5xx included, is an observation to record rather than an error to retry or
raise, and redirects must be seen rather than followed.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import requests

from ...collection.errors import CollectionError, ConfigError
from ...collection.http import HttpSettings
from .names import excerpt

DEFAULT_HTTP_URL = "{scheme}://{domain}/"

SECURITY_HEADERS = (
    "strict-transport-security",
    "content-security-policy",
    "content-security-policy-report-only",
    "x-frame-options",
    "x-content-type-options",
    "referrer-policy",
    "permissions-policy",
    "cross-origin-opener-policy",
    "cross-origin-embedder-policy",
    "cross-origin-resource-policy",
    "x-xss-protection",
)


class ProbeClient:
    """One requests.Session for every probe of a pull; `count` adds to the pull's counters."""

    def __init__(self, http_url: str, settings: HttpSettings, count: Callable[[str], None] = lambda name: None):
        self.http_url = check_http_url(http_url)
        self.settings = settings
        self.count = count
        self.http = requests.Session()
        self.http.headers["User-Agent"] = settings.user_agent

    def close(self) -> None:
        self.http.close()

    def probe(self, scheme: str, domain: str) -> dict[str, Any]:
        url = self.http_url.replace("{scheme}", scheme).replace("{domain}", domain)
        attempts = 1 + min(1, self.settings.max_retries)
        for attempt in range(attempts):
            self.count("http_requests")
            try:
                response = self.http.get(
                    url,
                    allow_redirects=False,
                    stream=True,
                    timeout=(self.settings.connect_timeout, self.settings.read_timeout),
                )
                break
            except requests.exceptions.SSLError as exc:
                raise CollectionError(f"TLS failed: {excerpt(str(exc.__context__ or exc), 200)}") from None
            except (requests.ConnectionError, requests.Timeout) as exc:
                if attempt + 1 >= attempts:
                    raise CollectionError(f"GET {url}: {_connection_problem(exc)}") from None
                self.count("http_retries")
                time.sleep(self.settings.backoff_base * random.uniform(0.5, 1.0))
            except requests.RequestException as exc:  # e.g. a header the server sent that HTTP forbids
                raise CollectionError(f"GET {url}: {type(exc).__name__}: {excerpt(str(exc), 200)}") from None
        try:
            headers = {k.lower(): v for k, v in response.headers.items() if k.lower() != "set-cookie"}
            raw_cookies = response.raw.headers.getlist("Set-Cookie") if hasattr(response.raw.headers, "getlist") else []
        finally:
            response.close()  # the body is not needed
        location = headers.get("location")
        result: dict[str, Any] = {
            "url": url,
            "status": response.status_code,
            "reason": response.reason,
            "location": location,
            # Cookie values can be live session tokens: keep only what posture metrics need.
            "headers": headers,
            "security_headers": {name: headers.get(name) for name in SECURITY_HEADERS},
            "cookies": [_cookie_flags(c) for c in raw_cookies],
        }
        if scheme == "http":
            result["redirects_to_https"] = bool(location and location.lower().startswith("https://"))
        return result


def _connection_problem(exc: Exception) -> str:
    """The root cause of a requests failure, without urllib3's nested wrapper text."""
    if isinstance(exc, requests.Timeout):
        return "timed out"
    errno = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", str(exc))
    if errno:
        return errno.group(1).strip().rstrip(".")
    return f"{type(exc).__name__}: {excerpt(str(exc), 160)}"


def _cookie_flags(header: str) -> dict[str, Any]:
    name = header.split("=", 1)[0].strip()
    attributes = {
        a.split("=", 1)[0].strip().lower(): (a.split("=", 1)[1].strip() if "=" in a else True)
        for a in header.split(";")[1:]
        if a.strip()
    }
    return {
        "name": name,
        "secure": "secure" in attributes,
        "httponly": "httponly" in attributes,
        "samesite": attributes.get("samesite") if isinstance(attributes.get("samesite"), str) else None,
    }


def check_http_url(template: str) -> str:
    template = (template or DEFAULT_HTTP_URL).strip()
    probe = template.replace("{scheme}", "https").replace("{domain}", "example.com")
    parts = urlsplit(probe)
    if "{domain}" not in template or parts.scheme not in ("http", "https") or not parts.hostname or "{" in probe:
        raise ConfigError(
            f"DOMAINS_HTTP_URL {template!r} must be an http(s) URL template with {{domain}} "
            f"(and optionally {{scheme}}), e.g. {DEFAULT_HTTP_URL}"
        )
    return template
