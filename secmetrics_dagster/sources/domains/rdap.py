"""RDAP for the Domains source: IANA's bootstrap file names the registry's RDAP service for a TLD (RFC 9224), whose
`domain/<name>` answer (RFC 9082, RFC 9083) gives the registration record, over the project's HTTP layer.

Since 28 January 2025 RDAP is the definitive source of gTLD registration data and registries need not run WHOIS
any more (https://www.icann.org/en/contracted-parties/registry-operators/resources/registration-data-access-protocol);
WHOIS stays only for TLDs the bootstrap file does not list (many ccTLDs).
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from typing import Any, Optional
from urllib.parse import urlsplit

from ...collection.errors import CollectionError, ConfigError, http_status
from ...collection.http import HttpSession, HttpSettings, default_error_detail

IANA_BOOTSTRAP = "https://data.iana.org/rdap/dns.json"
# RFC 7480 4.2: ask for RDAP's media type; application/json too, as some registries refuse the RDAP type alone
# (rdap.nic.fr, recorded in jarthod/rdap spec/fixtures/RDAP/_domain/supports_rdap_nic_fr_which_does_not_accept_
# rdap_json_mimetype_as_of_2022-12-29_.yml).
ACCEPT = "application/rdap+json, application/json;q=0.9"


class RdapError(Exception):
    """An RDAP service (or the bootstrap file) gave no usable answer."""


def rdap_error_detail(body: Any) -> Optional[str]:
    """RFC 9083 6: an error answer carries `title` and `description` lines; some registries use other shapes."""
    if isinstance(body, dict) and (body.get("title") or body.get("description")):
        lines = body.get("description") if isinstance(body.get("description"), list) else []
        return " - ".join(str(p) for p in dict.fromkeys([body.get("title"), *lines]) if p)
    return default_error_detail(body)


def parse_bootstrap(document: Any, url: str) -> dict[str, str]:
    """{domain label(s): base URL} of an RFC 9224 file: `services` is a list of [[entries], [base URLs]].

    RFC 9224 3: secure transport is preferred when a service lists several URLs, and base URLs end with "/".
    """
    services = document.get("services") if isinstance(document, dict) else None
    if not isinstance(services, list):
        raise RdapError(f"RDAP bootstrap {url} is not an RFC 9224 bootstrap file (no 'services' list)")
    table: dict[str, str] = {}
    for service in services:
        if not (isinstance(service, list) and len(service) == 2 and all(isinstance(p, list) for p in service)):
            continue  # one unreadable entry must not hide every other TLD's service
        entries, urls = service
        urls = [u for u in urls if isinstance(u, str) and urlsplit(u).scheme in ("https", "http")]
        if not urls:
            continue
        base = sorted(urls, key=lambda u: not u.startswith("https://"))[0]
        for entry in entries:
            if isinstance(entry, str) and entry.strip("."):
                table[entry.strip(".").lower()] = base if base.endswith("/") else base + "/"
    return table


def base_url_for(table: dict[str, str], domain: str) -> Optional[str]:
    """RFC 9224 4: the label-wise longest match of the domain with the entries (a.b.example.com: example.com, com)."""
    labels = domain.lower().split(".")
    for start in range(len(labels)):
        base = table.get(".".join(labels[start:]))
        if base:
            return base
    return None


def _when(value: Any) -> Optional[str]:
    """An RFC 3339 event date as the WHOIS path writes dates: ISO 8601 in UTC (e.g. 1997-09-15T04:00:00+00:00)."""
    try:
        moment = datetime.fromisoformat(str(value).strip())
    except ValueError:
        return None
    return (moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)).isoformat()


def _vcard(entity: dict, prop: str) -> Optional[str]:
    """A property of a jCard (RFC 7095): ["vcard", [[name, params, type, value], ...]]."""
    card = entity.get("vcardArray")
    if isinstance(card, list) and len(card) == 2 and isinstance(card[1], list):
        for item in card[1]:
            if isinstance(item, list) and len(item) >= 4 and item[0] == prop and isinstance(item[3], str) and item[3]:
                return item[3]
    return None


def epp_status(value: str) -> str:
    """An RDAP status (RFC 8056 2: "client delete prohibited") as the EPP status WHOIS prints (clientDeleteProhibited)."""
    words = value.split()
    if words == ["active"]:
        return "ok"  # RFC 8056 2: EPP "ok" is RDAP "active"
    return words[0].lower() + "".join(w.capitalize() for w in words[1:]) if words else value


def parse_domain(document: Any, server: str) -> dict[str, Any]:
    """The registration facts of an RDAP domain object (RFC 9083 5.3), in the fields and formats of parse_whois."""
    if not isinstance(document, dict) or document.get("objectClassName") != "domain":
        raise RdapError(f"{server} answered something that is not an RDAP domain object (RFC 9083 5.3)")
    events: dict[str, Any] = {}
    for event in document.get("events") or []:
        if isinstance(event, dict) and isinstance(event.get("eventAction"), str):
            events.setdefault(event["eventAction"].lower(), event.get("eventDate"))
    registrar = next(
        (e for e in document.get("entities") or [] if isinstance(e, dict) and "registrar" in (e.get("roles") or [])),
        {},
    )
    # The gTLD RDAP Response Profile (2.4.6, 2024) puts the registrar's web site in its "about" link; ccTLDs
    # such as .fr put it in the registrar's vCard "url" (jarthod/rdap, the rdap.nic.fr recording above).
    about = [
        link.get("href")
        for link in registrar.get("links") or []
        if isinstance(link, dict) and link.get("rel") == "about" and link.get("type", "text/html") == "text/html"
    ]
    result: dict[str, Any] = {
        "server": server,
        "registered": True,
        "domain_name": document.get("ldhName") or document.get("unicodeName"),
        "registrar": _vcard(registrar, "fn"),
        "registrar_url": next(iter(about), None) or _vcard(registrar, "url"),
    }
    unparsed = {}
    for field, action in (
        ("creation_date", "registration"),
        ("updated_date", "last changed"),
        ("expiration_date", "expiration"),
    ):
        value = events.get(action)
        result[field] = _when(value) if value is not None else None
        if value is not None and result[field] is None:
            unparsed[field] = str(value)
    names = [ns.get("ldhName") for ns in document.get("nameservers") or [] if isinstance(ns, dict)]
    result["name_servers"] = list(dict.fromkeys(n.lower().rstrip(".") for n in names if isinstance(n, str) and n))
    result["status"] = [epp_status(s) for s in document.get("status") or [] if isinstance(s, str)]
    if unparsed:
        result["unparsed_dates"] = unparsed
    return result


def check_bootstrap_url(url: str) -> str:
    parts = urlsplit(url or "")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"DOMAINS_RDAP_BOOTSTRAP_URL {url!r} must be an http(s) URL, e.g. {IANA_BOOTSTRAP}")
    return url


class RdapClient:
    """The bootstrap file (read once per pull, by whichever lookup needs it first) and the registries' answers."""

    def __init__(self, bootstrap_url: str, settings: HttpSettings, logger: Optional[logging.Logger] = None):
        self.bootstrap_url = check_bootstrap_url(bootstrap_url)
        self.http = HttpSession(
            "Domains RDAP",
            bootstrap_url,
            settings=settings,
            headers={"Accept": ACCEPT},
            error_detail=rdap_error_detail,
            logger=logger,
        )
        self.stats = self.http.stats
        self._lock = threading.Lock()
        self._table: Optional[dict[str, str]] = None
        self._failure: Optional[str] = None

    def close(self) -> None:
        self.http.close()

    def base_url(self, domain: str) -> Optional[str]:
        """The RDAP base URL of the domain's registry, None when the bootstrap lists no service for it."""
        with self._lock:  # one fetch per pull, however many lookups run at once
            if self._table is None and self._failure is None:
                try:
                    self._table = parse_bootstrap(self.http.get_json(self.bootstrap_url), self.bootstrap_url)
                except (CollectionError, RdapError) as exc:
                    # Remembered: asking again for every domain would repeat the same wait and the same error.
                    self._failure = (
                        f"the RDAP bootstrap file {self.bootstrap_url} could not be read: check outbound HTTPS, or "
                        f"set DOMAINS_RDAP_BOOTSTRAP_URL (a copy of the file) or DOMAINS_WHOIS_SERVER. Cause: {exc}"
                    )
            if self._failure:
                raise RdapError(self._failure)
            return base_url_for(self._table or {}, domain)

    def lookup(self, base_url: str, domain: str) -> dict[str, Any]:
        try:
            document = self.http.get_json(f"{base_url}domain/{domain}")
        except CollectionError as exc:
            if http_status(exc) == 404:  # RFC 7480 5.3: the registry holds no such domain
                return {"server": base_url, "registered": False}
            raise
        return parse_domain(document, base_url)
