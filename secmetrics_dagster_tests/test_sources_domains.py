"""The domains asset end to end: sandbox DNS, RDAP, WHOIS and web sites -> lookups -> spool -> stores; failures stay
per domain. The RDAP-specific behaviour is in test_sources_domains_rdap.py."""

import json
from datetime import UTC, datetime

import pytest
import requests

from secmetrics_dagster.sandbox.domains import FIXTURES, MALFORMED, SERVFAIL, SILENT, profile
from secmetrics_dagster.sources.domains import SOURCE, DomainsResource

from .conftest import SANDBOX_TOKEN
from .harness import materialize_source
from .helpers import duck_rows, failure_text, materialization_metadata, pg_rows, replace, stored_file
from .services import free_port

SEED = 7  # the conftest sandbox's seed


def sandbox_resource(sandbox, whois: bool = False) -> DomainsResource:
    """The sandbox's settings: RDAP through its bootstrap file, and a TLD without RDAP asks the sandbox's WHOIS (never
    IANA's); with `whois`, DOMAINS_WHOIS_SERVER is set and every domain is looked up over WHOIS, RDAP or not."""
    env = SOURCE.sandbox_env(sandbox.url, SANDBOX_TOKEN)
    whois_server = requests.get(f"{sandbox.url}/domains/servers").json()["whois"]
    return DomainsResource(
        domains=env["DOMAINS"],
        dns_server=env["DOMAINS_DNS_SERVER"],
        rdap_bootstrap_url=env["DOMAINS_RDAP_BOOTSTRAP_URL"],
        http_url=env["DOMAINS_HTTP_URL"],
        whois_referral_server=whois_server,
        whois_server=whois_server if whois else None,
    )


@pytest.fixture
def domains_env(sandbox) -> dict:
    return SOURCE.sandbox_env(sandbox.url, SANDBOX_TOKEN)


@pytest.fixture
def domains(sandbox) -> DomainsResource:
    return sandbox_resource(sandbox)


@pytest.fixture
def whois_domains(sandbox) -> DomainsResource:
    return sandbox_resource(sandbox, whois=True)


def registry_clock(sandbox) -> datetime:
    """The clock the sandbox's registration dates count back from (its DomainsVolume.now, or when it started)."""
    return datetime.fromtimestamp(requests.get(f"{sandbox.url}/domains/servers").json()["now"], UTC)


def records(stores) -> dict:
    doc = json.loads(stored_file(stores, "domains").read_text())
    return {r["domain"]: r for r in doc["data"]}


def server_queries(sandbox) -> list:
    return [tuple(q) for q in requests.get(f"{sandbox.url}/domains/queries").json()]


def test_every_domain_lands_in_all_four_stores_with_all_its_lookups(
    domains, domains_env, collection, all_stores, s3_client, pg_conn
):
    result = materialize_source(SOURCE, domains, collection, all_stores)
    assert result.success, failure_text(result)
    names = domains_env["DOMAINS"].split(";")
    assert len(names) == 5
    backup = json.loads(
        s3_client.get_object(Bucket=all_stores.s3_bucket, Key="backup/domains/acme.json")["Body"].read()
    )
    assert {
        "file": sorted(records(all_stores)),
        "s3": sorted(r["domain"] for r in backup["data"]),
        "postgres": sorted(row[2]["domain"] for row in pg_rows(pg_conn, all_stores.postgres_schema, "domains_latest")),
        "duckdb": sorted(row[2]["domain"] for row in duck_rows(all_stores.duckdb_path, "domains_latest")),
    } == dict.fromkeys(["file", "s3", "postgres", "duckdb"], sorted(names))
    assert materialization_metadata(result, "domains")["records"] == 5
    for record in records(all_stores).values():
        assert record["errors"] == {}, record["domain"]
        assert record["whois"]["registered"] and record["dns"]["exists"]
        assert record["https"]["status"] == 200 and record["http"]["status"] in (200, 301)


