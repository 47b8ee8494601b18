"""Domains in the sandbox: an authoritative-style DNS server (UDP + TCP, one port), RDAP registries and their
bootstrap file, a WHOIS server (TCP) and the domains' web sites, all answering deterministic records for
`<word>.example` and `<word>.test` domains.

Registration data comes from one set of facts per domain, served two ways: RDAP (RFC 9083 JSON on HTTP routes) for
the TLDs the sandbox's bootstrap file lists (`example`, and `com` for the recorded google.com answer), WHOIS
(Verisign's text format) for every name, which is all a client gets for `.test`: a TLD without RDAP service, as
many ccTLDs still are. DNS and WHOIS are not HTTP, so they listen on ports of their own, started on the first
`GET /domains/servers` (which tells their addresses) and stopped with the Sandbox; `GET /domains/queries` lists
the DNS and WHOIS queries they received. `google.com` gets recorded real answers (fixtures/whois, fixtures/rdap).

Registration dates count back from the sandbox's clock (`DomainsVolume.now`, default the moment the sandbox is
created; `GET /domains/servers` tells it as `now`, epoch seconds): every domain was registered years ago and last
updated within the year; one in five is due for renewal within 30 days, the others from six weeks to three years on.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import socketserver
import struct
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Optional

from .records import check_volume, sandbox_clock
from .server import Request, Response, Router, Vendor, VendorContext, register_vendor

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "whois"
RDAP_FIXTURES = Path(__file__).resolve().parent / "fixtures" / "rdap"
SITE_PATH = "/domains/site/{scheme}/{domain}/"
RDAP_BOOTSTRAP_PATH = "/domains/rdap/dns.json"
RDAP_TLDS = ("example", "com")  # the TLDs with an RDAP service; `.test` has none (WHOIS only)
TLDS = ("example", "test")  # the TLDs of generated domains

# Names with fixed misbehaviour, served whatever the volume: tests ask for them by name.
SERVFAIL = "servfail.example"  # DNS SERVFAIL, WHOIS hangs up without a word, web site 503
SILENT = "silent.example"  # DNS never answers (timeouts)
MALFORMED = "malformed.example"  # DNS answers with a compression-pointer loop
SPECIAL = (SERVFAIL, SILENT, MALFORMED)

_WORDS = ["acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "tyrell", "cyberdyne", "wonka"]
# (name, IANA id, URL, WHOIS server, RDAP base URL): names, ids and URLs as registry answers show them (MarkMonitor's
# in the recorded google.com answers); the other WHOIS and RDAP hosts are illustrative, not checked against IANA.
_REGISTRARS = [
    (
        "MarkMonitor Inc.",
        292,
        "http://www.markmonitor.com",
        "whois.markmonitor.com",
        "https://rdap.markmonitor.com/rdap/",
    ),
    ("GoDaddy.com, LLC", 146, "http://www.godaddy.com", "whois.godaddy.com", "https://rdap.godaddy.com/v1/"),
    ("Gandi SAS", 81, "http://www.gandi.net", "whois.gandi.net", "https://rdap.gandi.net/"),
    (
        "Cloudflare, Inc.",
        1910,
        "http://www.cloudflare.com",
        "whois.cloudflare.com",
        "https://rdap.cloudflare.com/rdap/v1/",
    ),
]
_DNS_HOSTS = ["ns{n}.cloudflare.com", "ns{n}.awsdns-{k}.org", "ns{n}.markmonitor.com", "ns{n}.gandi.net"]


@dataclass(frozen=True)
class DomainsVolume:
    """How many generated domains the sandbox serves; `count` is also the CLI flag --domains-count."""

    count: int = 5
    # The registries' "now" (epoch seconds) registration dates count back from; None: when the sandbox is created.
    now: Optional[float] = None

    def __post_init__(self) -> None:
        check_volume(self, ("count",), most=10_000)


def domain_names(volume: DomainsVolume) -> list[str]:
    return [
        (_WORDS[i] if i < len(_WORDS) else f"{_WORDS[i % len(_WORDS)]}-{i}") + ".example" for i in range(volume.count)
    ]


def profile(seed: int, domain: str, now: Optional[datetime] = None) -> Optional[dict[str, Any]]:
    """Everything the sandbox says about a generated domain (None for names it does not know); its registration dates
    count back from `now`, the sandbox's clock (None: the present; DNS and web answers do not depend on it).

    Index 0 carries enough TXT records to overflow a 512-byte UDP answer (TCP fallback); index 1, 4, ... split
    their SPF record over two strings; index 3, 8, ... publish no SPF record; every 4th has no DMARC and serves
    plain HTTP; every 5th has a null MX; index 1, 6, ... expire within 30 days. `<word>.test` has the same shape of
    facts as `<word>.example`, drawn from its own random stream.
    """
    word, _, tld = domain.rpartition(".")
    if tld not in TLDS or "." in word:
        return None
    base, _, number = word.rpartition("-")
    if word in _WORDS:
        index = _WORDS.index(word)
    elif (
        base in _WORDS
        and number.isdigit()
        and int(number) >= len(_WORDS)
        and int(number) % len(_WORDS) == _WORDS.index(base)
    ):
        index = int(number)
    else:
        return None
    rng = random.Random(f"{seed}:domains:{index}" if tld == "example" else f"{seed}:domains:{tld}:{index}")
    clock = sandbox_clock(None) if now is None else now
    spf = f"v=spf1 include:_spf.{domain} ip4:192.0.2.{index % 250 + 1}/32 {rng.choice(['-all', '~all', '?all'])}"
    # RFC 7208 3.3: a TXT record may hold its SPF policy in several strings, to be joined without spaces. A domain
    # without one (RFC 7208 4.5: the check's result is then "none") is what a forgotten domain looks like.
    txt: list[list[str]] = [] if index % 5 == 3 else [[spf[:30], spf[30:]] if index % 3 == 1 else [spf]]
    tokens = 12 if index == 0 else rng.randint(1, 2)
    for _ in range(tokens):
        token = "".join(
            rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") for _ in range(43)
        )
        txt.append([f"google-site-verification={token}"])
    dmarc = (
        None
        if index % 4 == 3
        else (f"v=DMARC1; p={rng.choice(['none', 'quarantine', 'reject'])}; rua=mailto:dmarc-reports@{domain}; pct=100")
    )
    mx = [(0, ".")] if index % 5 == 4 else [(10, f"mx1.{domain}"), (20, f"mx2.{domain}")]  # RFC 7505 null MX
    registrar = _REGISTRARS[rng.randrange(len(_REGISTRARS))]
    # Registrations and renewals run in whole years (EPP's <domain:period unit="y">, RFC 5731 3.2.1 and 3.2.3), so the
    # expiry is an anniversary of the creation: the expiry is drawn ahead of the clock (within 30 days for one in
    # five), the creation whole years before it, in the past; the registrar last changed the record within the year.
    ahead = rng.randint(2, 28) if index % 5 == 1 else rng.randint(45, 3 * 365)
    expires = clock + timedelta(days=ahead, seconds=rng.randint(0, 86399))
    if (expires.month, expires.day) == (2, 29):  # its anniversary must exist in every year
        expires -= timedelta(days=1)
    created = expires.replace(year=expires.year - rng.randint(4, 24))
    updated = clock - timedelta(days=rng.randint(1, 300), seconds=rng.randint(0, 86399))
    dns_host = _DNS_HOSTS[rng.randrange(len(_DNS_HOSTS))]
    name_servers = [dns_host.format(n=n, k=rng.randint(10, 60)) for n in (1, 2)]
    plain_http = index % 4 == 2
    # Security headers as sites send them: HSTS (RFC 6797 6.1), CSP (W3C CSP3), X-Frame-Options (RFC 7034),
    # X-Content-Type-Options and Referrer-Policy (Fetch standard, W3C Referrer Policy); cookie attributes RFC 6265 4.1.
    https_headers = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "strict-origin-when-cross-origin"}
    if not plain_http:
        https_headers["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"
    if rng.random() < 0.5:
        https_headers["Content-Security-Policy"] = "default-src 'self'; frame-ancestors 'none'"
    https_headers["X-Frame-Options"] = rng.choice(["DENY", "SAMEORIGIN"])
    https_headers["Set-Cookie"] = (
        f"session={rng.getrandbits(64):016x}; Path=/; Secure; HttpOnly; SameSite=Lax"
        if rng.random() < 0.7
        else f"session={rng.getrandbits(64):016x}; Path=/"
    )
    return {
        "domain": domain,
        "txt": txt,
        "dmarc": dmarc,
        "mx": mx,
        "whois": {
            "registrar": registrar[0],
            "registrar_iana_id": registrar[1],
            "registrar_url": registrar[2],
            "registrar_whois": registrar[3],
            "registrar_rdap": registrar[4],
            "creation_date": created,
            "updated_date": updated,
            "expiration_date": expires,
            "name_servers": name_servers,
            "status": ["clientDeleteProhibited", "clientTransferProhibited", "clientUpdateProhibited"][
                : rng.randint(1, 3)
            ],
        },
        "https": (200, https_headers),
        "http": (200, {"X-Content-Type-Options": "nosniff"})
        if plain_http
        else (301, {"Location": f"https://{domain}/"}),
    }


# ------------------------------------------------------------------------------------------- WHOIS


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def whois_text(seed: int, query: str, referral_host: str, now: datetime) -> Optional[str]:
    """The answer to one WHOIS query line (RFC 3912 2: one line in, the answer, then the server closes), at the
    sandbox's clock `now`; None means hang up without answering."""
    name = query.strip().lower()
    if name == SERVFAIL:
        # A registry that accepts the connection and closes it without a word; no document describes this, it is
        # what an overloaded or filtering port-43 service looks like from the client.
        return None
    if name and "." not in name:
        # A TLD: answer in whois.iana.org's format (https://www.iana.org/whois), whose `refer:` line names the
        # TLD's WHOIS server; here it refers to this same server.
        return (
            f"% IANA WHOIS server\n% for more information on IANA, visit http://www.iana.org\n"
            f"% This query returned 1 object\n\nrefer:        {referral_host}\n\ndomain:       {name.upper()}\n\n"
            f"organisation: Sandbox Registry\nstatus:       ACTIVE\nremarks:      Registration information: "
            f"http://www.iana.org/domains/root/db\n\nsource:       IANA\n"
        )
    if name == "google.com":  # a recorded real answer (fixtures/whois/SOURCE.txt)
        return (FIXTURES / "google.com.raw").read_text(encoding="utf-8")
    facts = profile(seed, name, now)
    updated = _stamp(now)
    if facts is None:
        # Verisign's answer for an unregistered name, which FreeBSD's whois(1) recognises (usr.bin/whois/whois.c
        # NO_MATCH_ID, freebsd/freebsd-src@00a8baac).
        return f'No match for "{name.upper()}".\r\n>>> Last update of whois database: {updated} <<<\r\n'
    w = facts["whois"]
    # The field layout of Verisign's thin-registry answers, as in the recorded google.com answer (fixtures/whois).
    lines = [
        f"   Domain Name: {name.upper()}",
        f"   Registry Domain ID: {registry_handle(seed, name)}",
        f"   Registrar WHOIS Server: {w['registrar_whois']}",
        f"   Registrar URL: {w['registrar_url']}",
        f"   Updated Date: {_stamp(w['updated_date'])}",
        f"   Creation Date: {_stamp(w['creation_date'])}",
        f"   Registry Expiry Date: {_stamp(w['expiration_date'])}",
        f"   Registrar: {w['registrar']}",
        f"   Registrar IANA ID: {w['registrar_iana_id']}",
        "   Registrar Abuse Contact Email: abuse@registrar.example",
        "   Registrar Abuse Contact Phone: +1.2083895740",
        *[f"   Domain Status: {s} https://icann.org/epp#{s}" for s in w["status"]],
        *[f"   Name Server: {ns.upper()}" for ns in w["name_servers"]],
        "   DNSSEC: unsigned",
        "   URL of the ICANN Whois Inaccuracy Complaint Form: https://www.icann.org/wicf/",
        f">>> Last update of whois database: {updated} <<<",
        "",
        "For more information on Whois status codes, please visit https://icann.org/epp",
        "",
        "NOTICE: The expiration date displayed in this record is the date the",
        "registrar's sponsorship of the domain name registration in the registry is",
        "currently set to expire. This date does not necessarily reflect the expiration",
        "date of the domain name registrant's agreement with the sponsoring",
        "registrar.",
    ]
    return "\r\n".join(lines) + "\r\n"


