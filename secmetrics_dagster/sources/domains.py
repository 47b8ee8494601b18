"""Domains: per domain its WHOIS registration, DNS mail records (SPF, DMARC, MX) and HTTP/HTTPS security headers.

No vendor API here: the source speaks DNS (RFC 1035, UDP with TCP fallback), WHOIS (RFC 3912, TCP port 43)
and plain HTTP(S) itself, so each can be pointed at a local server (DOMAINS_DNS_SERVER, DOMAINS_WHOIS_SERVER,
DOMAINS_HTTP_URL) for tests and the sandbox.
"""

from __future__ import annotations

import ipaddress
import random
import re
import secrets
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Optional
from urllib.parse import urlsplit

import requests

from ..collection.errors import CollectionError, ConfigError
from ..collection.http import HttpSettings
from ..collection.settings import env_setting
from .base import DatasetSpec, Pull, Source, VendorResource

DEFAULT_HTTP_URL = "{scheme}://{domain}/"
IANA_WHOIS = "whois.iana.org:43"
MAX_WORKERS = 4  # lookups of different domains overlap; WHOIS servers throttle clients that open many more


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


# ------------------------------------------------------------------------------------------ names


_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


def parse_domains(value: Optional[str]) -> list[str]:
    """The entries of DOMAINS in order: blanks and repeats dropped, nothing validated yet."""
    seen: dict[str, None] = {}
    for entry in (value or "").split(";"):
        entry = entry.strip()
        if entry:
            seen.setdefault(entry, None)
    return list(seen)


def normalize_domain(entry: str) -> str:
    """The ASCII (IDNA) lower-case form of a domain name, or ValueError saying why it is not one.

    The name goes into DNS packets, a WHOIS query line and a URL host, so only letters, digits and hyphens
    in 2+ labels of at most 63 characters (253 in all) pass; IP addresses are refused.
    """
    name = entry.strip().rstrip(".").lower()
    if not name:
        raise ValueError("empty name")
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            raise ValueError("not a valid internationalized domain name") from None
    if len(name) > 253:
        raise ValueError(f"{len(name)} characters, the limit is 253")
    labels = name.split(".")
    if len(labels) < 2:
        raise ValueError("a domain needs at least two labels (name.tld)")
    for label in labels:
        if len(label) > 63:
            raise ValueError(f"a label of {len(label)} characters, the limit is 63")
        if not _LABEL.match(label):
            raise ValueError("only letters, digits and inner hyphens are allowed in each label")
    if labels[-1].isdigit():
        raise ValueError("an IP address is not a domain")
    return name


def _excerpt(value: str, limit: int = 80) -> str:
    return value if len(value) <= limit else value[: limit - 3] + "..."


def parse_host_port(value: str, default_port: int, what: str) -> tuple[str, int]:
    """'host', 'host:port', '[v6]:port' or a bare IPv6 address."""
    value = value.strip()
    host, port = value, default_port
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            raise ConfigError(f"{what}: {value!r} opens '[' without closing it")
        host, rest = value[1:end], value[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ConfigError(f"{what}: {value!r} is not [address]:port")
            port = _port(rest[1:], value, what)
    elif value.count(":") == 1:
        host, raw_port = value.split(":")
        port = _port(raw_port, value, what)
    elif value.count(":") > 1:
        try:
            ipaddress.IPv6Address(value.split("%")[0])
        except ValueError:
            raise ConfigError(f"{what}: {value!r} is neither host:port nor an IPv6 address") from None
    if not host or not re.match(r"^[A-Za-z0-9.:%_-]+$", host):
        raise ConfigError(f"{what}: {value!r} has no valid host")
    return host, port


def _port(text: str, value: str, what: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ConfigError(f"{what}: port in {value!r} must be 1-65535")
    return int(text)


def system_dns_servers(path: str = "/etc/resolv.conf") -> list[tuple[str, int]]:
    servers = []
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "nameserver":
                    servers.append((parts[1], 53))  # a link-local address keeps its %interface
    except OSError:
        pass
    return servers


# -------------------------------------------------------------------------------------------- DNS

QTYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "MX": 15, "TXT": 16, "AAAA": 28}
_QTYPE_NAMES = {v: k for k, v in QTYPES.items()}
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}
_CLASS_IN = 1
_UDP_PAYLOAD = 512  # RFC 1035 limit without EDNS: anything bigger arrives truncated and is fetched over TCP


