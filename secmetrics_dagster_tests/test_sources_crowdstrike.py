"""CrowdStrike Falcon end to end: the real falconpy against the sandbox -> pull -> spool -> the stores (all four
where a test compares or needs them: the end-to-end test, the S3 backup, a resumed cursor; the file store otherwise).

The sandbox answers token requests with X-Cs-Region, which makes falconpy switch to a public CrowdStrike host; so
that a regression can never reach it, every test here routes https through a dead local proxy (`no_way_out`).
"""

import json
import logging
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import dagster as dg
import pytest
import requests
import requests.adapters

from secmetrics_dagster.collection import AuthError, CollectionError, ConfigError, HttpSettings, RunContext, Spool
from secmetrics_dagster.sandbox import CrowdStrikeVolume, Fault, Sandbox
from secmetrics_dagster.sources import crowdstrike as falcon_source
from secmetrics_dagster.sources.base import Pull
from secmetrics_dagster.sources.crowdstrike import (
    DEFAULT_SPOTLIGHT_FILTER,
    DEVICES,
    MAX_PAGE,
    SPOTLIGHT,
    CrowdStrikeResource,
    FalconClient,
    resolve_base_url,
)
from secmetrics_dagster.sources.crowdstrike.api import followed_cloud
from secmetrics_dagster.sources.crowdstrike.client import CloudSession
from secmetrics_dagster.sources.crowdstrike.paging import host_id_batches

from .conftest import SANDBOX_TOKEN
from .harness import materialize_source
from .helpers import duck_rows, failure_text, log_text, materialization_metadata, pg_rows, replace, stored_file

HOSTS, VULNS = 23, 61
TAGS = ["crowdstrike_hosts", "crowdstrike_vulnerabilities", "crowdstrike_zero_trust_assessment"]
STORES = ("file", "s3", "postgres", "duckdb")


@pytest.fixture(autouse=True)
def no_way_out(monkeypatch):
    """https to anywhere goes to a closed local port: a base URL switched to a public cloud fails, it never leaves."""
    for name in ("NO_PROXY", "no_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")


def falcon_box(**volume):
    volume = {"hosts": HOSTS, "vulnerabilities": VULNS, "region": "us-2", **volume}
    return Sandbox(seed=11, token=SANDBOX_TOKEN, crowdstrike=CrowdStrikeVolume(**volume))


@pytest.fixture
def sandbox():
    with falcon_box() as box:
        yield box


@pytest.fixture
def falcon(sandbox) -> CrowdStrikeResource:
    # Small pages and batches so a few dozen records still take several pages, batches and threads.
    return CrowdStrikeResource(
        client_id="sandbox-client",
        client_secret=SANDBOX_TOKEN,
        base_url=sandbox.url,
        spotlight_limit=7,
        hosts_limit=10,
        details_batch=4,
        zta_batch=5,
        workers=3,
    )


def run(falcon, collection, stores, instance=None, selection=None):
    return materialize_source(falcon_source.SOURCE, falcon, collection, stores, instance=instance, selection=selection)


def file_records(stores, tag) -> list[dict]:
    path = stored_file(stores, tag, "acme")
    return json.loads(path.read_text())["data"]


def store_ids(stores, s3_client, pg_conn, tag, key) -> dict[str, list[str]]:
    backup = json.loads(s3_client.get_object(Bucket=stores.s3_bucket, Key=f"backup/{tag}/acme.json")["Body"].read())
    return {
        "file": sorted(r[key] for r in file_records(stores, tag)),
        "s3": sorted(r[key] for r in backup["data"]),
        "postgres": sorted(row[2][key] for row in pg_rows(pg_conn, stores.postgres_schema, f"{tag}_latest")),
        "duckdb": sorted(row[2][key] for row in duck_rows(stores.duckdb_path, f"{tag}_latest")),
    }


def sandbox_truth(sandbox) -> dict[str, list[str]]:
    """What the sandbox holds, read with plain requests (independent of falconpy and of the collector)."""
    token = requests.post(
        f"{sandbox.url}/oauth2/token", data={"client_id": "sandbox-client", "client_secret": SANDBOX_TOKEN}
    ).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    hosts = requests.get(f"{sandbox.url}/devices/queries/devices/v1", params={"limit": 5000}, headers=headers).json()
    vulns = requests.get(
        f"{sandbox.url}/spotlight/combined/vulnerabilities/v1",
        headers=headers,
        params={"filter": DEFAULT_SPOTLIGHT_FILTER, "limit": 5000},
    ).json()
    zta = requests.get(
        f"{sandbox.url}/zero-trust-assessment/entities/assessments/v1",
        headers=headers,
        params={"ids": hosts["resources"]},
    ).json()
    return {
        "crowdstrike_hosts": sorted(hosts["resources"]),
        "crowdstrike_vulnerabilities": sorted(v["id"] for v in vulns["resources"]),
        "crowdstrike_zero_trust_assessment": sorted(a["aid"] for a in zta["resources"]),
    }