def registry_handle(seed: int, name: str) -> str:
    """The registry's object id (ROID), the same in WHOIS and RDAP; Verisign's form is <number>_DOMAIN_<TLD>-VRSN."""
    number = int(hashlib.sha256(f"{seed}:{name}".encode()).hexdigest()[:12], 16) % 10**10
    return f"{number}_DOMAIN_{name.rsplit('.', 1)[-1].upper()}-VRSN"


class _WhoisHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        servers: DomainsServers = self.server.owner  # type: ignore[attr-defined]
        self.request.settimeout(5)
        data = b""
        try:
            while b"\n" not in data and len(data) < 1024:
                chunk = self.request.recv(1024)
                if not chunk:
                    break
                data += chunk
        except OSError:
            return
        query = data.split(b"\n", 1)[0].decode("ascii", "replace").strip()
        servers._log("whois", query, "")
        answer = whois_text(servers.seed, query, servers.host, servers.now)
        if answer is not None:
            try:
                self.request.sendall(answer.encode("utf-8"))
            except OSError:
                pass


# --------------------------------------------------------------------------------------------- DNS

_TYPES = {1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 15: "MX", 16: "TXT", 28: "AAAA"}


class _Writer:
    """A DNS message being built, with RFC 1035 4.1.4 name compression against names already written."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self._offsets: dict[str, int] = {}

    def name(self, name: str) -> None:
        labels = [label for label in name.split(".") if label]
        for i in range(len(labels)):
            suffix = ".".join(labels[i:]).lower()
            if suffix in self._offsets:
                self.buf += struct.pack("!H", 0xC000 | self._offsets[suffix])
                return
            if len(self.buf) < 0x3FFF:
                self._offsets[suffix] = len(self.buf)
            raw = labels[i].encode("ascii")
            self.buf += bytes([len(raw)]) + raw
        self.buf += b"\x00"


def _parse_query(data: bytes) -> Optional[tuple[int, int, str, int, int]]:
    """(id, flags, qname, qtype, end of question) of a query (RFC 1035 4.1.1-4.1.2), None when it is not one."""
    if len(data) < 17:
        return None
    qid, flags, qdcount = struct.unpack("!HHH", data[:6])
    if flags & 0x8000 or qdcount != 1:
        return None
    labels, i = [], 12
    while i < len(data) and data[i]:
        length = data[i]
        if length > 63 or i + 1 + length > len(data):
            return None
        labels.append(data[i + 1 : i + 1 + length].decode("ascii", "replace"))
        i += 1 + length
    if i + 5 > len(data):
        return None
    qtype, _qclass = struct.unpack("!HH", data[i + 1 : i + 5])
    return qid, flags, ".".join(labels), qtype, i + 5


def _edns_payload(data: bytes, end: int) -> Optional[int]:
    """The UDP payload size a query's OPT record offers (RFC 6891 6.1.2: root owner, type 41, size in CLASS)."""
    if struct.unpack("!H", data[10:12])[0] < 1 or end + 11 > len(data) or data[end] != 0:
        return None
    rtype, payload = struct.unpack("!HH", data[end + 1 : end + 5])
    return payload if rtype == 41 else None


