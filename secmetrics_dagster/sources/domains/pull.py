"""The Domains pull: one record per entry of DOMAINS, its lookups run side by side, every failure kept in its record."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ...collection.errors import CollectionError, ConfigError
from ..base import Pull
from .client import DomainsClient, RegistrationFailed
from .names import excerpt, normalize_domain, parse_domains
from .resolver import DnsError, parse_dmarc

MAX_WORKERS = 4  # lookups of different domains overlap; WHOIS and RDAP servers throttle clients that open many more


def _invalid(client: DomainsClient, entry: str, problem: ValueError) -> dict[str, Any]:
    client.count("domains_invalid")
    return {
        "domain": excerpt(entry, 255),
        "valid": False,
        "whois": None,
        "registration_source": None,
        "dns": None,
        "http": None,
        "https": None,
        "errors": {"domain": f"not looked up: {excerpt(entry, 60)!r} is not a valid domain name ({problem})"},
    }


def lookup(client: DomainsClient, entry: str) -> tuple[dict[str, Any], int]:
    """One domain's record and how many of its lookups succeeded; every failure lands in `errors`."""
    try:
        domain = normalize_domain(entry)
    except ValueError as exc:
        return _invalid(client, entry, exc), 0
    record: dict[str, Any] = {"domain": domain, "valid": True}
    if domain != entry:
        record["input"] = entry
    errors: dict[str, str] = {}
    succeeded = 0

    def attempt(key: str, run: Callable[[], Any]) -> Any:
        nonlocal succeeded
        try:
            value = run()
        except (DnsError, CollectionError, ConfigError, OSError) as exc:
            client.count("lookup_errors")
            errors[key] = excerpt(str(exc), 300)
            return None
        succeeded += 1
        return value

    # `whois` keeps its name and shape whichever protocol answered; `registration_source` says which one did.
    try:
        record["registration_source"], record["whois"] = client.registration(domain)
        succeeded += 1
    except RegistrationFailed as exc:
        client.count("lookup_errors")
        record["registration_source"], record["whois"] = exc.source, None
        errors["whois"] = excerpt(str(exc), 300)
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
        for record, succeeded in pool.map(lambda e: lookup(client, e), entries):  # map keeps DOMAINS' order
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
        # Not one answer for any domain means the resolver, registries or network are broken, not the domains:
        # storing this would replace good data with nothing but errors.
        raise CollectionError(
            f"Domains: every lookup of all {valid} domain(s) failed (e.g. {first_error}). Check DOMAINS_DNS_SERVER "
            f"({client.dns_servers}), DOMAINS_RDAP_BOOTSTRAP_URL, DOMAINS_WHOIS_SERVER and outbound access to "
            "ports 53, 43, 80 and 443."
        )
