"""The sandbox's Domains services answer as their specifications say: RDAP (RFC 7480, 9083, 9224) and DNS (RFC 1035,
RFC 6891), independently of the Domains source."""

import dns.flags
import dns.message
import dns.query
import pytest
import requests

from secmetrics_dagster.sandbox import Fault, Sandbox
from secmetrics_dagster.sandbox.domains import RDAP_BOOTSTRAP_PATH, SERVFAIL


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