def dns_records(seed: int, qname: str, qtype: int) -> tuple[int, list[tuple[str, Any]]]:
    """(rcode, [(type, data)]) the sandbox zone holds for a question (rcodes of RFC 1035 4.1.1)."""
    name = qname.lower().rstrip(".")
    apex = name[len("_dmarc.") :] if name.startswith("_dmarc.") else name
    if apex == SERVFAIL:
        return 2, []  # SERVFAIL: the server could not process the query (a broken zone, a failing backend)
    facts = profile(seed, apex)
    if facts is None:
        return 3, []  # NXDOMAIN: no such name
    if name != apex:
        if facts["dmarc"] is None:
            return 3, []  # no _dmarc name: the domain publishes no DMARC policy (RFC 7489 6.6.3)
        return 0, [("TXT", [facts["dmarc"]])] if qtype == 16 else []
    if qtype == 16:
        return 0, [("TXT", strings) for strings in facts["txt"]]
    if qtype == 15:
        return 0, [("MX", mx) for mx in facts["mx"]]
    return 0, []


def dns_answer(seed: int, data: bytes, udp: bool) -> Optional[bytes]:
    query = _parse_query(data)
    if query is None:
        return None
    qid, flags, qname, qtype, end = query
    if qname.lower().removeprefix("_dmarc.") == SILENT:
        return None  # a server that drops the query (firewalled, overloaded): the client can only time out
    rcode, records = dns_records(seed, qname, qtype)
    # RFC 6891 6.2.5: an EDNS client may take UDP answers up to the size it offers; without EDNS the limit is
    # RFC 1035 4.2.1's 512 bytes. An OPT record in the query is answered with one (RFC 6891 6.1.1).
    payload = _edns_payload(data, end)
    limit = 512 if payload is None else max(512, min(payload, 4096))
    opt = b"" if payload is None else b"\x00" + struct.pack("!HHIH", 41, 4096, 0, 0)
    # Header (RFC 1035 4.1.1): QR, AA (this server holds the zone), RD copied from the query, RA.
    flags_out = 0x8000 | 0x0400 | (flags & 0x0100) | 0x0080 | rcode
    out = _Writer()
    out.buf += struct.pack("!HHHHHH", qid, flags_out, 1, len(records), 0, 1 if opt else 0)
    out.name(qname)
    out.buf += data[end - 4 : end]
    if qname.lower().removeprefix("_dmarc.") == MALFORMED:
        # One answer whose owner name is a compression pointer to itself: the pointer loop RFC 9267 2 lists among
        # the parsing flaws found in deployed DNS software (a careless parser never leaves it).
        struct.pack_into("!H", out.buf, 6, 1)
        out.buf += struct.pack("!H", 0xC000 | len(out.buf)) + struct.pack("!HHIH", qtype, 1, 300, 0)
        return bytes(out.buf)
    for rtype, value in records:
        out.name(qname)
        out.buf += struct.pack("!HHI", 15 if rtype == "MX" else 16, 1, 300)
        length_at = len(out.buf)
        out.buf += b"\x00\x00"
        if rtype == "MX":
            out.buf += struct.pack("!H", value[0])
            out.name(value[1])
        else:
            for text in value:
                raw = text.encode("utf-8")
                out.buf += bytes([len(raw)]) + raw
        struct.pack_into("!H", out.buf, length_at, len(out.buf) - length_at - 2)
    out.buf += opt
    if udp and len(out.buf) > limit:
        # Too big for UDP: header and question only with TC set (RFC 1035 4.2.1, RFC 2181 9); the client asks
        # again over TCP (RFC 7766 5).
        head = bytearray(data[:end]) + opt
        struct.pack_into("!HHHHHH", head, 0, qid, flags_out | 0x0200, 1, 0, 0, 1 if opt else 0)
        return bytes(head)
    return bytes(out.buf)