class DnsError(Exception):
    """A DNS query got no usable answer."""


class MalformedDnsAnswer(DnsError):
    pass


def build_query(qid: int, name: str, qtype: int) -> bytes:
    header = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)  # RD: ask the server to recurse
    qname = b"".join(bytes([len(label)]) + label.encode("ascii") for label in name.split(".")) + b"\x00"
    return header + qname + struct.pack("!HH", qtype, _CLASS_IN)


def read_name(msg: bytes, offset: int) -> tuple[str, int]:
    """A possibly compressed name at `offset`; returns it and the offset just past it in the record."""
    labels: list[str] = []
    end: Optional[int] = None
    length_total = 0
    position = offset
    while True:
        if position >= len(msg):
            raise MalformedDnsAnswer("a name runs past the end of the message")
        length = msg[position]
        if length & 0xC0 == 0xC0:
            if position + 1 >= len(msg):
                raise MalformedDnsAnswer("a compression pointer is cut off")
            pointer = ((length & 0x3F) << 8) | msg[position + 1]
            # Pointers must go strictly backwards; that alone rules out loops.
            if pointer >= position:
                raise MalformedDnsAnswer("a compression pointer points forward or at itself (loop)")
            if end is None:
                end = position + 2
            position = pointer
            continue
        if length & 0xC0:
            raise MalformedDnsAnswer(f"unknown label type 0x{length & 0xC0:02x}")
        position += 1
        if length == 0:
            break
        if position + length > len(msg):
            raise MalformedDnsAnswer("a label runs past the end of the message")
        length_total += length + 1
        if length_total > 255:
            raise MalformedDnsAnswer("a name longer than 255 bytes")
        labels.append(msg[position : position + length].decode("ascii", "backslashreplace"))
        position += length
    return ".".join(labels), (end if end is not None else position)


def _txt_strings(rdata: bytes) -> str:
    strings = []
    i = 0
    while i < len(rdata):
        length = rdata[i]
        if i + 1 + length > len(rdata):
            raise MalformedDnsAnswer("a TXT character-string runs past its record")
        strings.append(rdata[i + 1 : i + 1 + length])
        i += 1 + length
    # RFC 7208 3.3: the strings of one record are joined without spaces (long SPF records are split this way).
    return b"".join(strings).decode("utf-8", "replace")


def parse_response(msg: bytes, qid: int, name: str, qtype: int) -> tuple[int, bool, list]:
    """(rcode, truncated, records of `qtype` in the answer section) of a response to our query."""
    if len(msg) < 12:
        raise MalformedDnsAnswer(f"{len(msg)} bytes, shorter than a DNS header")
    rid, flags, qdcount, ancount, _nscount, _arcount = struct.unpack("!HHHHHH", msg[:12])
    if rid != qid:
        raise MalformedDnsAnswer("the answer's id does not match the query")
    if not flags & 0x8000:
        raise MalformedDnsAnswer("not a response (QR bit clear)")
    rcode = flags & 0x000F
    truncated = bool(flags & 0x0200)
    offset = 12
    for _ in range(qdcount):
        qname, offset = read_name(msg, offset)
        if offset + 4 > len(msg):
            raise MalformedDnsAnswer("the question section is cut off")
        rtype, rclass = struct.unpack("!HH", msg[offset : offset + 4])
        offset += 4
        if qname.lower() != name.lower() or rtype != qtype or rclass != _CLASS_IN:
            raise MalformedDnsAnswer(f"the answer is for {qname!r} type {rtype}, not the question asked")
    if truncated:
        return rcode, True, []
    records: list = []
    for _ in range(ancount):
        _owner, offset = read_name(msg, offset)
        if offset + 10 > len(msg):
            raise MalformedDnsAnswer("a resource record header is cut off")
        rtype, rclass, _ttl, rdlength = struct.unpack("!HHIH", msg[offset : offset + 10])
        offset += 10
        if offset + rdlength > len(msg):
            raise MalformedDnsAnswer("a resource record's data runs past the end of the message")
        rdata_start, offset = offset, offset + rdlength
        if rclass != _CLASS_IN or rtype != qtype:
            continue  # e.g. the CNAME chain a resolver puts before the records asked for
        if rtype == QTYPES["TXT"]:
            records.append(_txt_strings(msg[rdata_start:offset]))
        elif rtype == QTYPES["MX"]:
            if rdlength < 3:
                raise MalformedDnsAnswer("an MX record shorter than its preference and name")
            preference = struct.unpack("!H", msg[rdata_start : rdata_start + 2])[0]
            exchange, end = read_name(msg, rdata_start + 2)
            if end != offset:
                raise MalformedDnsAnswer("an MX record's name does not end with its data")
            records.append({"preference": preference, "exchange": exchange or "."})
    return rcode, False, records


