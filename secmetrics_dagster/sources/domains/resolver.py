"""DNS for the Domains source: TXT and MX questions through dnspython's stub resolver, pointed at the configured servers.

dnspython does the wire format, UDP with TCP fallback on truncation, and the rounds over servers; this module picks
the servers (DOMAINS_DNS_SERVER or /etc/resolv.conf), counts the queries and turns dnspython's failures into one
sentence per lookup that says which server did what.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import dns.exception
import dns.inet
import dns.message
import dns.name
import dns.nameserver
import dns.query
import dns.rdatatype
import dns.resolver

from .names import host_port_text

ATTEMPTS = 2  # rounds over the servers before a lookup times out


class DnsError(Exception):
    """A DNS question got no usable answer from any server."""


def system_dns_servers(path: str = "/etc/resolv.conf") -> list[tuple[str, int]]:
    """The `nameserver` entries of a resolv.conf, read by dnspython; [] when the file is missing or names none."""
    try:
        configured = dns.resolver.Resolver(filename=path, configure=True)
    except (dns.resolver.NoResolverConfiguration, ValueError):  # ValueError: an entry that is not an IP address
        return []
    # resolv.conf has no port syntax; a link-local address keeps its %interface.
    return [(str(server), 53) for server in configured.nameservers]


class _Server(dns.nameserver.Do53Nameserver):
    """One configured server: a host name is looked up when asked, and queries are counted.

    dnspython's own Do53Nameserver waits out an unparseable UDP answer (ignore_errors=True, as BIND does, to shrug
    off injected junk), so a server that only ever answers garbage looks like a timeout. The servers here are the
    ones the user configured; their garbage is the answer, and saying "malformed answer" points at the server
    rather than at the network. Answers from other addresses are still ignored (ignore_unexpected).
    """

    def __init__(self, host: str, port: int, count: Callable[[str], None]):
        super().__init__(host, port)
        self.host = host
        self.count = count

    def __str__(self) -> str:
        return host_port_text(self.host, self.port)

    def _where(self) -> str:
        if dns.inet.is_address(self.host):
            return self.host
        # A resolver named by host name (e.g. a container's "dns:53"): the system resolves it, as for any host.
        return socket.getaddrinfo(self.host, self.port, type=socket.SOCK_DGRAM)[0][4][0]

    def query(self, request, timeout, source, source_port, max_size, one_rr_per_rrset=False, ignore_trailing=False):
        where = self._where()
        if max_size:  # dnspython asks again over TCP after a truncated UDP answer (RFC 7766)
            self.count("dns_tcp_fallbacks")
            return dns.query.tcp(
                request, where, timeout=timeout, port=self.port, source=source, source_port=source_port
            )
        self.count("dns_queries")
        return dns.query.udp(
            request,
            where,
            timeout=timeout,
            port=self.port,
            source=source,
            source_port=source_port,
            raise_on_truncation=True,
            ignore_unexpected=True,
        )


class DnsResolver:
    """TXT and MX lookups: each configured server in turn, ATTEMPTS rounds, `timeout` seconds per try."""

    def __init__(self, servers: list[tuple[str, int]], timeout: float, count: Callable[[str], None] = lambda n: None):
        self.servers = servers
        self.timeout = timeout
        self.resolver = dns.resolver.Resolver(configure=False)  # nothing from the host unless asked for above
        self.resolver.nameservers = [_Server(host, port, count) for host, port in servers]
        self.resolver.timeout = timeout
        # dnspython's lifetime bounds a whole lookup; its pause between rounds starts at 0.1 s and doubles.
        self.resolver.lifetime = timeout * ATTEMPTS * max(1, len(servers)) + 0.1 * (2 ** (ATTEMPTS - 1) - 1)
        self.resolver.cache = None  # every pull asks afresh: the point is to see today's records

    @property
    def server_text(self) -> str:
        return ",".join(host_port_text(h, p) for h, p in self.servers) or "none"

    def query(self, name: str, qtype: str) -> tuple[str, list]:
        """(rcode name, records); NOERROR and NXDOMAIN are answers, anything else raises DnsError."""
        if not self.servers:
            raise DnsError(
                f"{qtype} {name}: no DNS server configured (set DOMAINS_DNS_SERVER or a nameserver in /etc/resolv.conf)"
            )
        try:
            answer = self.resolver.resolve(dns.name.from_text(name), qtype, raise_on_no_answer=False, search=False)
        except dns.resolver.NXDOMAIN:
            return "NXDOMAIN", []
        except (dns.resolver.NoNameservers, dns.resolver.LifetimeTimeout) as exc:
            problems = [self._problem(*error[:4]) for error in exc.kwargs.get("errors") or []]
            raise DnsError(f"{qtype} {name}: " + "; ".join(dict.fromkeys(problems) or ["no answer"])) from None
        except dns.exception.DNSException as exc:  # YXDOMAIN and the like: the answer itself is the problem
            raise DnsError(f"{qtype} {name}: {exc}") from None
        return "NOERROR", [_record(rdata) for rdata in (answer.rrset or ())]

    def _problem(self, server: str, tcp: bool, port: int, error: Any) -> str:
        if isinstance(error, str):  # an rcode the resolver gave up on, e.g. "SERVFAIL" or "REFUSED"
            return f"{server}: answered {error}"
        if isinstance(error, dns.exception.Timeout):
            return f"{server}: no answer within {self.timeout:g}s"
        if isinstance(error, dns.name.BadPointer):
            return f"{server}: malformed answer (a compression pointer that does not point backwards: a loop)"
        if isinstance(error, dns.exception.FormError):
            return f"{server}: malformed answer ({error})"
        if isinstance(error, EOFError):
            return f"{server}: the server closed the TCP connection mid-answer"
        if isinstance(error, OSError):  # refused, unreachable, a host name that does not resolve
            return f"{server}: {error.strerror or error}"
        return f"{server}: {type(error).__name__}: {error}"


def _record(rdata: Any) -> Any:
    if rdata.rdtype == dns.rdatatype.TXT:
        # RFC 7208 3.3: the strings of one record are joined without spaces (long SPF records are split this way).
        return b"".join(rdata.strings).decode("utf-8", "replace")
    if rdata.rdtype == dns.rdatatype.MX:
        # A null MX (RFC 7505) has the root as exchange, written ".".
        return {"preference": rdata.preference, "exchange": rdata.exchange.to_text(omit_final_dot=True)}
    return rdata.to_text()


def parse_dmarc(record: str) -> dict[str, str]:
    """Tags of a DMARC record (RFC 7489 6.3): 'v=DMARC1; p=reject; rua=...' -> {'v': 'DMARC1', 'p': 'reject', ...}."""
    tags = {}
    for part in record.split(";"):
        key, sep, value = part.partition("=")
        if sep and key.strip():
            tags[key.strip().lower()] = value.strip()
    return tags