def test_dns_txt_spf_dmarc_and_mx_are_what_the_dns_server_holds(domains, collection, file_stores):
    result = materialize_source(SOURCE, domains, collection, file_stores)
    assert result.success, failure_text(result)
    for name, record in records(file_stores).items():
        expected = profile(SEED, name)
        dns = record["dns"]
        assert dns["txt"] == ["".join(strings) for strings in expected["txt"]]  # multi-string SPF joined, RFC 7208
        spf = ["".join(strings) for strings in expected["txt"] if strings[0].startswith("v=spf1")]
        assert dns["spf"] == [t for t in dns["txt"] if t.startswith("v=spf1")] == spf and len(spf) <= 1
        assert dns["dmarc"] == ([expected["dmarc"]] if expected["dmarc"] else [])
        assert (dns["dmarc_policy"] or {}).get("p") == (
            expected["dmarc"].split("p=")[1].split(";")[0] if expected["dmarc"] else None
        )
        assert [(m["preference"], m["exchange"]) for m in dns["mx"]] == expected["mx"]
    assert records(file_stores)["hooli.example"]["dns"]["mx"] == [
        {"preference": 0, "exchange": "."}
    ]  # RFC 7505 null MX
    assert records(file_stores)["umbrella.example"]["dns"]["spf"] == []  # no SPF record (and no DMARC)
    assert all(len(r["dns"]["spf"]) == 1 for name, r in records(file_stores).items() if name != "umbrella.example")


def test_an_answer_too_big_for_udp_is_asked_again_over_tcp(sandbox, domains, collection, file_stores):
    result = materialize_source(SOURCE, replace(domains, domains="acme.example"), collection, file_stores)
    assert result.success, failure_text(result)
    assert len(records(file_stores)["acme.example"]["dns"]["txt"]) == 13
    assert materialization_metadata(result, "domains")["dns_tcp_fallbacks"] == 1
    assert [q for q in server_queries(sandbox) if q[1] == "acme.example" and q[2] == "TXT"] == [
        ("udp", "acme.example", "TXT"),
        ("tcp", "acme.example", "TXT"),
    ]


def test_whois_of_the_recorded_google_answer_gives_the_expected_fields(whois_domains, collection, file_stores):
    result = materialize_source(SOURCE, replace(whois_domains, domains="google.com"), collection, file_stores)
    assert result.success, failure_text(result)
    whois = records(file_stores)["google.com"]["whois"]
    expected = json.loads((FIXTURES / "google.com.expected.json").read_text())
    for field in ("domain_name", "registrar", "registrar_url", "status"):
        assert whois[field] == expected[field], field
    for field, expected_field in (
        ("creation_date", "creation_date"),
        ("updated_date", "updated_date"),
        ("expiration_date", "expiration_date"),
    ):
        assert datetime.fromisoformat(whois[field]) == datetime.fromisoformat(expected[expected_field]), field
    # The thin registry's other "GOOGLE.COM.*" names listed first lend nothing to the record.
    assert whois["name_servers"] == ["ns1.google.com", "ns2.google.com", "ns3.google.com", "ns4.google.com"]


def test_whois_of_a_registry_answer_gives_registrar_dates_and_name_servers(
    sandbox, whois_domains, collection, file_stores
):
    result = materialize_source(SOURCE, whois_domains, collection, file_stores)
    assert result.success, failure_text(result)
    clock = registry_clock(sandbox)
    for name, record in records(file_stores).items():
        expected = profile(SEED, name, clock)["whois"]
        whois = record["whois"]
        assert (whois["domain_name"], whois["registrar"], whois["registrar_url"]) == (
            name.upper(),
            expected["registrar"],
            expected["registrar_url"],
        )
        for field in ("creation_date", "updated_date", "expiration_date"):
            assert datetime.fromisoformat(whois[field]) == expected[field].replace(microsecond=0), field
        assert whois["name_servers"] == expected["name_servers"] and whois["status"] == expected["status"]


def test_a_tld_without_rdap_is_asked_of_the_whois_server_named_by_the_referral(
    sandbox, domains, collection, file_stores
):
    # `.test` is not in the sandbox's bootstrap file; its WHOIS answers TLD queries as whois.iana.org does.
    result = materialize_source(SOURCE, replace(domains, domains="acme.test"), collection, file_stores)
    assert result.success, failure_text(result)
    record = records(file_stores)["acme.test"]
    assert record["registration_source"] == "whois"
    assert record["whois"]["registrar"] == profile(SEED, "acme.test")["whois"]["registrar"]
    assert [q[1] for q in server_queries(sandbox) if q[0] == "whois"] == ["test", "acme.test"]
    assert sandbox.stats().get("domains.rdap", 0) == 0 and sandbox.stats()["domains.rdap_bootstrap"] == 1