def _recv_exactly(sock: socket.socket, count: int, deadline: float) -> bytes:
    chunks, remaining = [], count
    while remaining:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("timed out")
        sock.settimeout(left)
        chunk = sock.recv(remaining)
        if not chunk:
            raise MalformedDnsAnswer("the server closed the TCP connection mid-answer")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


class DnsClient:
    """A stub resolver for TXT and MX: UDP first, TCP when the answer is truncated, each server in turn."""

    def __init__(
        self,
        servers: list[tuple[str, int]],
        timeout: float,
        attempts: int = 2,
        count: Callable[[str], None] = lambda name: None,
    ):
        self.servers = servers
        self.timeout = timeout
        self.attempts = attempts
        self.count = count

    def query(self, name: str, qtype: str) -> tuple[str, list]:
        """(rcode name, records); NOERROR and NXDOMAIN are answers, anything else raises DnsError."""
        code = QTYPES[qtype]
        problems = []
        for host, port in self.servers:
            where = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
            for _attempt in range(self.attempts):
                qid = secrets.randbelow(65536)  # unpredictable ids make spoofed answers harder to land
                query = build_query(qid, name, code)
                try:
                    self.count("dns_queries")
                    rcode, truncated, records = parse_response(self._udp(host, port, query, qid), qid, name, code)
                    if truncated:
                        self.count("dns_tcp_fallbacks")
                        rcode, truncated, records = parse_response(self._tcp(host, port, query), qid, name, code)
                        if truncated:
                            raise MalformedDnsAnswer("the TCP answer is marked truncated too")
                except TimeoutError:
                    problems.append(f"{where}: no answer within {self.timeout:g}s")
                    continue
                except MalformedDnsAnswer as exc:
                    problems.append(f"{where}: malformed answer ({exc})")
                    continue
                except OSError as exc:  # refused, unreachable: retrying the same server will not help
                    problems.append(f"{where}: {exc.strerror or exc}")
                    break
                if rcode in (0, 3):
                    return RCODES[rcode], records
                problems.append(f"{where}: answered {RCODES.get(rcode, f'rcode {rcode}')}")
                break
        if not self.servers:
            problems.append("no DNS server configured (set DOMAINS_DNS_SERVER or a nameserver in /etc/resolv.conf)")
        raise DnsError(f"{qtype} {name}: " + "; ".join(dict.fromkeys(problems)))

    def _address(self, host: str, port: int, kind: int) -> tuple[int, Any]:
        family, _type, _proto, _name, address = socket.getaddrinfo(host, port, type=kind)[0]
        return family, address

    def _udp(self, host: str, port: int, query: bytes, qid: int) -> bytes:
        family, address = self._address(host, port, socket.SOCK_DGRAM)
        deadline = time.monotonic() + self.timeout
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect(address)  # a connected socket only receives datagrams from that server
            sock.send(query)
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("timed out")
                sock.settimeout(left)
                data = sock.recv(65535)
                if len(data) >= 2 and struct.unpack("!H", data[:2])[0] == qid:
                    return data
                # A late answer to an earlier attempt, or noise: keep waiting for ours.

    def _tcp(self, host: str, port: int, query: bytes) -> bytes:
        family, address = self._address(host, port, socket.SOCK_STREAM)
        deadline = time.monotonic() + self.timeout
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(self.timeout)
            sock.connect(address)
            sock.sendall(struct.pack("!H", len(query)) + query)
            length = struct.unpack("!H", _recv_exactly(sock, 2, deadline))[0]
            return _recv_exactly(sock, length, deadline)


