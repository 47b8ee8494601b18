"""Domains in the sandbox: an authoritative-style DNS server (UDP + TCP, one port), a WHOIS server (TCP) and the
domains' web sites as HTTP routes, all answering deterministic records for `<word>.example` domains.

DNS and WHOIS are not HTTP, so they listen on ports of their own, started on the first
`GET /domains/servers` (which tells their addresses) and stopped when the Sandbox is garbage-collected;
`GET /domains/queries` lists the DNS and WHOIS queries they received.
WHOIS answers follow Verisign's format; `google.com` gets the recorded real answer in fixtures/whois.
"""

from __future__ import annotations

import random
import socketserver
import struct
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Optional

from .server import Request, Response, Router, Vendor, VendorContext, register_vendor

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "whois"
SITE_PATH = "/domains/site/{scheme}/{domain}/"

# Names with fixed misbehaviour, served whatever the volume: tests ask for them by name.
SERVFAIL = "servfail.example"  # DNS SERVFAIL, WHOIS hangs up without a word, web site 503
SILENT = "silent.example"  # DNS never answers (timeouts)
MALFORMED = "malformed.example"  # DNS answers with a compression-pointer loop
SPECIAL = (SERVFAIL, SILENT, MALFORMED)

_WORDS = ["acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "tyrell", "cyberdyne", "wonka"]
_REGISTRARS = [  # (name, IANA id, URL, WHOIS server) as the registrars publish them
    ("MarkMonitor Inc.", 292, "http://www.markmonitor.com", "whois.markmonitor.com"),
    ("GoDaddy.com, LLC", 146, "http://www.godaddy.com", "whois.godaddy.com"),
    ("Gandi SAS", 81, "http://www.gandi.net", "whois.gandi.net"),
    ("Cloudflare, Inc.", 1910, "http://www.cloudflare.com", "whois.cloudflare.com"),
]
_DNS_HOSTS = ["ns{n}.cloudflare.com", "ns{n}.awsdns-{k}.org", "ns{n}.markmonitor.com", "ns{n}.gandi.net"]
_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class DomainsVolume:
    """How many generated domains the sandbox serves; `count` is also the CLI flag --domains-count."""

    count: int = 5

    def __post_init__(self) -> None:
        if isinstance(self.count, bool) or not isinstance(self.count, int) or not 0 <= self.count <= 10_000:
            raise ValueError(f"DomainsVolume.count must be an int from 0 to 10000, got {self.count!r}")


def domain_names(volume: DomainsVolume) -> list[str]:
    return [
        (_WORDS[i] if i < len(_WORDS) else f"{_WORDS[i % len(_WORDS)]}-{i}") + ".example" for i in range(volume.count)
    ]


def profile(seed: int, domain: str) -> Optional[dict[str, Any]]:
    """Everything the sandbox says about a generated domain (None for names it does not know).

    Index 0 carries enough TXT records to overflow a 512-byte UDP answer (TCP fallback); index 1, 4, ... split
    their SPF record over two strings; every 4th has no DMARC and serves plain HTTP; every 5th has a null MX.
    """
    word = domain.rsplit(".", 1)[0]
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
    if not domain.endswith(".example"):
        return None
    rng = random.Random(f"{seed}:domains:{index}")
    spf = f"v=spf1 include:_spf.{domain} ip4:192.0.2.{index % 250 + 1}/32 {rng.choice(['-all', '~all', '?all'])}"
    txt: list[list[str]] = [[spf[:30], spf[30:]] if index % 3 == 1 else [spf]]
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
    mx = [(0, ".")] if index % 5 == 4 else [(10, f"mx1.{domain}"), (20, f"mx2.{domain}")]
    registrar = _REGISTRARS[rng.randrange(len(_REGISTRARS))]
    created = _EPOCH - timedelta(days=rng.randint(400, 9000), seconds=rng.randint(0, 86399))
    if (created.month, created.day) == (2, 29):  # its anniversary must exist in every year
        created -= timedelta(days=1)
    updated = _EPOCH - timedelta(days=rng.randint(1, 399), seconds=rng.randint(0, 86399))
    expires = created.replace(year=created.year + 1 + (_EPOCH.year - created.year) + rng.randint(0, 4))
    dns_host = _DNS_HOSTS[rng.randrange(len(_DNS_HOSTS))]
    name_servers = [dns_host.format(n=n, k=rng.randint(10, 60)) for n in (1, 2)]
    plain_http = index % 4 == 2
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


def whois_text(seed: int, query: str, referral_host: str) -> Optional[str]:
    """The answer to one WHOIS query line; None means hang up without answering."""
    name = query.strip().lower()
    if name == SERVFAIL:
        return None
    if name and "." not in name:  # a TLD: answer as whois.iana.org does, referring to this same server
        return (
            f"% IANA WHOIS server\n% for more information on IANA, visit http://www.iana.org\n"
            f"% This query returned 1 object\n\nrefer:        {referral_host}\n\ndomain:       {name.upper()}\n\n"
            f"organisation: Sandbox Registry\nstatus:       ACTIVE\nremarks:      Registration information: "
            f"http://www.iana.org/domains/root/db\n\nsource:       IANA\n"
        )
    if name == "google.com":
        return (FIXTURES / "google.com.raw").read_text(encoding="utf-8")
    facts = profile(seed, name)
    updated = _stamp(_EPOCH)
    if facts is None:
        return f'No match for "{name.upper()}".\r\n>>> Last update of whois database: {updated} <<<\r\n'
    w = facts["whois"]
    lines = [
        f"   Domain Name: {name.upper()}",
        f"   Registry Domain ID: {abs(hash((seed, name))) % 10**10}_DOMAIN_EXAMPLE-VRSN",
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
        answer = whois_text(servers.seed, query, servers.host)
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
    """(id, flags, qname, qtype, end of question) of a query, None when it is not one."""
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


def dns_records(seed: int, qname: str, qtype: int) -> tuple[int, list[tuple[str, Any]]]:
    """(rcode, [(type, data)]) the sandbox zone holds for a question."""
    name = qname.lower().rstrip(".")
    apex = name[len("_dmarc.") :] if name.startswith("_dmarc.") else name
    if apex == SERVFAIL:
        return 2, []
    facts = profile(seed, apex)
    if facts is None:
        return 3, []
    if name != apex:
        if facts["dmarc"] is None:
            return 3, []
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
        return None
    rcode, records = dns_records(seed, qname, qtype)
    out = _Writer()
    out.buf += struct.pack("!HHHHHH", qid, 0x8000 | 0x0400 | (flags & 0x0100) | 0x0080 | rcode, 1, len(records), 0, 0)
    out.name(qname)
    out.buf += data[end - 4 : end]
    if qname.lower().removeprefix("_dmarc.") == MALFORMED:
        # One answer whose owner name is a pointer to itself: a loop a careless parser never leaves.
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
    if udp and len(out.buf) > 512:
        # Too big for classic UDP: header and question only, TC set, as servers do; the client retries on TCP.
        head = bytearray(data[:end])
        struct.pack_into(
            "!HHHHHH", head, 0, qid, 0x8000 | 0x0400 | 0x0200 | (flags & 0x0100) | 0x0080 | rcode, 1, 0, 0, 0
        )
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

    def __init__(self, seed: int = 42, host: str = "127.0.0.1") -> None:
        self.seed = seed
        self.host = host
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


# -------------------------------------------------------------------------------------------- HTTP


def _site(seed: int, request: Request) -> Response:
    scheme, domain = request.params["scheme"], request.params["domain"].lower()
    if domain == SERVFAIL:
        return Response(503, body=b"<h1>503 Service Unavailable</h1>", content_type="text/html")
    facts = profile(seed, domain)
    if facts is None:
        return Response(404, body=f"<h1>No site at {domain}</h1>".encode(), content_type="text/html")
    status, headers = facts[scheme]
    body = b"" if status in (301, 302) else f"<html><body><h1>{domain}</h1></body></html>".encode()
    return Response(status, body=body, content_type="text/html; charset=utf-8", headers=dict(headers))


def install(router: Router, context: VendorContext, volume: DomainsVolume) -> None:
    lock = threading.Lock()
    servers = DomainsServers(context.seed)
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
                "special": list(SPECIAL),
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


register_vendor(Vendor("domains", DomainsVolume, install))