def test_https_and_http_headers_are_recorded_as_answered_without_following_redirects(
    sandbox, domains, collection, file_stores
):
    result = materialize_source(SOURCE, domains, collection, file_stores)
    assert result.success, failure_text(result)
    acme, initech = records(file_stores)["acme.example"], records(file_stores)["initech.example"]
    assert acme["https"]["status"] == 200
    assert acme["https"]["security_headers"]["strict-transport-security"] == "max-age=31536000; includeSubDomains"
    assert acme["https"]["security_headers"]["x-content-type-options"] == "nosniff"
    assert acme["http"]["status"] == 301 and acme["http"]["location"] == "https://acme.example/"
    assert acme["http"]["redirects_to_https"] is True
    assert initech["http"]["status"] == 200 and initech["http"]["redirects_to_https"] is False
    assert initech["https"]["security_headers"]["strict-transport-security"] is None
    # Cookie values may be session tokens: only their names and flags are kept.
    assert "set-cookie" not in acme["https"]["headers"]
    assert [set(c) for c in acme["https"]["cookies"]] == [{"name", "secure", "httponly", "samesite"}]
    assert "session=" not in json.dumps(acme)
    assert sandbox.stats()["domains.site"] == 10  # each domain's two pages once: no redirect was followed


def test_one_failing_domain_is_recorded_in_its_record_and_the_others_are_collected(
    whois_domains, collection, file_stores
):
    domains = whois_domains
    result = materialize_source(
        SOURCE, replace(domains, domains=f"acme.example;{SERVFAIL};{MALFORMED};globex.example"), collection, file_stores
    )
    assert result.success, failure_text(result)
    got = records(file_stores)
    assert list(got) == ["acme.example", SERVFAIL, MALFORMED, "globex.example"]  # DOMAINS' order
    assert got["acme.example"]["errors"] == {} and got["globex.example"]["errors"] == {}
    assert set(got[SERVFAIL]["errors"]) == {"whois", "dns_txt", "dns_dmarc", "dns_mx"}
    assert "SERVFAIL" in got[SERVFAIL]["errors"]["dns_mx"]
    assert "without an answer" in got[SERVFAIL]["errors"]["whois"]
    assert got[SERVFAIL]["https"]["status"] == 503  # a server error is an observation, not a failed lookup
    assert set(got[MALFORMED]["errors"]) == {"dns_txt", "dns_dmarc", "dns_mx"}
    assert "malformed answer" in got[MALFORMED]["errors"]["dns_txt"] and "loop" in got[MALFORMED]["errors"]["dns_txt"]
    assert got[MALFORMED]["whois"] == {"server": domains.whois_server, "registered": False}
    assert materialization_metadata(result, "domains")["lookup_errors"] == 7


def test_a_dns_server_that_never_answers_is_a_timeout_of_that_lookup(domains, collection, file_stores):
    # Each of the silent domain's three lookups waits out two rounds of the read timeout: half a second keeps the
    # test at 3 s instead of 6, and leaves the sandbox's own answers for acme.example plenty of room.
    collection = replace(collection, http_read_timeout=0.5)
    result = materialize_source(SOURCE, replace(domains, domains=f"{SILENT};acme.example"), collection, file_stores)
    assert result.success, failure_text(result)
    silent = records(file_stores)[SILENT]
    assert set(silent["errors"]) == {"dns_txt", "dns_dmarc", "dns_mx"}
    # the collection's read timeout bounds DNS waits
    assert f"no answer within {collection.http_read_timeout:g}s" in silent["errors"]["dns_txt"]
    assert silent["whois"]["registered"] is False and records(file_stores)["acme.example"]["errors"] == {}