class _UdpHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        servers: DomainsServers = self.server.owner  # type: ignore[attr-defined]
        data, sock = self.request
        query = _parse_query(data)
        if query:
            servers._log("udp", query[2], _TYPES.get(query[3], str(query[3])))
        answer = dns_answer(servers.seed, data, udp=True)
        if answer is not None:
            sock.sendto(answer, self.client_address)


class _TcpHandler(socketserver.BaseRequestHandler):
    """DNS over TCP: each message behind a two-byte length (RFC 1035 4.2.2), several per connection (RFC 7766 6.2.1)."""

    def handle(self) -> None:
        servers: DomainsServers = self.server.owner  # type: ignore[attr-defined]
        self.request.settimeout(5)
        try:
            while True:
                head = self._exactly(2)
                if head is None:
                    return
                data = self._exactly(struct.unpack("!H", head)[0])
                if data is None:
                    return
                query = _parse_query(data)
                if query:
                    servers._log("tcp", query[2], _TYPES.get(query[3], str(query[3])))
                answer = dns_answer(servers.seed, data, udp=False)
                if answer is None:
                    return
                self.request.sendall(struct.pack("!H", len(answer)) + answer)
        except OSError:
            return

    def _exactly(self, count: int) -> Optional[bytes]:
        data = b""
        while len(data) < count:
            chunk = self.request.recv(count - len(data))
            if not chunk:
                return None
            data += chunk
        return data


