"""What the Domains source accepts as input: the entries of DOMAINS, domain names, and `host[:port]` settings."""

from __future__ import annotations

import ipaddress
import re
from typing import Optional

from ...collection.errors import ConfigError

_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_HOST = re.compile(r"[A-Za-z0-9.:%_-]+")


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

    The name goes into DNS questions, a WHOIS query line and URLs (RDAP, the header checks), so only letters,
    digits and hyphens in 2+ labels of at most 63 characters (253 in all) pass; IP addresses are refused.
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
        if not _LABEL.fullmatch(label):
            raise ValueError("only letters, digits and inner hyphens are allowed in each label")
    if labels[-1].isdigit():
        raise ValueError("an IP address is not a domain")
    return name


def excerpt(value: str, limit: int = 80) -> str:
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
    if not host or not _HOST.fullmatch(host):
        raise ConfigError(f"{what}: {value!r} has no valid host")
    return host, port


def _port(text: str, value: str, what: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ConfigError(f"{what}: port in {value!r} must be 1-65535")
    return int(text)


def host_port_text(host: str, port: int) -> str:
    """`host:port`, with an IPv6 address in brackets as DOMAINS_DNS_SERVER writes it."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