def parse_dmarc(record: str) -> dict[str, str]:
    """Tags of a DMARC record (RFC 7489 6.3): 'v=DMARC1; p=reject; rua=...' -> {'v': 'DMARC1', 'p': 'reject', ...}."""
    tags = {}
    for part in record.split(";"):
        key, sep, value = part.partition("=")
        if sep and key.strip():
            tags[key.strip().lower()] = value.strip()
    return tags


# ------------------------------------------------------------------------------------------ WHOIS


class WhoisError(Exception):
    """A WHOIS server gave no usable answer."""


_KEY_VALUE = re.compile(r"^\s*([A-Za-z][A-Za-z0-9 /&()'_-]{0,60}?)[\s.]*:\s*(.*?)\s*$")
_SCALARS = {
    "domain_name": ("domain name", "domain"),
    "registrar": ("registrar", "sponsoring registrar", "registrar name", "registrar organization"),
    "registrar_url": ("registrar url",),
    "creation_date": (
        "creation date",
        "created on",
        "created",
        "created date",
        "registered on",
        "registered",
        "registration time",
        "domain registration date",
        "domain record activated",
    ),
    "updated_date": (
        "updated date",
        "last updated on",
        "last updated",
        "last modified",
        "last update",
        "changed",
        "modified",
        "domain record last updated",
    ),
    "expiration_date": (
        "registry expiry date",
        "expiration date",
        "registrar registration expiration date",
        "expiry date",
        "expires on",
        "expires",
        "expire date",
        "paid-till",
        "renewal date",
        "domain expires",
    ),
}
_LISTS = {
    "name_servers": ("name server", "nameserver", "nameservers", "name servers", "nserver"),
    "status": ("status", "domain status"),
}
_KEY_FIELD = {alias: field for field, aliases in {**_SCALARS, **_LISTS}.items() for alias in aliases}
_DATES = ("creation_date", "updated_date", "expiration_date")
_NOT_FOUND = re.compile(
    r"^\s*(no match|not found|no data found|no entries found|domain not found|no object found|"
    r"the queried object does not exist|status:\s*(free|available))",
    re.I | re.M,
)
_REFUSED = re.compile(
    r"(limit exceeded|quota exceeded|too many (requests|queries)|try again later|access denied)", re.I
)
_DATE_FORMATS = (
    "%d-%b-%Y",
    "%d-%B-%Y",
    "%d-%b-%Y %H:%M:%S",
    "%d.%m.%Y",
    "%d.%m.%Y %H:%M:%S",
    "%Y.%m.%d",
    "%Y/%m/%d",
    "%Y/%m/%d %H:%M:%S",
    "%d/%m/%Y",
    "%Y%m%d",
    "%B %d %Y",
    "%b %d %Y",
    "%a %b %d %H:%M:%S %Y",
    "%Y-%m-%d %H:%M:%S %Z",
    "%a %b %d %H:%M:%S %Z %Y",
)


def parse_whois_date(value: str) -> Optional[datetime]:
    text = value.strip().rstrip(".").strip()
    text = re.sub(r"\s*\((?:UTC|GMT)\)$|\s+(?:UTC|GMT)$", "", text)
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        moment = None
        for fmt in _DATE_FORMATS:
            try:
                moment = datetime.strptime(text, fmt)
                break
            except ValueError:
                continue
        if moment is None:
            return None
    # Registries that print no zone mean UTC (Verisign, most ccTLDs); keep every date comparable.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _registry_lines(text: str) -> Iterator[tuple[str, str]]:
    """(lower-case key, value) pairs, skipping the paragraphs of other names a thin registry lists first.

    Verisign answers a bare `example.com` with every registered name that *starts* with it ("Server Name:
    EXAMPLE.COM.EVIL.NET ..."); those paragraphs must not lend their registrar to the domain asked for.
    """
    for paragraph in re.split(r"\n\s*\n", text.replace("\r\n", "\n")):
        pairs = [(m.group(1).strip().lower(), m.group(2)) for m in map(_KEY_VALUE.match, paragraph.split("\n")) if m]
        if pairs and pairs[0][0] == "server name":
            continue
        yield from pairs