class _UdpServer(socketserver.ThreadingMixIn, socketserver.UDPServer):
    daemon_threads = True


class _TcpServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False


class DomainsServers:
    """The DNS (UDP and TCP on one port, as DNS expects) and WHOIS servers of the sandbox's domains."""

    def __init__(self, seed: int = 42, host: str = "127.0.0.1", now: Optional[datetime] = None) -> None:
        self.seed = seed
        self.host = host
        self.now = sandbox_clock(None) if now is None else now  # what WHOIS dates count back from
        self.queries: list[tuple[str, str, str]] = []  # (transport, name, type) as received, for tests
        self._lock = threading.Lock()
        self._servers: list[socketserver.BaseServer] = []
        self.dns_port = self.whois_port = 0

    def _log(self, transport: str, name: str, qtype: str) -> None:
        with self._lock:
            self.queries.append((transport, name, qtype))

    @property
    def dns(self) -> str:
        return f"{self.host}:{self.dns_port}"

    @property
    def whois(self) -> str:
        return f"{self.host}:{self.whois_port}"

    def start(self) -> DomainsServers:
        if self._servers:
            return self
        for _ in range(50):  # the UDP port's TCP twin can be taken; pick again
            udp = _UdpServer((self.host, 0), _UdpHandler)
            try:
                tcp = _TcpServer((self.host, udp.server_address[1]), _TcpHandler)
            except OSError:
                udp.server_close()
                continue
            break
        else:
            raise OSError("no port free for both UDP and TCP DNS")
        whois = _TcpServer((self.host, 0), _WhoisHandler)
        for server in (udp, tcp, whois):
            server.owner = self  # type: ignore[attr-defined]
            threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.05},
                daemon=True,
                name=f"sandbox-domains:{server.server_address[1]}",
            ).start()
        self.dns_port, self.whois_port = udp.server_address[1], whois.server_address[1]
        self._servers = [udp, tcp, whois]
        return self

    def stop(self) -> None:
        servers, self._servers = self._servers, []
        for server in servers:
            server.shutdown()
            server.server_close()

    def __enter__(self) -> DomainsServers:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -------------------------------------------------------------------------------------------- RDAP

