"""Registration data over RDAP (RFC 9224 bootstrap, RFC 9083 answers) against the sandbox's registries, and DNS
through dnspython; WHOIS only where the bootstrap file lists no RDAP service for the TLD."""

import json
from datetime import datetime

import dns.resolver
import pytest

from secmetrics_dagster.collection.errors import ConfigError
from secmetrics_dagster.collection.http import HttpSettings
from secmetrics_dagster.sandbox import Fault
from secmetrics_dagster.sandbox.domains import RDAP_FIXTURES, SERVFAIL, profile
from secmetrics_dagster.sources.domains import SOURCE, DomainsResource
from secmetrics_dagster.sources.domains.client import DomainsClient
from secmetrics_dagster.sources.domains.rdap import base_url_for, epp_status, parse_bootstrap, parse_domain
from secmetrics_dagster.stores import StoresResource

from .harness import materialize_source
from .helpers import failure_text, materialization_metadata, replace
from .test_sources_domains import SEED, records, registry_clock, sandbox_resource, server_queries


@pytest.fixture
def domains(sandbox):
    return sandbox_resource(sandbox)


@pytest.fixture
def whois_domains(sandbox):
    return sandbox_resource(sandbox, whois=True)


def test_registration_data_comes_from_the_rdap_service_the_bootstrap_file_names(
    sandbox, domains, collection, file_stores
):
    result = materialize_source(SOURCE, domains, collection, file_stores)
    assert result.success, failure_text(result)
    got, clock = records(file_stores), registry_clock(sandbox)
    for name, record in got.items():
        expected = profile(SEED, name, clock)["whois"]
        whois = record["whois"]
        assert record["registration_source"] == "rdap"
        assert whois["server"] == domains.rdap_bootstrap_url.replace("dns.json", "example/")
        assert (whois["domain_name"], whois["registrar"], whois["registrar_url"]) == (
            name.upper(),
            expected["registrar"],
            expected["registrar_url"],
        )
        for field in ("creation_date", "updated_date", "expiration_date"):
            assert datetime.fromisoformat(whois[field]) == expected[field].replace(microsecond=0), field
        assert whois["name_servers"] == expected["name_servers"] and whois["status"] == expected["status"]
    stats = sandbox.stats()
    assert (stats["domains.rdap_bootstrap"], stats["domains.rdap"]) == (1, len(got))  # the file is read once
    assert [q for q in server_queries(sandbox) if q[0] == "whois"] == []
    assert materialization_metadata(result, "domains")["rdap_requests"] == 1 + len(got)


def test_rdap_and_whois_give_the_same_record_of_the_same_domain(domains, whois_domains, collection, tmp_path):
    answers = {}
    for source, resource in (("rdap", domains), ("whois", whois_domains)):
        stores = StoresResource(file_template=str(tmp_path / source / "%TAG/%TENANCY.json"))
        result = materialize_source(
            SOURCE, replace(resource, domains="acme.example;initech.example"), collection, stores
        )
        assert result.success, failure_text(result)
        answers[source] = {n: {**r["whois"], "server": None} for n, r in records(stores).items()}
        assert {r["registration_source"] for r in records(stores).values()} == {source}
    # Same keys, same values, timestamps in the same format (ISO 8601, UTC offset): only `server` differs.
    assert answers["rdap"] == answers["whois"]


def test_rdap_of_the_recorded_google_answer_gives_the_expected_fields(domains, collection, file_stores):
    result = materialize_source(SOURCE, replace(domains, domains="google.com"), collection, file_stores)
    assert result.success, failure_text(result)
    record = records(file_stores)["google.com"]
    expected = json.loads((RDAP_FIXTURES / "google.com.expected.json").read_text())
    assert record["registration_source"] == "rdap"
    assert {k: record["whois"][k] for k in expected} == expected


def test_a_cctld_answer_outside_the_gtld_profile_is_read_the_same_way():
    document = json.loads((RDAP_FIXTURES / "airport.fr.json").read_text())  # AFNIC, recorded (fixtures/rdap)
    assert parse_domain(document, "https://rdap.nic.fr/") == {
        "server": "https://rdap.nic.fr/",
        "registered": True,
        "domain_name": "airport.fr",
        "registrar": "PG",  # the first entity with the registrar role
        "registrar_url": "http://exceptionnel.fr/e/acces-clients/",  # its vCard url: no gTLD "about" link here
        "creation_date": "2016-01-27T00:33:10+00:00",
        "updated_date": "2022-01-27T00:35:28+00:00",
        "expiration_date": "2023-01-27T00:33:10+00:00",
        "name_servers": [],
        "status": ["inactive"],
    }


def test_a_domain_the_registry_does_not_hold_is_unregistered_not_an_error(domains, collection, file_stores):
    result = materialize_source(
        SOURCE, replace(domains, domains="nobody.example;acme.example"), collection, file_stores
    )
    assert result.success, failure_text(result)
    nobody = records(file_stores)["nobody.example"]
    assert nobody["whois"] == {
        "server": domains.rdap_bootstrap_url.replace("dns.json", "example/"),
        "registered": False,
    }
    assert nobody["registration_source"] == "rdap" and "whois" not in nobody["errors"]