KEYS = {
    "crowdstrike_hosts": "device_id",
    "crowdstrike_vulnerabilities": "id",
    "crowdstrike_zero_trust_assessment": "aid",
}


# ------------------------------------------------------------------------------------------ the data


def test_every_falcon_asset_lands_in_all_four_stores_with_exactly_the_sandbox_records(
    sandbox, falcon, collection, all_stores, s3_client, pg_conn
):
    result = run(falcon, collection, all_stores)
    assert result.success, failure_text(result)
    truth = sandbox_truth(sandbox)
    assert [len(truth[tag]) for tag in TAGS] == [HOSTS, VULNS, HOSTS]
    for tag in TAGS:
        assert store_ids(all_stores, s3_client, pg_conn, tag, KEYS[tag]) == dict.fromkeys(STORES, truth[tag]), tag
        assert materialization_metadata(result, tag)["records"] == len(truth[tag])
    assert materialization_metadata(result, "crowdstrike_hosts")["expected_total"] == HOSTS
    vuln = file_records(all_stores, "crowdstrike_vulnerabilities")[0]
    assert {"cve", "host_info", "remediation"} <= set(vuln) and vuln["cve"]["base_score"] > 0  # the three facets


def test_each_host_is_fetched_once_even_when_an_id_page_is_served_twice(sandbox, falcon, collection, file_stores):
    sandbox.add_fault(Fault(route="crowdstrike.devices_scroll", kind="repeat", times=1, after=1))
    result = run(falcon, collection, file_stores, selection=["crowdstrike_hosts"])
    assert result.success, failure_text(result)
    ids = [h["device_id"] for h in file_records(file_stores, "crowdstrike_hosts")]
    assert len(ids) == len(set(ids)) == HOSTS
    # id pages of 10, 10, 3 in detail batches of 4: 3 + 3 + 1 requests, none for the replayed page
    assert sandbox.stats()["crowdstrike.device_details"] == 7
    assert materialization_metadata(result, "crowdstrike_hosts")["http_repeated_pages"] == 1


def test_host_ids_are_paged_past_10000_hosts_with_the_scroll_query(tmp_path):
    # The offset query stops at 10,000 hosts with a 400 (falconpy's samples/hosts/offset_vs_token.py).
    hosts = 10_003
    with falcon_box(hosts=hosts, vulnerabilities=0) as box:
        falcon = CrowdStrikeResource(
            client_id="sandbox-client", client_secret=SANDBOX_TOKEN, base_url=box.url, details_batch=MAX_PAGE
        )
        spool = Spool(RunContext("crowdstrike_hosts", "acme"), tmp_path)
        with FalconClient(falcon, HttpSettings()) as client:
            batches = list(host_id_batches(Pull(falcon, client, spool, {}, logging.getLogger(__name__)), client))
        spool.discard()
    ids = [i for batch in batches for i in batch]
    assert len(ids) == len(set(ids)) == hosts


def test_a_host_count_short_of_the_reported_total_fails_and_stores_nothing(
    sandbox, falcon, collection, all_stores, s3_client
):
    sandbox.add_fault(Fault(route="crowdstrike.device_details", kind="short", times=1))
    result = run(falcon, collection, all_stores, selection=["crowdstrike_hosts"])
    assert not result.success
    assert f"reported {HOSTS} records but {HOSTS - 1} arrived" in failure_text(result)
    assert (
        s3_client.list_objects_v2(Bucket=all_stores.s3_bucket, Prefix="backup/crowdstrike_hosts").get("KeyCount") == 0
    )
    assert not stored_file(all_stores, "crowdstrike_hosts", "acme").exists()


def test_a_host_id_page_short_once_before_the_total_is_asked_for_again_and_every_host_arrives(
    sandbox, falcon, collection, file_stores
):
    # The "short" fault leaves the last id out of the first scroll page; its pointer still moves past it.
    sandbox.add_fault(Fault(route="crowdstrike.devices_scroll", kind="short", times=1))
    result = run(falcon, collection, file_stores, selection=["crowdstrike_hosts"])
    assert result.success, failure_text(result)
    ids = [h["device_id"] for h in file_records(file_stores, "crowdstrike_hosts")]
    assert len(ids) == len(set(ids)) == HOSTS
    assert materialization_metadata(result, "crowdstrike_hosts")["http_short_pages"] == 0
    # pages of 10, 10, 3 and the first asked for again; the last (3 of 10, the total reached) is not
    assert sandbox.stats()["crowdstrike.devices_scroll"] == 4


