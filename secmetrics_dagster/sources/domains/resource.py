"""The Domains resource: the domains to check and where to ask about them, each setting declared once. Nothing
secret here."""

from __future__ import annotations

from typing import Any, ClassVar, Optional

from ...collection.http import HttpSettings
from ...collection.settings import env_setting
from ..base import VendorResource
from .client import DomainsClient
from .names import parse_domains, parse_host_port
from .probe import DEFAULT_HTTP_URL, check_http_url
from .rdap import IANA_BOOTSTRAP, check_bootstrap_url
from .whois import IANA_WHOIS


class DomainsResource(VendorResource):
    settings_title: ClassVar[str] = "Domains"

    domains: Optional[str] = env_setting(
        "DOMAINS",
        "Domains to check, separated by `;` (e.g. `example.com;example.org`). Invalid names "
        "are recorded with an error, never looked up.",
        required=True,
    )
    dns_server: Optional[str] = env_setting(
        "DOMAINS_DNS_SERVER",
        "DNS server(s) to ask, `host[:port]`, comma-separated (IPv6 as "
        "`[addr]:port`). Default: the `nameserver` entries of /etc/resolv.conf.",
    )
    rdap_bootstrap_url: str = env_setting(
        "DOMAINS_RDAP_BOOTSTRAP_URL",
        "RDAP bootstrap file (RFC 9224) that names each TLD's RDAP service; registration data comes from "
        "that service. A TLD the file does not list is looked up over WHOIS.",
        IANA_BOOTSTRAP,
        parse=check_bootstrap_url,
    )
    whois_server: Optional[str] = env_setting(
        "DOMAINS_WHOIS_SERVER",
        "WHOIS server to ask for every domain, `host[:port]`, instead of RDAP. Default: RDAP, and for a TLD "
        "without RDAP ask whois.iana.org which server holds the TLD, then ask that one (port 43).",
    )
    http_url: str = env_setting(
        "DOMAINS_HTTP_URL",
        "URL template of the header checks; `{scheme}` is `https` then `http`, "
        "`{domain}` the domain. Point it at a proxy or test server to check elsewhere.",
        DEFAULT_HTTP_URL,
        parse=check_http_url,
    )
    # Not an environment variable: tests point it at a local server to exercise the referral.
    whois_referral_server: str = IANA_WHOIS

    def missing_env(self) -> list[str]:
        # `DOMAINS=";"` names no domain: as good as unset.
        return [] if parse_domains(self.domains) else ["DOMAINS"]

    def validate_settings(self) -> None:
        """The server and URL settings, however the resource was built; each error names its variable."""
        for server in (self.dns_server or "").split(","):
            if server.strip():
                parse_host_port(server, 53, "DOMAINS_DNS_SERVER")
        if self.whois_server:
            parse_host_port(self.whois_server, 43, "DOMAINS_WHOIS_SERVER")
        check_bootstrap_url(self.rdap_bootstrap_url)
        check_http_url(self.http_url)

    def client(self, settings: HttpSettings, logger: Any = None) -> DomainsClient:
        return DomainsClient(self, settings, logger)
