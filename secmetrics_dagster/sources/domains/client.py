"""The lookups of one Domains pull: DNS, registration data (RDAP, or WHOIS where a TLD has none) and the header
checks, with shared timeouts and one set of counters for the asset's metadata."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from typing import Any, Optional

from ...collection.errors import CollectionError, ConfigError
from ...collection.http import HttpSettings, HttpStats
from .names import parse_host_port
from .probe import ProbeClient
from .rdap import RdapClient, RdapError
from .resolver import DnsResolver, system_dns_servers
from .whois import WhoisClient, WhoisError

DNS_TIMEOUT = 5.0  # DNS answers come in milliseconds or not at all: the HTTP read timeout (60 s) is far too patient


@dataclass
class DomainsStats:
    """What the lookups cost (`collect` reads `as_metadata()`); RDAP's HttpSession keeps its own counters."""

    http_requests: int = 0
    http_retries: int = 0
    dns_queries: int = 0
    dns_tcp_fallbacks: int = 0
    whois_queries: int = 0
    lookup_errors: int = 0
    domains_invalid: int = 0
    rdap: Optional[HttpStats] = None

    def as_metadata(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("rdap")
        rdap = self.rdap.as_metadata() if self.rdap else {}
        # rdap_requests, rdap_retries, rdap_throttled, ...: HttpStats names its counters http_*.
        data.update({"rdap_" + key.removeprefix("http_"): value for key, value in rdap.items()})
        return data


class RegistrationFailed(Exception):
    """The registration lookup of a domain failed; `source` says whether RDAP or WHOIS was asked."""

    def __init__(self, source: str, message: str):
        super().__init__(message)
        self.source = source


class DomainsClient:
    """It stands where other sources have an HttpSession: a context manager with `stats`."""

    def __init__(self, resource: Any, settings: HttpSettings, logger: Any = None):
        self.settings = settings
        self.log = logger
        self.stats = DomainsStats()
        self._lock = threading.Lock()
        if resource.dns_server:
            servers = [
                parse_host_port(s, 53, "DOMAINS_DNS_SERVER") for s in resource.dns_server.split(",") if s.strip()
            ]
        else:
            servers = system_dns_servers()
        self.dns = DnsResolver(servers, timeout=min(DNS_TIMEOUT, settings.read_timeout), count=self.count)
        self.whois_forced = bool(resource.whois_server)
        self.whois = WhoisClient(settings, resource.whois_server, resource.whois_referral_server, count=self.count)
        self.probes = ProbeClient(resource.http_url, settings, count=self.count)
        self.rdap = RdapClient(resource.rdap_bootstrap_url, settings, logger=logger)
        self.stats.rdap = self.rdap.stats

    def __enter__(self) -> DomainsClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.probes.close()
        self.rdap.close()

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            setattr(self.stats, name, getattr(self.stats, name) + n)

    @property
    def dns_servers(self) -> str:
        return self.dns.server_text

    def registration(self, domain: str) -> tuple[str, dict[str, Any]]:
        """("rdap" | "whois", the registration facts). DOMAINS_WHOIS_SERVER asks WHOIS for every domain, as it
        always has; otherwise RDAP, and WHOIS only for a TLD the bootstrap file lists no RDAP service for."""
        source = "whois" if self.whois_forced else "rdap"
        try:
            base = None if self.whois_forced else self.rdap.base_url(domain)
            if base is None:
                source = "whois"
                return source, self.whois.lookup(domain)
            return source, self.rdap.lookup(base, domain)
        except (RdapError, WhoisError, CollectionError, ConfigError, OSError) as exc:
            raise RegistrationFailed(source, str(exc)) from None

    def probe(self, scheme: str, domain: str) -> dict[str, Any]:
        return self.probes.probe(scheme, domain)
