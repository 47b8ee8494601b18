"""WHOIS (RFC 3912, TCP port 43) for the Domains source: the registration record of a domain whose TLD has no RDAP
service, or of every domain when DOMAINS_WHOIS_SERVER is set; the raw answer is parsed into the same fields as RDAP's.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, Optional

from ...collection.http import HttpSettings
from .names import excerpt, parse_host_port

IANA_WHOIS = "whois.iana.org:43"


class WhoisError(Exception):
    """A WHOIS server gave no usable answer."""


_KEY_VALUE = re.compile(r"\s*([A-Za-z][A-Za-z0-9 /&()'_-]{0,60}?)[\s.]*:\s*(.*?)\s*")
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
        pairs = [
            (m.group(1).strip().lower(), m.group(2)) for m in map(_KEY_VALUE.fullmatch, paragraph.split("\n")) if m
        ]
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


class WhoisClient:
    """Asks one WHOIS server (DOMAINS_WHOIS_SERVER) or, without one, the server IANA's WHOIS names for the TLD."""

    def __init__(
        self,
        settings: HttpSettings,
        server: Optional[str],
        referral_server: str = IANA_WHOIS,
        count: Callable[[str], None] = lambda name: None,
    ):
        self.settings = settings
        self.server = parse_host_port(server, 43, "DOMAINS_WHOIS_SERVER") if server else None
        self.referral_server = parse_host_port(referral_server, 43, "whois referral server")
        self.count = count
        self._lock = threading.Lock()
        self._tld_servers: dict[str, tuple[str, int]] = {}

    def ask(self, server: tuple[str, int], query: str) -> str:
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

    def server_for(self, domain: str) -> tuple[str, int]:
        if self.server:
            return self.server
        tld = domain.rsplit(".", 1)[-1]
        with self._lock:
            cached = self._tld_servers.get(tld)
        if cached:
            return cached
        referral = _whois_referral(self.ask(self.referral_server, tld))
        if not referral:
            raise WhoisError(f"IANA knows no WHOIS server for .{tld}")
        # The registry listens on the port the referral server does (43 in the wild).
        server = parse_host_port(referral, self.referral_server[1], f"WHOIS referral for .{tld}")
        with self._lock:
            self._tld_servers[tld] = server
        return server

    def lookup(self, domain: str) -> dict[str, Any]:
        server = self.server_for(domain)
        text = self.ask(server, domain)
        parsed = parse_whois(text)
        nothing = parsed["registered"] and not any(parsed.get(f) for f in (*_SCALARS, *_LISTS))
        if nothing and _REFUSED.search(text[:2000]):
            raise WhoisError(f"{server[0]}:{server[1]} refused the query: {excerpt(' '.join(text.split()), 160)}")
        return {"server": f"{server[0]}:{server[1]}", **parsed}