RDAP_TYPE = "application/rdap+json"  # RFC 7480 4.2, registered by RFC 9083 10.1
# RFC 9083 4.1 rdapConformance; the ICANN values name the gTLD RDAP Profile (2024) the answer follows. Profile
# section numbers below are as icann/rdap-conformance-tool doc/codes.md cites them.
_CONFORMANCE = ["rdap_level_0", "icann_rdap_technical_implementation_guide_1", "icann_rdap_response_profile_1"]
# RFC 9083 4.3 notices: the profile's status-codes notice (2.6.3) and inaccuracy-form notice (2.11), with terms of
# use, worded as in Verisign's recorded answer (fixtures/rdap/google.com.json).
_NOTICES = [
    {
        "title": "Terms of Use",
        "description": ["Service subject to Terms of Use."],
        "links": [{"href": "https://www.example/rdap/terms", "rel": "terms-of-service", "type": "text/html"}],
    },
    {
        "title": "Status Codes",
        "description": ["For more information on domain status codes, please visit https://icann.org/epp"],
        "links": [{"href": "https://icann.org/epp", "type": "text/html"}],
    },
    {
        "title": "RDDS Inaccuracy Complaint Form",
        "description": ["URL of the ICANN RDDS Inaccuracy Complaint Form: https://icann.org/wicf"],
        "links": [{"href": "https://icann.org/wicf", "type": "text/html"}],
    },
]


def _origin(request: Request) -> str:
    return f"http://{request.headers.get('Host') or '127.0.0.1'}"


def rdap_bootstrap(request: Request, now: datetime) -> Response:
    """The sandbox's copy of IANA's https://data.iana.org/rdap/dns.json (RFC 9224 3): version, publication (the
    sandbox's clock `now`) and `services`, each [[TLDs], [base URLs ending in "/"]]. `test` is left out, as IANA's
    file leaves out every TLD without an RDAP service (RFC 9224 4: the client then has no RDAP server to ask)."""
    services = [[[tld], [f"{_origin(request)}/domains/rdap/{tld}/"]] for tld in RDAP_TLDS]
    document = {
        "description": "RDAP bootstrap file for Domain Name System registrations",
        "publication": _stamp(now),
        "services": services,
        "version": "1.0",
    }
    return Response(200, document)  # IANA serves the bootstrap files as application/json


