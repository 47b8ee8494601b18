"""Domains: per domain its registration record (RDAP, or WHOIS where a TLD has no RDAP service), DNS mail records
(SPF, DMARC, MX) and HTTP/HTTPS security headers.

No vendor API here: DNS goes through dnspython, RDAP through the project's HTTP layer, WHOIS (RFC 3912) and the
header checks through sockets and requests; each can be pointed at a local server (DOMAINS_DNS_SERVER,
DOMAINS_RDAP_BOOTSTRAP_URL, DOMAINS_WHOIS_SERVER, DOMAINS_HTTP_URL) for tests and the sandbox.
"""

from __future__ import annotations

import requests

from ..base import DatasetSpec, EnvVarDoc, SourceSpec, build_assets
from .probe import DEFAULT_HTTP_URL
from .pull import pull_domains
from .rdap import IANA_BOOTSTRAP
from .resolver import system_dns_servers
from .resource import DomainsResource

SOURCE = SourceSpec(
    group="domains",
    title="Domains",
    docs_url="https://www.rfc-editor.org/rfc/rfc9083",
    resource_key="domains",
    env_vars=(
        EnvVarDoc(
            "DOMAINS",
            "Domains to check, separated by `;` (e.g. `example.com;example.org`). Invalid names "
            "are recorded with an error, never looked up.",
            required=True,
        ),
        EnvVarDoc(
            "DOMAINS_DNS_SERVER",
            "DNS server(s) to ask, `host[:port]`, comma-separated (IPv6 as "
            "`[addr]:port`). Default: the `nameserver` entries of /etc/resolv.conf.",
        ),
        EnvVarDoc(
            "DOMAINS_RDAP_BOOTSTRAP_URL",
            "RDAP bootstrap file (RFC 9224) that names each TLD's RDAP service; registration data comes from "
            "that service. A TLD the file does not list is looked up over WHOIS.",
            IANA_BOOTSTRAP,
        ),
        EnvVarDoc(
            "DOMAINS_WHOIS_SERVER",
            "WHOIS server to ask for every domain, `host[:port]`, instead of RDAP. Default: RDAP, and for a TLD "
            "without RDAP ask whois.iana.org which server holds the TLD, then ask that one (port 43).",
        ),
        EnvVarDoc(
            "DOMAINS_HTTP_URL",
            "URL template of the header checks; `{scheme}` is `https` then `http`, "
            "`{domain}` the domain. Point it at a proxy or test server to check elsewhere.",
            DEFAULT_HTTP_URL,
        ),
    ),
    datasets=(
        DatasetSpec(
            "domains",
            "Domain posture",
            "One record per entry of `DOMAINS`: `whois` (registrar, creation/updated/expiration dates, name servers, "
            "status) with `registration_source` (`rdap` or `whois`, the protocol that answered), `dns` (TXT, SPF, "
            "`_dmarc` TXT and its policy, MX), `http` and `https` (status, redirect, headers, security headers, "
            "cookie flags) and `errors`, a map of the lookups that failed for that domain.",
            "RDAP GET {base}domain/{domain} (WHOIS port 43 without RDAP), DNS TXT/MX, GET {scheme}://{domain}/",
            required_fields=("domain", "errors"),
        ),
    ),
)


def sandbox_env(url: str, token: str) -> dict[str, str]:
    """Variables that point this source at the bundled sandbox; its DNS and WHOIS servers start on first ask."""
    base = url.rstrip("/")
    info = requests.get(f"{base}/domains/servers", timeout=30).json()
    return {
        "DOMAINS": ";".join(info["domains"]),
        "DOMAINS_DNS_SERVER": info["dns"],
        "DOMAINS_RDAP_BOOTSTRAP_URL": base + info["rdap_bootstrap_path"],
        "DOMAINS_HTTP_URL": base + info["http_path"],
    }


RESOURCE = DomainsResource
assets = build_assets(SOURCE, {"domains": pull_domains})

__all__ = ["RESOURCE", "SOURCE", "DomainsResource", "assets", "sandbox_env", "system_dns_servers"]