def test_a_host_id_page_short_twice_is_warned_about_and_the_total_fails_the_pull(
    sandbox, falcon, collection, file_stores
):
    sandbox.add_fault(Fault(route="crowdstrike.devices_scroll", kind="short", times=2))
    instance = dg.DagsterInstance.ephemeral()
    result = run(falcon, collection, file_stores, instance=instance, selection=["crowdstrike_hosts"])
    assert not result.success
    assert f"reported {HOSTS} records but {HOSTS - 1} arrived" in failure_text(result)
    warning = next(line for line in log_text(instance, result).splitlines() if "were asked for" in line)
    assert "/devices/queries/devices-scroll/v1 returned 9 records where 10 were asked for" in warning
    assert "http_short_pages" in warning


def test_a_spotlight_page_short_once_mid_listing_is_asked_for_again_with_its_cursor(
    sandbox, falcon, collection, file_stores
):
    sandbox.add_fault(Fault(route="crowdstrike.spotlight", kind="short", times=1, after=1))
    result = run(falcon, collection, file_stores, selection=["crowdstrike_vulnerabilities"])
    assert result.success, failure_text(result)
    ids = [v["id"] for v in file_records(file_stores, "crowdstrike_vulnerabilities")]
    assert len(ids) == len(set(ids)) == VULNS
    md = materialization_metadata(result, "crowdstrike_vulnerabilities")
    assert md["http_short_pages"] == 0 and md["reported_total"] == VULNS
    # nine pages of 7 (the last: 5, no `after`, not asked again) and the second asked for again
    assert sandbox.stats()["crowdstrike.spotlight"] == math.ceil(VULNS / 7) + 1


def test_a_spotlight_page_short_twice_is_counted_and_record_count_stable_warns(
    sandbox, falcon, collection, file_stores
):
    # The second page short, and short again when asked again (the third request); the pull goes on past it.
    sandbox.add_fault(Fault(route="crowdstrike.spotlight", kind="short", times=2, after=1))
    result = materialize_source(
        falcon_source.SOURCE, falcon, collection, file_stores, selection="crowdstrike_vulnerabilities", checks=True
    )
    assert result.success, failure_text(result)
    md = materialization_metadata(result, "crowdstrike_vulnerabilities")
    assert (md["records"], md["http_short_pages"]) == (VULNS - 1, 1)
    stable = next(e for e in result.get_asset_check_evaluations() if e.check_name == "record_count_stable")
    assert not stable.passed and stable.severity == dg.AssetCheckSeverity.WARN
    assert stable.metadata["short_pages"].value == 1 and stable.metadata["reported_total"].value == VULNS


def test_zero_trust_assessments_are_fetched_for_the_hosts_of_the_upstream_asset(
    sandbox, falcon, collection, file_stores
):
    instance = dg.DagsterInstance.ephemeral()
    first = run(falcon, collection, file_stores, instance=instance, selection=["crowdstrike_hosts"])
    assert first.success, failure_text(first)
    sandbox.reset_stats()
    result = run(falcon, collection, file_stores, instance=instance, selection=["crowdstrike_zero_trust_assessment"])
    assert result.success, failure_text(result)
    hosts = sorted(h["device_id"] for h in file_records(file_stores, "crowdstrike_hosts"))
    assert sorted(a["aid"] for a in file_records(file_stores, "crowdstrike_zero_trust_assessment")) == hosts
    stats = sandbox.stats()
    assert "crowdstrike.devices_scroll" not in stats and stats["crowdstrike.zta"] == math.ceil(HOSTS / 5)


# ------------------------------------------------------------------------------------------ the token


def test_a_token_refused_mid_pull_is_renewed_and_the_pull_completes(collection, file_stores):
    with falcon_box(token_uses=3) as box:  # every token stops working after three calls
        falcon = CrowdStrikeResource(
            client_id="sandbox-client", client_secret=SANDBOX_TOKEN, base_url=box.url, spotlight_limit=7
        )
        result = run(falcon, collection, file_stores, selection=["crowdstrike_vulnerabilities"])
        assert result.success, failure_text(result)
        ids = [v["id"] for v in file_records(file_stores, "crowdstrike_vulnerabilities")]
        assert len(ids) == len(set(ids)) == VULNS
        pages = math.ceil(VULNS / 7)
        assert box.stats()["crowdstrike.token"] == math.ceil(pages / 3)
        assert (
            materialization_metadata(result, "crowdstrike_vulnerabilities")["http_retries"] == math.ceil(pages / 3) - 1
        )


