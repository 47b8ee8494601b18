"""The sandbox's Domains services answer as their specifications say: RDAP (RFC 7480, 9083, 9224) and DNS (RFC 1035,
RFC 6891), independently of the Domains source."""

import socket
import time
from datetime import UTC, datetime, timedelta

import dns.flags
import dns.message
import dns.query
import pytest
import requests

from secmetrics_dagster.sandbox import DomainsVolume, Fault, Sandbox
from secmetrics_dagster.sandbox.domains import RDAP_BOOTSTRAP_PATH, SERVFAIL

from .helpers import moment, shifted_timestamps

NOW = 1_800_000_000  # a fixed sandbox clock: 2027-01-15T08:00:00Z
CLOCK = datetime.fromtimestamp(NOW, UTC)
DAY = timedelta(days=1)


@pytest.fixture(scope="module")
def box():
    with Sandbox(seed=7) as sandbox:
        yield sandbox


@pytest.fixture
def dns_server(box) -> tuple[str, int]:
    host, port = requests.get(f"{box.url}/domains/servers").json()["dns"].rsplit(":", 1)
    return host, int(port)


def test_the_bootstrap_file_names_an_rdap_service_per_tld_and_none_for_test(box):
    document = requests.get(box.url + RDAP_BOOTSTRAP_PATH).json()
    assert document["version"] == "1.0" and "publication" in document
    services = {entry: urls for entries, urls in document["services"] for entry in entries}
    assert sorted(services) == ["com", "example"]
    assert all(len(urls) == 1 and urls[0].endswith("/") for urls in services.values())  # RFC 9224 3


def test_an_unknown_domain_is_a_404_rdap_error_in_rdap_media_type(box):
    base = requests.get(box.url + RDAP_BOOTSTRAP_PATH).json()["services"][0][1][0]
    response = requests.get(f"{base}domain/nobody.example")
    assert response.status_code == 404 and response.headers["Content-Type"] == "application/rdap+json"
    body = response.json()
    assert body["errorCode"] == 404 and body["title"] and isinstance(body["description"], list)


def test_a_registry_answers_only_for_its_own_tld(box):
    assert requests.get(f"{box.url}/domains/rdap/example/domain/acme.test").status_code == 404
    assert requests.get(f"{box.url}/domains/rdap/test/domain/acme.test").status_code == 404  # .test has no RDAP


def test_a_known_domain_is_an_rdap_domain_object_with_its_registrar_and_events(box):
    body = requests.get(f"{box.url}/domains/rdap/example/domain/acme.example").json()
    assert body["objectClassName"] == "domain" and body["ldhName"] == "ACME.EXAMPLE"
    registrar = next(e for e in body["entities"] if "registrar" in e["roles"])
    assert registrar["publicIds"][0]["type"] == "IANA Registrar ID"
    assert {e["eventAction"] for e in body["events"]} >= {"registration", "expiration", "last changed"}
    assert all(s == s.lower() and " " in s for s in body["status"])  # RFC 8056 names, not EPP's


def test_a_throttled_rdap_request_is_a_429_with_retry_after_and_an_rdap_error_body(box):
    box.add_fault(Fault("domains.rdap", "429", times=1, retry_after=7))
    try:
        response = requests.get(f"{box.url}/domains/rdap/example/domain/acme.example")
    finally:
        box.clear_faults()
    assert response.status_code == 429 and response.headers["Retry-After"] == "7"
    assert response.json()["errorCode"] == 429


def test_a_failing_domain_is_a_503_rdap_error(box):
    response = requests.get(f"{box.url}/domains/rdap/example/domain/{SERVFAIL}")
    assert response.status_code == 503 and response.json()["errorCode"] == 503


def test_an_answer_over_512_bytes_is_truncated_over_udp_without_edns(dns_server):
    host, port = dns_server
    answer = dns.query.udp(dns.message.make_query("acme.example", "TXT"), host, port=port, timeout=2)
    assert answer.flags & dns.flags.TC and not answer.answer


def test_an_edns_query_gets_the_whole_answer_over_udp_and_an_opt_record(dns_server):
    host, port = dns_server
    query = dns.message.make_query("acme.example", "TXT", use_edns=0, payload=4096)
    answer = dns.query.udp(query, host, port=port, timeout=2)
    assert not answer.flags & dns.flags.TC and len(answer.answer[0]) == 13
    assert answer.edns == 0  # RFC 6891 6.1.1: an OPT in the query is answered with one


