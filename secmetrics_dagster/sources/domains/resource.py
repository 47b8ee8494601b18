"""The Domains resource: the domains to check and where to ask about them. Nothing secret here."""

from __future__ import annotations

import os
from typing import Any, Optional

from ...collection.http import HttpSettings
from ..base import VendorResource
from .client import DomainsClient
from .names import parse_domains
from .probe import DEFAULT_HTTP_URL
from .rdap import IANA_BOOTSTRAP
from .whois import IANA_WHOIS


class DomainsResource(VendorResource):
    domains: Optional[str] = None
    dns_server: Optional[str] = None
    whois_server: Optional[str] = None
    rdap_bootstrap_url: str = IANA_BOOTSTRAP
    http_url: str = DEFAULT_HTTP_URL
    # Not an environment variable: tests point it at a local server to exercise the referral.
    whois_referral_server: str = IANA_WHOIS

    @classmethod
    def from_env(cls) -> DomainsResource:
        return cls(
            domains=os.environ.get("DOMAINS") or None,
            dns_server=os.environ.get("DOMAINS_DNS_SERVER") or None,
            whois_server=os.environ.get("DOMAINS_WHOIS_SERVER") or None,
            rdap_bootstrap_url=(os.environ.get("DOMAINS_RDAP_BOOTSTRAP_URL") or "").strip() or IANA_BOOTSTRAP,
            http_url=os.environ.get("DOMAINS_HTTP_URL") or DEFAULT_HTTP_URL,
        )

    def missing_env(self) -> list[str]:
        return [] if parse_domains(self.domains) else ["DOMAINS"]

    def session(self, settings: HttpSettings, logger: Any = None) -> DomainsClient:
        return DomainsClient(self, settings, logger)
