"""Domains: per domain its registration record (RDAP, or WHOIS where a TLD has no RDAP service), DNS mail records
(SPF, DMARC, MX) and HTTP/HTTPS security headers.

No vendor API here: DNS goes through dnspython (resolver.py), RDAP through the project's HTTP layer (rdap.py),
WHOIS (RFC 3912, whois.py) and the header checks (probe.py) through sockets and requests; each can be pointed at a
local server (DOMAINS_DNS_SERVER, DOMAINS_RDAP_BOOTSTRAP_URL, DOMAINS_WHOIS_SERVER, DOMAINS_HTTP_URL) for tests and
the sandbox. The pull is pull.py, the settings resource.py.
"""

from __future__ import annotations

import requests

from ...collection.columns import col
from ..base import DatasetSpec, Source
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


SOURCE = Source(
    group="domains",
    title="Domains",
    docs_url="https://www.rfc-editor.org/rfc/rfc9083",
    resource=DomainsResource,
    datasets=(
        DatasetSpec(
            "domains",
            "Domain posture",
            "One record per entry of `DOMAINS`: `whois` (registrar, creation/updated/expiration dates, name servers, "
            "status) with `registration_source` (`rdap` or `whois`, the protocol that answered), `dns` (TXT, SPF, "
            "`_dmarc` TXT and its policy, MX), `http` and `https` (status, redirect, headers, security headers, "
            "cookie flags) and `errors`, a map of the lookups that failed for that domain.",
            "RDAP GET {base}domain/{domain} (WHOIS port 43 without RDAP), DNS TXT/MX, GET {scheme}://{domain}/",
            pull=pull_domains,
            required_fields=("domain", "errors"),
            columns=(
                col("domain", "text", "The domain as configured in DOMAINS."),
                col("valid", "boolean", "A syntactically valid domain name (invalid ones are never looked up)."),
                col("registration_source", "text", "Which protocol answered the registration lookup: rdap or whois."),
                col("whois.registered", "boolean", "The registry holds the domain."),
                col("whois.registrar", "text", "Registrar."),
                col("whois.creation_date", "timestamp", "When the domain was registered."),
                col("whois.updated_date", "timestamp", "Last change of the registration."),
                col("whois.expiration_date", "timestamp", "When the registration expires."),
                col("whois.name_servers", "json", "Name servers of the registration."),
                col("whois.status", "json", "EPP status codes (clientTransferProhibited, ...)."),
                col("dns.exists", "boolean", "The name resolves (not NXDOMAIN)."),
                col("dns.spf", "json", "SPF TXT records (v=spf1 ...)."),
                col("dns.spf.0", "text", "The first SPF record."),
                col("dns.dmarc.0", "text", "The _dmarc TXT record."),
                col("dns.dmarc_policy.p", "text", "DMARC policy: none, quarantine or reject."),
                col("dns.dmarc_policy.pct", "integer", "Share of mail the DMARC policy applies to (percent)."),
                col("dns.mx", "json", "MX records (preference, exchange)."),
                col("https.status", "integer", "HTTP status of https://<domain>/."),
                col("https.security_headers.strict-transport-security", "text", "HSTS header over https, if any."),
                col(
                    "https.security_headers.content-security-policy",
                    "text",
                    "Content-Security-Policy header over https, if any.",
                ),
                col("http.status", "integer", "HTTP status of http://<domain>/."),
                col("http.redirects_to_https", "boolean", "Plain http redirects to https."),
                col("errors", "json", "The lookups that failed for this domain, with their cause."),
            ),
        ),
    ),
    sandbox_env=_sandbox_env,
)

__all__ = ["SOURCE", "DomainsResource"]
