"""Domains: per domain its registration record (RDAP, or WHOIS where a TLD has no RDAP service), DNS mail records
(SPF, DMARC, MX) and HTTP/HTTPS security headers.

No vendor API here: DNS goes through dnspython (resolver.py), RDAP through the project's HTTP layer (rdap.py),
WHOIS (RFC 3912, whois.py) and the header checks (probe.py) through sockets and requests; each can be pointed at a
local server (DOMAINS_DNS_SERVER, DOMAINS_RDAP_BOOTSTRAP_URL, DOMAINS_WHOIS_SERVER, DOMAINS_HTTP_URL) for tests and
the sandbox. The pull is pull.py, the settings resource.py.
"""

from __future__ import annotations

import requests

from ..catalog import declare_source
from .pull import pull_domains
from .resource import DomainsResource


def _sandbox_env(url: str, token: str) -> dict[str, str]:
    """Variables that point this source at the bundled sandbox; its DNS and WHOIS servers start on first ask."""
    base = url.rstrip("/")
    info = requests.get(f"{base}/domains/servers", timeout=30).json()
    return {
        "DOMAINS": ";".join(info["domains"]),
        "DOMAINS_DNS_SERVER": info["dns"],
        "DOMAINS_RDAP_BOOTSTRAP_URL": base + info["rdap_bootstrap_path"],
        "DOMAINS_HTTP_URL": base + info["http_path"],
    }


SOURCE = declare_source(__name__, "datasets.yaml", DomainsResource, sandbox_env=_sandbox_env)

__all__ = ["SOURCE", "DomainsResource", "pull_domains"]