def _registries(now: float, count: int = 20) -> dict:
    """What a sandbox at clock `now` answers about its domains: the bootstrap file, every RDAP domain object (of
    `.example`) and every WHOIS answer (of `.example` and `.test`), by name."""
    with Sandbox(seed=7, domains=DomainsVolume(count=count, now=now)) as box:
        servers = requests.get(f"{box.url}/domains/servers").json()
        host, port = servers["whois"].rsplit(":", 1)

        def whois(name: str) -> str:
            with socket.create_connection((host, int(port)), timeout=5) as conn:
                conn.sendall(name.encode() + b"\r\n")
                return b"".join(iter(lambda: conn.recv(4096), b"")).decode()

        rdap = {}
        for name in servers["domains"]:
            body = requests.get(f"{box.url}/domains/rdap/example/domain/{name}").json()
            rdap[name] = {k: v for k, v in body.items() if k != "links"}  # links carry the sandbox's port
        test_names = [n.replace(".example", ".test") for n in servers["domains"]]
        return {
            "now": servers["now"],
            "bootstrap": {
                k: v for k, v in requests.get(box.url + RDAP_BOOTSTRAP_PATH).json().items() if k != "services"
            },
            "rdap": rdap,
            "whois": {name: whois(name) for name in servers["domains"] + test_names},
        }


def _whois_dates(text: str) -> dict[str, datetime]:
    fields = {"Creation Date": "created", "Updated Date": "updated", "Registry Expiry Date": "expires"}
    found = {}
    for line in text.splitlines():
        key, _, value = line.strip().partition(": ")
        if key in fields:
            found[fields[key]] = moment(value)
        elif line.startswith(">>> Last update of whois database: "):
            found["database"] = moment(line.split(": ", 1)[1].rstrip(" <"))
    return found


def test_registration_dates_count_back_from_the_sandbox_clock():
    first, again, later = _registries(NOW), _registries(NOW), _registries(NOW + 86_400)
    assert first == again and first["now"] == NOW  # the same seed and clock give the same answers; the route tells it
    # The same answers a day later, only every date a day later: RDAP's events, the bootstrap's publication ...
    assert shifted_timestamps(first["bootstrap"], later["bootstrap"], DAY) == [CLOCK]
    stamps = shifted_timestamps(first["rdap"], later["rdap"], DAY, path="rdap")
    assert len(stamps) == 4 * len(first["rdap"])  # registration, expiration, last changed, database update
    # ... and WHOIS's, in text.
    for name, text in first["whois"].items():
        dates, moved = _whois_dates(text), _whois_dates(later["whois"][name])
        assert sorted(dates) == ["created", "database", "expires", "updated"], name
        assert {k: v + DAY for k, v in dates.items()} == moved, name
        assert dates["created"] < dates["updated"] < dates["database"] == CLOCK < dates["expires"], name
        assert (dates["created"].month, dates["created"].day) == (dates["expires"].month, dates["expires"].day)
        assert CLOCK - 300 * DAY <= dates["updated"] and dates["expires"] <= CLOCK + 3 * 365 * DAY, name


def test_most_domains_expire_after_30_days_and_some_within_them():
    answers = _registries(NOW)["whois"]
    ahead = [_whois_dates(text)["expires"] - CLOCK for text in answers.values()]
    soon = sum(1 for days in ahead if days <= 30 * DAY)
    assert 0 < soon < len(ahead) / 3  # one in five: renewals due this month, for a 30-day expiry metric to catch


def test_without_a_clock_registration_dates_count_back_from_when_the_sandbox_starts():
    before = int(time.time())
    with Sandbox(seed=7) as box:
        after = int(time.time())
        now = requests.get(f"{box.url}/domains/servers").json()["now"]
        events = requests.get(f"{box.url}/domains/rdap/example/domain/acme.example").json()["events"]
    assert before <= now <= after
    assert {e["eventAction"]: moment(e["eventDate"]) for e in events}["last update of RDAP database"] == (
        datetime.fromtimestamp(now, UTC)
    )