def parse_whois(text: str) -> dict[str, Any]:
    """The registration facts of a raw WHOIS answer: first value of each field wins, lists are collected."""
    if _NOT_FOUND.search(text):
        return {"registered": False}
    found: dict[str, Any] = {field: None for field in _SCALARS}
    lists: dict[str, list[str]] = {field: [] for field in _LISTS}
    unparsed: dict[str, str] = {}
    for key, value in _registry_lines(text):
        field = _KEY_FIELD.get(key)
        if field is None or not value:
            continue
        if field in lists:
            item = value.split()[0] if field == "status" else value.split()[0].lower().rstrip(".")
            if item.lower() not in (existing.lower() for existing in lists[field]):
                lists[field].append(item)
        elif found[field] is None and field not in unparsed:
            if field in _DATES:
                moment = parse_whois_date(value)
                if moment is None:
                    unparsed[field] = value
                    continue
                found[field] = moment.isoformat()
            else:
                found[field] = value
    result: dict[str, Any] = {"registered": True, **found, **lists}
    if unparsed:
        result["unparsed_dates"] = unparsed
    return result


def _whois_referral(text: str) -> Optional[str]:
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in ("refer", "whois") and value.strip():
            return value.strip()
    return None


# ----------------------------------------------------------------------------------------- client


@dataclass
class DomainsStats:
    """What the lookups cost, for the asset's metadata (`collect` reads `as_metadata()`)."""

    http_requests: int = 0
    http_retries: int = 0
    dns_queries: int = 0
    dns_tcp_fallbacks: int = 0
    whois_queries: int = 0
    lookup_errors: int = 0
    domains_invalid: int = 0

    def as_metadata(self) -> dict[str, Any]:
        return asdict(self)


class DomainsClient:
    """The lookups of one pull: DNS, WHOIS and HTTP probes with shared timeouts and counters.

    It stands where other sources have an HttpSession (a context manager with `stats`). The header checks
    do not use HttpSession: every status, 4xx and 5xx included, is an observation to record, not an error to
    retry or raise, and redirects must be seen rather than followed.
    """

    def __init__(self, resource: DomainsResource, settings: HttpSettings, logger: Any = None):
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
        # DNS answers come in milliseconds or not at all: the HTTP read timeout (60 s) would be far too patient.
        self.dns = DnsClient(servers, timeout=min(5.0, settings.read_timeout), attempts=2, count=self.count)
        self.whois_server = (
            parse_host_port(resource.whois_server, 43, "DOMAINS_WHOIS_SERVER") if resource.whois_server else None
        )
        self.whois_referral_server = parse_host_port(resource.whois_referral_server, 43, "whois referral server")
        self._tld_servers: dict[str, tuple[str, int]] = {}
        self.http_url = check_http_url(resource.http_url)
        self.http = requests.Session()
        self.http.headers["User-Agent"] = settings.user_agent

    def __enter__(self) -> DomainsClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            setattr(self.stats, name, getattr(self.stats, name) + n)

    @property
    def dns_servers(self) -> str:
        return ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.dns.servers) or "none"

    # WHOIS

    def _whois_ask(self, server: tuple[str, int], query: str) -> str:
        host, port = server
        self.count("whois_queries")
        deadline = time.monotonic() + self.settings.read_timeout
        chunks, size = [], 0
        try:
            with socket.create_connection((host, port), timeout=self.settings.connect_timeout) as sock:
                sock.sendall(query.encode("ascii") + b"\r\n")
                while True:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise WhoisError(
                            f"{host}:{port} did not finish answering within {self.settings.read_timeout:g}s"
                        )
                    sock.settimeout(left)
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    size += len(chunk)
                    if size > 1_000_000:
                        raise WhoisError(f"{host}:{port} sent more than 1 MB; that is not a WHOIS record")
                    chunks.append(chunk)
        except TimeoutError:
            raise WhoisError(f"{host}:{port} timed out") from None
        except OSError as exc:
            raise WhoisError(f"{host}:{port}: {exc.strerror or exc}") from None
        raw = b"".join(chunks)
        if not raw.strip():
            raise WhoisError(f"{host}:{port} closed the connection without an answer")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw.decode("latin-1")  # several ccTLD registries still answer in Latin-1

    def _server_for(self, domain: str) -> tuple[str, int]:
        if self.whois_server:
            return self.whois_server
        tld = domain.rsplit(".", 1)[-1]
        with self._lock:
            cached = self._tld_servers.get(tld)
        if cached:
            return cached
        answer = self._whois_ask(self.whois_referral_server, tld)
        referral = _whois_referral(answer)
        if not referral:
            raise WhoisError(f"IANA knows no WHOIS server for .{tld}")
        # The registry listens on the port the referral server does (43 in the wild).
        server = parse_host_port(referral, self.whois_referral_server[1], f"WHOIS referral for .{tld}")
        with self._lock:
            self._tld_servers[tld] = server
        return server

    def whois(self, domain: str) -> dict[str, Any]:
        server = self._server_for(domain)
        text = self._whois_ask(server, domain)
        parsed = parse_whois(text)
        nothing = parsed["registered"] and not any(parsed.get(f) for f in (*_SCALARS, *_LISTS))
        if nothing and _REFUSED.search(text[:2000]):
            raise WhoisError(f"{server[0]}:{server[1]} refused the query: {_excerpt(' '.join(text.split()), 160)}")
        return {"server": f"{server[0]}:{server[1]}", **parsed}

    # HTTP

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
                raise CollectionError(f"TLS failed: {_excerpt(str(exc.__context__ or exc), 200)}") from None
            except (requests.ConnectionError, requests.Timeout) as exc:
                if attempt + 1 >= attempts:
                    raise CollectionError(f"GET {url}: {_connection_problem(exc)}") from None
                self.count("http_retries")
                time.sleep(self.settings.backoff_base * random.uniform(0.5, 1.0))
            except requests.RequestException as exc:  # e.g. a header the server sent that HTTP forbids
                raise CollectionError(f"GET {url}: {type(exc).__name__}: {_excerpt(str(exc), 200)}") from None
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
    return f"{type(exc).__name__}: {_excerpt(str(exc), 160)}"


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