def rdap_error(status: int, request: Request) -> Response:
    """RFC 9083 6: an error is JSON with errorCode, title and description, in RDAP's media type.

    Injected 429s get a Retry-After from the fault machinery, as RFC 7480 5.5 allows a throttling server to send.
    """
    titles = {
        400: "Bad Request",
        404: "Not Found",
        429: "Too Many Requests",
        500: "Internal Server Error",
        503: "Service Unavailable",
    }
    body = {
        "errorCode": status,
        "title": titles.get(status, f"HTTP {status}"),
        "description": [f"{request.path}: {titles.get(status, 'error').lower()}"],
        "rdapConformance": _CONFORMANCE,
        "notices": _NOTICES,
    }
    # ICANN RDAP Technical Implementation Guide 1.14: every answer carries Access-Control-Allow-Origin: *.
    return Response(status, body, content_type=RDAP_TYPE, headers={"Access-Control-Allow-Origin": "*"})


def _rdap_status(epp: str) -> str:
    """RFC 8056 2: the RDAP name of an EPP status (clientDeleteProhibited -> "client delete prohibited", ok -> active)."""
    if epp == "ok":
        return "active"
    return "".join(f" {c.lower()}" if c.isupper() else c for c in epp)


def rdap_domain_object(seed: int, name: str, facts: dict[str, Any], origin: str, now: datetime) -> dict[str, Any]:
    """A domain object (RFC 9083 5.3) from the facts the WHOIS answer prints, shaped as the gTLD RDAP Response
    Profile asks: the registrar as an entity with its IANA id (2.4.1-2.4.3) and an `about` link to its RDAP service
    and web site (2.4.6, 2024), registration and expiration events and the database's last update (2.3.1.1-2.3.1.3;
    "last changed" is RFC 9083 10.2.3's action for the WHOIS "Updated Date"), nameservers (2.9) and RFC 8056 statuses."""
    w = facts["whois"]
    tld = name.rsplit(".", 1)[-1]
    self_url = f"{origin}/domains/rdap/{tld}/domain/{name.upper()}"
    registrar = {
        "objectClassName": "entity",
        "handle": str(w["registrar_iana_id"]),
        "roles": ["registrar"],
        "publicIds": [{"type": "IANA Registrar ID", "identifier": str(w["registrar_iana_id"])}],
        "vcardArray": ["vcard", [["version", {}, "text", "4.0"], ["fn", {}, "text", w["registrar"]]]],
        "links": [{"value": w["registrar_rdap"], "rel": "about", "href": w["registrar_url"], "type": "text/html"}],
        "entities": [
            {  # 2.4.5: the registrar's abuse contact
                "objectClassName": "entity",
                "roles": ["abuse"],
                "vcardArray": [
                    "vcard",
                    [
                        ["version", {}, "text", "4.0"],
                        ["fn", {}, "text", ""],
                        ["tel", {"type": "voice"}, "uri", "tel:+1.2083895740"],
                        ["email", {}, "text", "abuse@registrar.example"],
                    ],
                ],
            }
        ],
    }
    return {
        "objectClassName": "domain",
        "handle": registry_handle(seed, name),
        "ldhName": name.upper(),  # Verisign answers in upper case, as its WHOIS does
        "links": [
            {"value": self_url, "rel": "self", "href": self_url, "type": RDAP_TYPE},
            {
                "value": self_url,
                "rel": "related",
                "href": f"{w['registrar_rdap']}domain/{name.upper()}",
                "type": RDAP_TYPE,
            },
        ],
        "status": [_rdap_status(s) for s in w["status"]],
        "entities": [registrar],
        "events": [
            {"eventAction": "registration", "eventDate": _stamp(w["creation_date"])},
            {"eventAction": "expiration", "eventDate": _stamp(w["expiration_date"])},
            {"eventAction": "last changed", "eventDate": _stamp(w["updated_date"])},
            {"eventAction": "last update of RDAP database", "eventDate": _stamp(now)},
        ],
        "secureDNS": {"delegationSigned": False},
        "nameservers": [{"objectClassName": "nameserver", "ldhName": ns.upper()} for ns in w["name_servers"]],
        "rdapConformance": _CONFORMANCE,
        "notices": _NOTICES,
    }