def test_hostile_domain_names_are_refused_and_never_looked_up(sandbox, domains, collection, file_stores):
    hostile = [
        "../../etc",
        "a",
        "rm -rf /",
        "x" * 64 + ".example",
        "evil.example\r\nadmin",
        "1.2.3.4",
        "a" * 250 + ".com",
    ]
    result = materialize_source(
        SOURCE, replace(domains, domains=";".join(hostile + ["acme.example"])), collection, file_stores
    )
    assert result.success, failure_text(result)
    doc = json.loads(stored_file(file_stores, "domains").read_text())
    refused = [r for r in doc["data"] if not r["valid"]]
    assert [r["domain"] for r in refused] == [h.strip() for h in hostile]
    for record in refused:
        assert set(record["errors"]) == {"domain"} and "not a valid domain name" in record["errors"]["domain"]
        assert record["whois"] is record["dns"] is record["http"] is None
    assert {q[1].removeprefix("_dmarc.") for q in server_queries(sandbox)} == {"acme.example"}
    assert sandbox.stats()["domains.site"] == 2 and sandbox.stats()["domains.rdap"] == 1
    assert materialization_metadata(result, "domains")["domains_invalid"] == len(hostile)


def test_an_unreachable_web_site_is_an_error_of_those_lookups_only(domains, collection, file_stores):
    closed = f"http://127.0.0.1:{free_port()}/{{scheme}}/{{domain}}/"
    result = materialize_source(
        SOURCE, replace(domains, domains="acme.example", http_url=closed), collection, file_stores
    )
    assert result.success, failure_text(result)
    acme = records(file_stores)["acme.example"]
    assert set(acme["errors"]) == {"https", "http"} and "Connection refused" in acme["errors"]["https"]
    assert acme["whois"]["registered"] and acme["dns"]["spf"]


def test_when_every_lookup_of_every_domain_fails_the_pull_fails_naming_the_settings(domains, collection, file_stores):
    port = free_port()
    broken = replace(  # DOMAINS_WHOIS_SERVER set: WHOIS for every domain, so no registration lookup can succeed
        domains,
        dns_server=f"127.0.0.1:{port}",
        whois_server=f"127.0.0.1:{port}",
        http_url=f"http://127.0.0.1:{port}/{{domain}}/",
    )
    # Nothing listens on the port, so every DNS lookup waits out its timeout (UDP hears no refusal): 5 domains x
    # 3 lookups x 2 rounds of it. A fifth of a second is enough when no answer can come.
    result = materialize_source(SOURCE, broken, replace(collection, http_read_timeout=0.2), file_stores)
    assert not result.success
    text = failure_text(result)
    assert "every lookup of all 5 domain(s) failed" in text and "DOMAINS_DNS_SERVER" in text
    assert not stored_file(file_stores, "domains").exists()


def test_an_unusable_dns_server_setting_fails_before_any_lookup(sandbox, domains, collection, file_stores):
    result = materialize_source(SOURCE, replace(domains, dns_server="127.0.0.1:99999"), collection, file_stores)
    assert not result.success
    assert "DOMAINS_DNS_SERVER: port in '127.0.0.1:99999' must be 1-65535" in failure_text(result)
    assert server_queries(sandbox) == []


def test_without_a_dns_server_setting_the_nameservers_of_resolv_conf_are_asked(tmp_path):
    from secmetrics_dagster.sources.domains.resolver import system_dns_servers

    resolv = tmp_path / "resolv.conf"
    resolv.write_text(
        "# generated\nsearch corp.example\nnameserver 127.0.0.53\noptions edns0\nnameserver fe80::1%eth0\n"
    )
    assert system_dns_servers(str(resolv)) == [("127.0.0.53", 53), ("fe80::1%eth0", 53)]
    assert system_dns_servers(str(tmp_path / "missing")) == []


def test_the_dns_and_whois_listeners_close_when_the_sandbox_stops():
    import socket

    from secmetrics_dagster.sandbox import Sandbox

    box = Sandbox(seed=SEED, token=SANDBOX_TOKEN).start()
    whois_host, whois_port = requests.get(f"{box.url}/domains/servers").json()["whois"].rsplit(":", 1)
    socket.create_connection((whois_host, int(whois_port)), timeout=2).close()  # listening while the sandbox runs
    box.stop()
    with pytest.raises(OSError):
        socket.create_connection((whois_host, int(whois_port)), timeout=2).close()