# --------------------------------------------------------------------------------------- resource


class DomainsResource(VendorResource):
    """The domains to check and where to ask about them. Nothing secret here."""

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
    whois_server: Optional[str] = env_setting(
        "DOMAINS_WHOIS_SERVER",
        "WHOIS server to ask for every domain, `host[:port]`. Default: ask "
        "whois.iana.org which server holds the domain's TLD, then ask that one (port 43).",
    )
    http_url: str = env_setting(
        "DOMAINS_HTTP_URL",
        "URL template of the header checks; `{scheme}` is `https` then `http`, "
        "`{domain}` the domain. Point it at a proxy or test server to check elsewhere.",
        DEFAULT_HTTP_URL,
    )
    # Not an environment variable: tests point it at a local server to exercise the referral.
    whois_referral_server: str = IANA_WHOIS

    def missing_env(self) -> list[str]:
        return [] if parse_domains(self.domains) else ["DOMAINS"]

    def client(self, settings: HttpSettings, logger: Any = None) -> DomainsClient:
        return DomainsClient(self, settings, logger)


# ------------------------------------------------------------------------------------------- pull


def _lookup(client: DomainsClient, entry: str) -> tuple[dict[str, Any], int]:
    """One domain's record and how many of its lookups succeeded; every failure lands in `errors`."""
    try:
        domain = normalize_domain(entry)
    except ValueError as exc:
        client.count("domains_invalid")
        record = {
            "domain": _excerpt(entry, 255),
            "valid": False,
            "whois": None,
            "dns": None,
            "http": None,
            "https": None,
            "errors": {"domain": f"not looked up: {_excerpt(entry, 60)!r} is not a valid domain name ({exc})"},
        }
        return record, 0
    record: dict[str, Any] = {"domain": domain, "valid": True}
    if domain != entry:
        record["input"] = entry
    errors: dict[str, str] = {}
    succeeded = 0

    def attempt(key: str, lookup: Callable[[], Any]) -> Any:
        nonlocal succeeded
        try:
            value = lookup()
        except (DnsError, WhoisError, CollectionError, ConfigError, OSError) as exc:
            client.count("lookup_errors")
            errors[key] = _excerpt(str(exc), 300)
            return None
        succeeded += 1
        return value

    record["whois"] = attempt("whois", lambda: client.whois(domain))
    dns: dict[str, Any] = {"server": client.dns_servers}
    txt = attempt("dns_txt", lambda: client.dns.query(domain, "TXT"))
    if txt is not None:
        dns["exists"] = txt[0] != "NXDOMAIN"
        dns["txt"] = txt[1]
        dns["spf"] = [r for r in txt[1] if r.lower().startswith("v=spf1")]
    dmarc = attempt("dns_dmarc", lambda: client.dns.query(f"_dmarc.{domain}", "TXT"))
    if dmarc is not None:
        dns["dmarc"] = [r for r in dmarc[1] if r.replace(" ", "").lower().startswith("v=dmarc1")]
        # RFC 7489 6.6.3: more than one DMARC record means no policy applies.
        dns["dmarc_policy"] = parse_dmarc(dns["dmarc"][0]) if len(dns["dmarc"]) == 1 else None
    mx = attempt("dns_mx", lambda: client.dns.query(domain, "MX"))
    if mx is not None:
        dns["mx"] = sorted(mx[1], key=lambda r: (r["preference"], r["exchange"]))
    record["dns"] = dns
    for scheme in ("https", "http"):
        record[scheme] = attempt(scheme, lambda scheme=scheme: client.probe(scheme, domain))
    record["errors"] = errors
    return record, succeeded