def test_tokens_are_renewed_ahead_of_expiry_by_one_thread_and_no_call_is_refused(collection, file_stores):
    # Tokens live 2 s (`expires_in`, enforced by the sandbox) and every request takes 200 ms: 80 detail batches on
    # four workers take at least 4 s, two whole token lifetimes and more.
    hosts, page, batch, workers = 320, 80, 4, 4
    volume = CrowdStrikeVolume(hosts=hosts, vulnerabilities=0, token_ttl=2)
    with Sandbox(seed=11, token=SANDBOX_TOKEN, latency_ms=200, crowdstrike=volume) as box:
        falcon = CrowdStrikeResource(
            client_id="sandbox-client",
            client_secret=SANDBOX_TOKEN,
            base_url=box.url,
            hosts_limit=page,
            details_batch=batch,
            workers=workers,
        )
        started = time.monotonic()
        result = run(falcon, collection, file_stores, selection=["crowdstrike_hosts"])
        elapsed = time.monotonic() - started
        assert result.success, failure_text(result)
        stats = box.stats()
    # Zero 401s: a refused call is asked again, so each would show here as one request more than the pages need.
    assert (stats["crowdstrike.devices_scroll"], stats["crowdstrike.device_details"]) == (hosts // page, hosts // batch)
    assert materialization_metadata(result, "crowdstrike_hosts")["http_retries"] == 0
    # One token request per renewal (at half a 2 s lifetime), not one per thread or per call (there were 84 calls).
    assert 4 <= stats["crowdstrike.token"] <= elapsed / 1.0 + 2


def test_falconpy_keeps_the_configured_base_url_when_the_token_answer_names_a_region(collection, file_stores):
    # Every token is refused after one call, so each page after the first follows a new login, each answer with
    # X-Cs-Region eu-1: every call would go to api.eu-1.crowdstrike.com (a dead proxy here) if the URL followed it.
    with falcon_box(region="eu-1", token_uses=1) as box:
        falcon = CrowdStrikeResource(
            client_id="sandbox-client", client_secret=SANDBOX_TOKEN, base_url=box.url, spotlight_limit=20
        )
        result = run(falcon, collection, file_stores, selection=["crowdstrike_vulnerabilities"])
        assert result.success, failure_text(result)
        stats = box.stats()
        pages = math.ceil(VULNS / 20)
        assert (stats["crowdstrike.token"], stats["crowdstrike.spotlight"]) == (pages, 2 * pages - 1)
        assert materialization_metadata(result, "crowdstrike_vulnerabilities")["records"] == VULNS


def test_the_falconpy_client_stays_on_the_sandbox_url_after_login(sandbox, falcon):
    client = FalconClient(falcon, HttpSettings())
    with client:
        client.call(SPOTLIGHT, filter=DEFAULT_SPOTLIGHT_FILTER, limit=1)
        service = client.services()["SpotlightVulnerabilities"]
        assert client.auth.base_url == sandbox.url and service.base_url == sandbox.url


US1, EU1, USGOV2 = (
    "https://api.crowdstrike.com",
    "https://api.eu-1.crowdstrike.com",
    "https://api.us-gov-2.crowdstrike.mil",
)


class Rerouted(requests.adapters.HTTPAdapter):
    """Mounted on a session for one official cloud: what the session addressed there (and let through) goes to a
    local server instead, directly, so nothing leaves the machine; `addressed` records the URLs as sent."""

    def __init__(self, local: str):
        super().__init__()
        self.local = local
        self.addressed: list[str] = []

    def send(self, request, **kwargs):
        self.addressed.append(request.url)
        parts = urlsplit(request.url)
        request = request.copy()
        request.url = self.local + parts.path + (f"?{parts.query}" if parts.query else "")
        return super().send(request, **{**kwargs, "proxies": {}})


def official_client(local: str, *clouds: str) -> tuple[FalconClient, dict[str, Rerouted]]:
    """A FalconClient configured for us-1, whose session sends what it addresses to `clouds` to `local`."""
    falcon = CrowdStrikeResource(client_id="sandbox-client", client_secret=SANDBOX_TOKEN, base_url="us-1")
    client = FalconClient(falcon, HttpSettings(max_retries=0))
    routes = {cloud: Rerouted(local) for cloud in clouds}
    for cloud, adapter in routes.items():
        client.session.mount(cloud, adapter)
    return client, routes


@pytest.mark.parametrize(
    "url, followed",
    [
        (US1, True),
        ("https://api.us-2.crowdstrike.com", True),
        (EU1 + "/", True),
        ("https://API.LAGGAR.GCW.CROWDSTRIKE.COM", True),
        (USGOV2, False),  # in falconpy's BaseURL, not a cloud a pull moves to
        ("https://api.us-3.crowdstrike.com", False),
        ("http://api.crowdstrike.com", False),
        ("https://api.crowdstrike.com:8443", False),
        ("https://api.crowdstrike.com/proxy", False),
        ("https://user@api.crowdstrike.com", False),
        ("https://api.crowdstrike.com.example.net", False),
        ("https://falcon-proxy.corp.example", False),
        ("http://127.0.0.1:8800", False),
        (None, False),
    ],
)
def test_only_crowdstrikes_own_cloud_hosts_are_followed(url, followed):
    assert followed_cloud(url) is followed


def test_the_session_moves_its_origin_only_from_one_crowdstrike_cloud_to_another():
    session = CloudSession("CrowdStrike Falcon", US1)
    with pytest.raises(CollectionError, match="refused to send a request to https://api.eu-1.crowdstrike.com"):
        session.get(EU1 + "/spotlight/combined/vulnerabilities/v1")
    session.move_to(EU1)
    with pytest.raises(CollectionError, match="refused to send a request to https://api.crowdstrike.com"):
        session.get(US1 + "/spotlight/combined/vulnerabilities/v1")
    with pytest.raises(requests.ConnectionError):  # let through: it reaches the (dead) proxy of no_way_out
        session.get(EU1 + "/spotlight/combined/vulnerabilities/v1", timeout=2)
    for elsewhere in (USGOV2, "https://falcon.attacker.example", "http://127.0.0.1:9"):
        with pytest.raises(CollectionError, match="refused to move"):
            session.move_to(elsewhere)
        assert session.base_url == EU1
    custom = CloudSession("CrowdStrike Falcon", "http://127.0.0.1:8800")
    with pytest.raises(CollectionError, match="refused to move"):
        custom.move_to(US1)  # a custom base URL never follows a region
    assert custom.base_url == "http://127.0.0.1:8800"


def test_a_token_answer_naming_another_crowdstrike_cloud_moves_the_requests_and_the_session_there():
    # FALCON_BASE_URL=us-1, and the token answer (the sandbox's, reached through the rerouting adapter) names eu-1.
    with falcon_box(region="eu-1") as box:
        client, routes = official_client(box.url, US1, EU1)
        with client:
            body = client.call(SPOTLIGHT, filter=DEFAULT_SPOTLIGHT_FILTER, limit=5)
            assert len(body["resources"]) == 5
            assert client.token.base_url == client.session.base_url == client.auth.base_url == EU1
            assert client.services()["SpotlightVulnerabilities"].base_url == EU1
            with pytest.raises(CollectionError, match="refused to send a request to https://api.crowdstrike.com"):
                client.session.get(US1 + "/oauth2/token")
        stats = box.stats()
    assert [urlsplit(u).path for u in routes[US1].addressed] == ["/oauth2/token"]
    assert [urlsplit(u).path for u in routes[EU1].addressed] == [
        "/spotlight/combined/vulnerabilities/v1",
        "/oauth2/revoke",  # the logout goes to the cloud the token belongs to
    ]
    assert (stats["crowdstrike.token"], stats["crowdstrike.spotlight"]) == (1, 1)


class _TokenAnswer(BaseHTTPRequestHandler):
    """A Falcon token answer (201, expires_in, X-Cs-Region) naming the cloud in the server's `region`."""

    def do_POST(self):  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps({"access_token": "fake-token", "expires_in": 1799, "token_type": "bearer"}).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Cs-Region", self.server.region)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("region", ["us-gov-2", "us-3"])
def test_a_token_answer_naming_a_cloud_outside_the_followed_ones_leaves_the_pull_on_its_cloud(region, caplog):
    # falconpy moves OAuth2's base_url to api.us-gov-2.crowdstrike.mil / api.us-3.crowdstrike.com (its BaseURL enum).
    server = ThreadingHTTPServer(("127.0.0.1", 0), _TokenAnswer)
    server.region = region
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client, routes = official_client(f"http://127.0.0.1:{server.server_port}", US1)
        with caplog.at_level(logging.WARNING):
            services = client.services()
        assert client.token.base_url == client.session.base_url == client.auth.base_url == US1
        assert all(service.base_url == US1 for service in services.values())
        assert f"names the cloud {region}" in caplog.text and "does not move to" in caplog.text
        client.close()
    finally:
        server.shutdown()
        server.server_close()
    assert [urlsplit(u).path for u in routes[US1].addressed] == ["/oauth2/token"]


@pytest.mark.parametrize(
    "value, url",
    [
        (None, "https://api.crowdstrike.com"),
        ("us-1", "https://api.crowdstrike.com"),
        ("US-2", "https://api.us-2.crowdstrike.com"),
        ("eu-1", "https://api.eu-1.crowdstrike.com"),
        ("us-gov-1", "https://api.laggar.gcw.crowdstrike.com"),
        ("https://falcon-proxy.corp.example/", "https://falcon-proxy.corp.example"),
        ("http://127.0.0.1:8800", "http://127.0.0.1:8800"),
        ("api.eu-1.crowdstrike.com", "https://api.eu-1.crowdstrike.com"),
    ],
)
def test_region_names_and_urls_become_the_official_api_hosts_without_a_request(value, url):
    assert resolve_base_url(value) == url
    with FalconClient(
        CrowdStrikeResource(client_id="id", client_secret="secret", base_url=value or "us-1"), HttpSettings()
    ) as client:
        assert client.token.base_url == url and client.stats.requests == 0
        # a configured cloud may follow falconpy's region discovery; a URL of one's own never does
        assert client.token.follow_region == url.startswith("https://api.")


def test_an_unknown_region_is_refused_naming_the_variable():
    with pytest.raises(ConfigError, match="FALCON_BASE_URL 'eu-3' is neither a Falcon region"):
        resolve_base_url("eu-3")


def test_a_proxy_carries_every_request(sandbox, falcon, collection, file_stores):
    # The sandbox doubles as an HTTP proxy: it answers absolute-form requests for any host.
    proxied = replace(falcon, base_url="http://falcon-api.invalid", proxy=sandbox.url)
    result = run(proxied, collection, file_stores, selection=["crowdstrike_hosts"])
    assert result.success, failure_text(result)
    assert materialization_metadata(result, "crowdstrike_hosts")["records"] == HOSTS


# ------------------------------------------------------------------------------- rate limits, faults


def test_429_with_x_ratelimit_retryafter_is_retried_and_counted(sandbox, falcon, collection, file_stores):
    sandbox.add_fault(Fault(route="crowdstrike.spotlight", kind="429", times=2, after=2, retry_after=0))
    result = run(falcon, collection, file_stores, selection=["crowdstrike_vulnerabilities"])
    assert result.success, failure_text(result)
    md = materialization_metadata(result, "crowdstrike_vulnerabilities")
    assert (md["records"], md["http_throttled"], md["http_retries"]) == (VULNS, 2, 2)


def test_429_waits_until_the_epoch_in_x_ratelimit_retryafter(sandbox, falcon):
    # Retry-After says 7 s and the backoff would be 50 s or more: only X-Ratelimit-Retryafter (next second) fits.
    sandbox.add_fault(Fault(route="crowdstrike.spotlight", kind="429", times=1, retry_after=7))
    sleeps = []
    client = FalconClient(falcon, HttpSettings(backoff_base=100, max_total_wait=1000), sleep=sleeps.append)
    with client:
        client.call(SPOTLIGHT, filter=DEFAULT_SPOTLIGHT_FILTER, limit=1)
    assert len(sleeps) == 1 and 0 <= sleeps[0] <= 1
    assert client.stats.throttled == 1 and client.stats.retries == 1


def test_requests_slow_down_before_the_rate_limit_runs_out(collection, file_stores):
    # 20 requests per second; the pull needs 31. Run flat out it would be refused with 429 after about 20.
    with falcon_box(rate_limit=20, rate_window=1) as box:
        falcon = CrowdStrikeResource(
            client_id="sandbox-client",
            client_secret=SANDBOX_TOKEN,
            base_url=box.url,
            spotlight_limit=2,
            workers=1,
            rate_limit_window=1.0,
        )
        result = run(falcon, collection, file_stores, selection=["crowdstrike_vulnerabilities"])
        assert result.success, failure_text(result)
        md = materialization_metadata(result, "crowdstrike_vulnerabilities")
        assert md["records"] == VULNS and md["http_throttled"] == 0 and md["http_paced_seconds"] > 0


@pytest.mark.parametrize("kind", ["500", "timeout", "malformed", "truncated"])
def test_transient_faults_through_falconpy_are_retried_and_give_the_exact_records(
    sandbox, falcon, collection, file_stores, kind
):
    sandbox.add_fault(Fault(route="crowdstrike.spotlight", kind=kind, times=1, after=2, delay=2.0))
    result = run(falcon, collection, file_stores, selection=["crowdstrike_vulnerabilities"])
    assert result.success, failure_text(result)
    md = materialization_metadata(result, "crowdstrike_vulnerabilities")
    assert (md["records"], md["http_retries"]) == (VULNS, 1)
    ids = [v["id"] for v in file_records(file_stores, "crowdstrike_vulnerabilities")]
    assert len(set(ids)) == VULNS


def test_a_body_that_stays_malformed_fails_naming_the_endpoint(sandbox, falcon, collection, file_stores):
    sandbox.add_fault(Fault(route="crowdstrike.spotlight", kind="malformed", times=0))
    result = run(falcon, collection, file_stores, selection=["crowdstrike_vulnerabilities"])
    assert not result.success
    text = failure_text(result)
    assert (
        "CrowdStrike Falcon: GET" in text and "/spotlight/combined/vulnerabilities/v1 failed after 3 attempts" in text
    )
    assert "malformed body; falconpy reported" in text


def test_an_expired_cursor_resumes_from_the_watermark_without_duplicates_or_gaps(
    sandbox, falcon, collection, all_stores, s3_client, pg_conn
):
    # Every `after` token dies after two pages; seven per page over timestamps shared by three records puts
    # each restart in the middle of an instant.
    with falcon_box(cursor_pages=2) as box:
        result = run(
            replace(falcon, base_url=box.url), collection, all_stores, selection=["crowdstrike_vulnerabilities"]
        )
        assert result.success, failure_text(result)
        truth = sandbox_truth(box)["crowdstrike_vulnerabilities"]
        assert store_ids(all_stores, s3_client, pg_conn, "crowdstrike_vulnerabilities", "id") == dict.fromkeys(
            STORES, truth
        )
        assert len(truth) == VULNS
        assert box.stats()["crowdstrike.spotlight"] > math.ceil(VULNS / 7)  # it did restart


def test_a_404_that_is_not_an_expired_cursor_fails_the_pull_naming_it(sandbox, falcon, collection, file_stores):
    # Only Falcon's documented expiry answer restarts the query; any other refusal of a page is a failure.
    sandbox.add_fault(Fault(route="crowdstrike.spotlight", kind="404", times=0, after=1))
    result = run(falcon, collection, file_stores, selection=["crowdstrike_vulnerabilities"])
    assert not result.success
    assert "/spotlight/combined/vulnerabilities/v1 failed with HTTP 404: Not Found" in failure_text(result)
    assert sandbox.stats()["crowdstrike.spotlight"] == 2  # no restart from the watermark


# --------------------------------------------------------------------------------------------- errors


def test_refused_credentials_fail_naming_both_variables_and_never_the_secret(sandbox, falcon, collection, file_stores):
    result = run(
        replace(falcon, client_secret="wrong-secret-value-42"), collection, file_stores, selection=["crowdstrike_hosts"]
    )
    assert not result.success
    text = failure_text(result)
    assert "POST" in text and "/oauth2/token was refused with HTTP 403 (Failed to issue access token" in text
    assert "Check FALCON_CLIENT_ID and FALCON_SECRET" in text and "wrong-secret-value-42" not in text


def test_a_missing_scope_fails_naming_the_client_and_the_scope(sandbox, falcon, collection, file_stores):
    sandbox.add_fault(Fault(route="crowdstrike.spotlight", kind="403", times=0))
    result = run(falcon, collection, file_stores, selection=["crowdstrike_vulnerabilities"])
    assert not result.success
    text = failure_text(result)
    assert "/spotlight/combined/vulnerabilities/v1 was refused with HTTP 403" in text
    assert "FALCON_CLIENT_ID has the scope 'Vulnerabilities: Read'" in text


def test_a_token_refused_again_after_renewal_fails_naming_the_variables(sandbox, falcon):
    sandbox.add_fault(Fault(route="crowdstrike.devices_scroll", kind="401", times=0))
    client = FalconClient(falcon, HttpSettings(max_retries=3, backoff_base=0.01))
    with pytest.raises(AuthError, match="HTTP 401 .* even with a new token. Check FALCON_CLIENT_ID and FALCON_SECRET"):
        with client:
            client.call(DEVICES, limit=1)
    assert sandbox.stats()["crowdstrike.token"] == 2


def test_a_failed_pull_serves_the_last_backup_labelled_as_such(sandbox, falcon, collection, all_stores):
    instance = dg.DagsterInstance.ephemeral()
    first = run(falcon, collection, all_stores, instance=instance)
    assert first.success, failure_text(first)
    original = materialization_metadata(first, "crowdstrike_vulnerabilities")
    sandbox.add_fault(Fault(route="crowdstrike.spotlight", kind="500", times=0))
    second = run(falcon, collection, all_stores, instance=instance)
    assert second.success, failure_text(second)
    md = materialization_metadata(second, "crowdstrike_vulnerabilities")
    assert md["source"] == "backup" and md["records"] == VULNS and md["upload_id"] == original["upload_id"]
    assert "HTTP 500" in md["fallback_reason"]
    assert materialization_metadata(second, "crowdstrike_hosts")["source"] == "api"
    assert "serving the last S3 backup" in log_text(instance, second)


# ------------------------------------------------------------------------------------ configuration


def test_credentials_enter_config_only_as_env_var_references(monkeypatch):
    monkeypatch.setenv("FALCON_CLIENT_ID", "client-id-value")
    monkeypatch.setenv("FALCON_SECRET", "very-secret-falcon-value")
    monkeypatch.setenv("FALCON_BASE_URL", "eu-1")
    monkeypatch.setenv("FALCON_SPOTLIGHT_LIMIT", "250")
    resource = CrowdStrikeResource.from_env()
    assert isinstance(resource.client_secret, dg.EnvVar) and resource.client_secret.env_var_name == "FALCON_SECRET"
    assert isinstance(resource.client_id, dg.EnvVar) and resource.client_id.env_var_name == "FALCON_CLIENT_ID"
    assert (resource.base_url, resource.spotlight_limit, resource.spotlight_filter) == (
        "eu-1",
        250,
        DEFAULT_SPOTLIGHT_FILTER,
    )


def test_a_page_size_over_5000_is_refused_naming_the_variable(monkeypatch):
    monkeypatch.setenv("FALCON_SPOTLIGHT_LIMIT", "10000")
    with pytest.raises(ConfigError, match="FALCON_SPOTLIGHT_LIMIT must be from 1 to 5000"):
        CrowdStrikeResource.from_env()


# ------------------------------------------------------------------------------------------------ TLS


def _tls_files(directory: Path) -> tuple[Path, Path, Path]:
    """A private CA and a certificate for 127.0.0.1 signed by it (as a TLS-intercepting proxy would have)."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def name(text):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

    now = dt.datetime.now(dt.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("test CA"))
        .issuer_name(name("test CA"))
        .public_key(ca_key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(2)
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


@pytest.fixture
def https_sandbox(sandbox, tmp_path):
    """The sandbox behind a TLS terminator on 127.0.0.1; yields (https URL, CA bundle path)."""
    import socket
    import ssl

    ca, cert, key = _tls_files(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    backend = ("127.0.0.1", int(sandbox.url.rsplit(":", 1)[1]))

    def pipe(source, target):
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, target):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def serve():
        while True:
            try:
                raw, _ = listener.accept()
            except OSError:
                return
            try:
                tls = context.wrap_socket(raw, server_side=True)
            except (OSError, ssl.SSLError):
                raw.close()  # a client that refused our certificate
                continue
            upstream = socket.create_connection(backend)
            threading.Thread(target=pipe, args=(tls, upstream), daemon=True).start()
            threading.Thread(target=pipe, args=(upstream, tls), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    yield f"https://127.0.0.1:{listener.getsockname()[1]}", ca
    listener.close()


@pytest.mark.parametrize("trusted", [True, False])
def test_a_private_ca_is_trusted_through_requests_ca_bundle(https_sandbox, falcon, monkeypatch, trusted):
    url, ca = https_sandbox
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    if trusted:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca))
    else:
        monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    client = FalconClient(replace(falcon, base_url=url), HttpSettings(max_retries=0))
    with client:
        if trusted:
            body = client.call(DEVICES, limit=1)
            assert body["meta"]["pagination"]["total"] == HOSTS
        else:
            with pytest.raises(
                CollectionError,
                match="TLS certificate is not trusted .*CERTIFICATE_VERIFY_FAILED.* "
                "point REQUESTS_CA_BUNDLE at its CA bundle",
            ):
                client.call(DEVICES, limit=1)


def test_the_retryafter_epoch_is_measured_from_falcons_date_not_the_local_clock():
    import email.utils
    import time

    from secmetrics_dagster.sources.crowdstrike import FalconClient

    server_now = int(time.time()) + 7200  # Falcon's clock two hours ahead of this host's
    headers = {"x-ratelimit-retryafter": str(server_now + 5), "Date": email.utils.formatdate(server_now, usegmt=True)}
    assert FalconClient._retry_after(headers) == 5.0


def test_a_zero_trust_batch_short_once_is_asked_for_again_and_every_assessment_arrives(
    sandbox, falcon, collection, file_stores
):
    instance = dg.DagsterInstance.ephemeral()
    assert run(falcon, collection, file_stores, instance=instance, selection=["crowdstrike_hosts"]).success
    sandbox.reset_stats()
    sandbox.add_fault(Fault(route="crowdstrike.zta", kind="short", times=1))
    result = run(falcon, collection, file_stores, instance=instance, selection=["crowdstrike_zero_trust_assessment"])
    assert result.success, failure_text(result)
    hosts = sorted(h["device_id"] for h in file_records(file_stores, "crowdstrike_hosts"))
    assert sorted(a["aid"] for a in file_records(file_stores, "crowdstrike_zero_trust_assessment")) == hosts
    assert sandbox.stats()["crowdstrike.zta"] == math.ceil(HOSTS / 5) + 1
    metadata = materialization_metadata(result, "crowdstrike_zero_trust_assessment")
    assert metadata["reported_total"] == HOSTS and metadata["http_short_pages"] == 0


def test_a_zero_trust_batch_short_twice_is_counted_warned_and_compared_by_record_count_stable(
    sandbox, falcon, collection, file_stores
):
    falcon = replace(falcon, workers=1)  # one batch at a time: both short answers are the first batch's
    instance = dg.DagsterInstance.ephemeral()
    assert run(falcon, collection, file_stores, instance=instance, selection=["crowdstrike_hosts"]).success
    sandbox.add_fault(Fault(route="crowdstrike.zta", kind="short", times=2))
    result = run(falcon, collection, file_stores, instance=instance, selection=["crowdstrike_zero_trust_assessment"])
    assert result.success, failure_text(result)
    assert len(file_records(file_stores, "crowdstrike_zero_trust_assessment")) == HOSTS - 1
    metadata = materialization_metadata(result, "crowdstrike_zero_trust_assessment")
    assert metadata["reported_total"] == HOSTS and metadata["http_short_pages"] == 1
    assert "answered neither an assessment nor a 404 for 1 host(s) (twice)" in log_text(instance, result)