def test_a_registry_that_fails_is_an_error_of_that_domain_without_falling_back_to_whois(
    sandbox, domains, collection, file_stores
):
    result = materialize_source(SOURCE, replace(domains, domains=f"acme.example;{SERVFAIL}"), collection, file_stores)
    assert result.success, failure_text(result)
    failed = records(file_stores)[SERVFAIL]
    assert failed["registration_source"] == "rdap" and failed["whois"] is None
    assert "HTTP 503" in failed["errors"]["whois"] and "Service Unavailable" in failed["errors"]["whois"]
    assert [q for q in server_queries(sandbox) if q[0] == "whois"] == []
    assert records(file_stores)["acme.example"]["errors"] == {}


def test_a_throttled_rdap_request_waits_as_retry_after_says_and_is_asked_again(
    sandbox, domains, collection, file_stores
):
    sandbox.add_fault(Fault("domains.rdap", "429", times=1, retry_after=0))
    result = materialize_source(SOURCE, replace(domains, domains="acme.example"), collection, file_stores)
    assert result.success, failure_text(result)
    assert records(file_stores)["acme.example"]["whois"]["registered"] is True
    metadata = materialization_metadata(result, "domains")
    assert (metadata["rdap_throttled"], metadata["rdap_retries"]) == (1, 1)
    assert sandbox.stats()["domains.rdap"] == 2


def test_an_unreadable_bootstrap_file_fails_each_registration_lookup_and_is_fetched_once(
    sandbox, domains, collection, file_stores
):
    sandbox.add_fault(Fault("domains.rdap_bootstrap", "500", times=0))
    result = materialize_source(SOURCE, domains, collection, file_stores)
    assert result.success, failure_text(result)  # DNS and the header checks still answered
    for record in records(file_stores).values():
        assert record["registration_source"] == "rdap" and record["whois"] is None
        assert (
            "RDAP bootstrap file" in record["errors"]["whois"]
            and "DOMAINS_RDAP_BOOTSTRAP_URL" in record["errors"]["whois"]
        )
    assert sandbox.stats()["domains.rdap_bootstrap"] == 1 + collection.http_max_retries  # one request and its retries
    assert sandbox.stats().get("domains.rdap", 0) == 0


def test_an_unusable_rdap_bootstrap_url_fails_before_any_lookup(sandbox, domains, collection, file_stores):
    result = materialize_source(
        SOURCE, replace(domains, rdap_bootstrap_url="ftp://files.example/dns.json"), collection, file_stores
    )
    assert not result.success
    assert "DOMAINS_RDAP_BOOTSTRAP_URL 'ftp://files.example/dns.json' must be an http(s) URL" in failure_text(result)
    assert server_queries(sandbox) == [] and "domains.rdap_bootstrap" not in sandbox.stats()


def test_the_bootstrap_url_is_read_from_the_environment_and_defaults_to_iana(monkeypatch):
    monkeypatch.setenv("DOMAINS", "acme.example")
    monkeypatch.delenv("DOMAINS_RDAP_BOOTSTRAP_URL", raising=False)
    assert DomainsResource.from_env().rdap_bootstrap_url == "https://data.iana.org/rdap/dns.json"
    monkeypatch.setenv("DOMAINS_RDAP_BOOTSTRAP_URL", "http://127.0.0.1:9/dns.json")
    assert DomainsResource.from_env().rdap_bootstrap_url == "http://127.0.0.1:9/dns.json"
    monkeypatch.setenv("DOMAINS_RDAP_BOOTSTRAP_URL", "data.iana.org/rdap/dns.json")
    with pytest.raises(ConfigError, match="DOMAINS_RDAP_BOOTSTRAP_URL 'data.iana.org/rdap/dns.json' must be an http"):
        DomainsResource.from_env()


def test_dns_lookups_go_through_a_dnspython_resolver_pointed_at_the_configured_servers_and_ports(domains):
    resource = replace(domains, dns_server="127.0.0.1:5353, [::1]:5300,localhost")
    with DomainsClient(resource, HttpSettings(read_timeout=0.5)) as client:
        resolver = client.dns.resolver
        assert isinstance(resolver, dns.resolver.Resolver)
        assert [(ns.host, ns.port) for ns in resolver.nameservers] == [
            ("127.0.0.1", 5353),
            ("::1", 5300),
            ("localhost", 53),
        ]
        assert resolver.timeout == 0.5 and resolver.search == [] and resolver.cache is None


def test_the_bootstrap_entry_is_the_label_wise_longest_match_and_https_is_preferred():
    table = parse_bootstrap(
        {
            "services": [
                [["com", "net"], ["http://rdap.example.com/com/", "https://rdap.example.com/com/"]],
                [["example.com"], ["https://rdap.example.org/sub"]],
                "not a service",
                [["uz"], ["http://cctld.uz:9000/"]],
            ]
        },
        "bootstrap",
    )
    assert base_url_for(table, "a.b.example.com") == "https://rdap.example.org/sub/"  # trailing "/" added
    assert base_url_for(table, "goodexample.com") == "https://rdap.example.com/com/"  # labels, not string suffixes
    assert base_url_for(table, "site.uz") == "http://cctld.uz:9000/"  # http when a service lists nothing else
    assert base_url_for(table, "site.test") is None


def test_rdap_statuses_are_recorded_as_the_epp_names_whois_prints():
    assert [epp_status(s) for s in ("client delete prohibited", "active", "pending delete", "inactive")] == [
        "clientDeleteProhibited",
        "ok",
        "pendingDelete",
        "inactive",
    ]