def pull_domains(pull: Pull) -> None:
    client: DomainsClient = pull.client
    entries = parse_domains(pull.resource.domains)
    valid = total_ok = 0
    first_error = None
    with ThreadPoolExecutor(max_workers=min(MAX_WORKERS, len(entries)) or 1, thread_name_prefix="domains") as pool:
        for record, succeeded in pool.map(lambda e: _lookup(client, e), entries):  # map keeps DOMAINS' order
            if record["valid"]:
                valid += 1
                total_ok += succeeded
                if first_error is None and record["errors"]:
                    key = next(iter(record["errors"]))
                    first_error = f"{record['domain']} {key}: {record['errors'][key]}"
            elif pull.log:
                pull.log.warning(f"Domains: {record['errors']['domain']}")
            pull.spool.write(record)
    if valid and not total_ok:
        # Not one answer for any domain means the resolver, WHOIS or network is broken, not the domains:
        # storing this would replace good data with nothing but errors.
        raise CollectionError(
            f"Domains: every lookup of all {valid} domain(s) failed (e.g. {first_error}). Check DOMAINS_DNS_SERVER "
            f"({client.dns_servers}), DOMAINS_WHOIS_SERVER and outbound access to ports 53, 43, 80 and 443."
        )


def _sandbox_env(url: str, token: str) -> dict[str, str]:
    """Variables that point this source at the bundled sandbox; its DNS and WHOIS servers start on first ask."""
    info = requests.get(f"{url.rstrip('/')}/domains/servers", timeout=30).json()
    return {
        "DOMAINS": ";".join(info["domains"]),
        "DOMAINS_DNS_SERVER": info["dns"],
        "DOMAINS_WHOIS_SERVER": info["whois"],
        "DOMAINS_HTTP_URL": url.rstrip("/") + info["http_path"],
    }


SOURCE = Source(
    group="domains",
    title="Domains",
    docs_url="https://www.rfc-editor.org/rfc/rfc1035",
    resource=DomainsResource,
    datasets=(
        DatasetSpec(
            "domains",
            "Domain posture",
            "One record per entry of `DOMAINS`: `whois` (registrar, creation/updated/expiration dates, name servers, "
            "status), `dns` (TXT, SPF, `_dmarc` TXT and its policy, MX), `http` and `https` (status, redirect, "
            "headers, security headers, cookie flags) and `errors`, a map of the lookups that failed for that domain.",
            "WHOIS port 43, DNS TXT/MX, GET {scheme}://{domain}/",
            pull=pull_domains,
            required_fields=("domain", "errors"),
        ),
    ),
    sandbox_env=_sandbox_env,
)