def rdap_domain(seed: int, request: Request, now: datetime) -> Response:
    """`GET {base}domain/{name}` (RFC 9082 3.1.3) at the registry of the TLD the path names, at the clock `now`."""
    tld, name = request.params["tld"], request.params["name"].lower().rstrip(".")
    if name.rsplit(".", 1)[-1] != tld:
        return rdap_error(404, request)  # a registry holds only its own TLD's names
    if name == SERVFAIL:
        # No registry documents failing for one name; this models its backend failing (HTTP 503, RFC 9110 15.6.4).
        return rdap_error(503, request)
    if tld == "com":
        if name != "google.com":
            return rdap_error(404, request)
        document = json.loads((RDAP_FIXTURES / "google.com.json").read_text(encoding="utf-8"))  # fixtures/rdap
    else:
        facts = profile(seed, name, now)
        if facts is None:
            # RFC 7480 5.3 and the gTLD RDAP Response Profile: an unknown domain is a 404, as CentralNic answers it
            # (recorded in jarthod/rdap spec/fixtures/RDAP/_domain/raises_an_error_for_domain_not_found.yml).
            return rdap_error(404, request)
        document = rdap_domain_object(seed, name, facts, _origin(request), now)
    return Response(200, document, content_type=RDAP_TYPE, headers={"Access-Control-Allow-Origin": "*"})


# -------------------------------------------------------------------------------------------- HTTP


def _site(seed: int, request: Request) -> Response:
    """A domain's home page: https answers with its security headers, http redirects to https (301, RFC 9110
    15.4.2) unless the site serves plain HTTP; the answers are as given, the client must not follow them."""
    scheme, domain = request.params["scheme"], request.params["domain"].lower()
    if domain == SERVFAIL:
        return Response(503, body=b"<h1>503 Service Unavailable</h1>", content_type="text/html")  # RFC 9110 15.6.4
    facts = profile(seed, domain)
    if facts is None:
        return Response(404, body=f"<h1>No site at {domain}</h1>".encode(), content_type="text/html")
    status, headers = facts[scheme]
    body = b"" if status in (301, 302) else f"<html><body><h1>{domain}</h1></body></html>".encode()
    return Response(status, body=body, content_type="text/html; charset=utf-8", headers=dict(headers))


def install(router: Router, context: VendorContext, volume: DomainsVolume) -> None:
    lock = threading.Lock()
    now = sandbox_clock(volume.now)
    servers = DomainsServers(context.seed, now=now)
    router.on_stop(servers.stop)  # started on first use, below; stopped with the sandbox (stop() is idempotent)

    def servers_route(request: Request) -> Response:
        with lock:
            servers.start()
        return Response(
            200,
            {
                "dns": servers.dns,
                "whois": servers.whois,
                "domains": domain_names(volume),
                "http_path": SITE_PATH,
                "rdap_bootstrap_path": RDAP_BOOTSTRAP_PATH,
                "rdap_tlds": list(RDAP_TLDS),
                "special": list(SPECIAL),
                "now": int(now.timestamp()),  # the clock registration dates count back from (epoch seconds)
            },
        )

    def queries_route(request: Request) -> Response:
        with servers._lock:
            return Response(200, [list(q) for q in servers.queries])

    router.add("GET", r"/domains/servers", "domains.servers", servers_route)
    router.add("GET", r"/domains/queries", "domains.queries", queries_route)
    router.add(
        "GET",
        r"/domains/site/(?P<scheme>https?)/(?P<domain>[A-Za-z0-9.-]{1,253})/",
        "domains.site",
        lambda request: _site(context.seed, request),
    )
    router.add(
        "GET", re.escape(RDAP_BOOTSTRAP_PATH), "domains.rdap_bootstrap", lambda request: rdap_bootstrap(request, now)
    )
    router.add(
        "GET",
        rf"/domains/rdap/(?P<tld>{'|'.join(RDAP_TLDS)})/domain/(?P<name>[A-Za-z0-9.-]{{1,253}})",
        "domains.rdap",
        lambda request: rdap_domain(context.seed, request, now),
        error=rdap_error,
    )


register_vendor(Vendor("domains", DomainsVolume, install))
