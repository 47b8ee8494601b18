"""The sandbox's CrowdStrike Falcon routes over real HTTP with plain requests: tokens, hosts, Spotlight, ZTA, limits."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime, timedelta

import pytest
import requests

from secmetrics_dagster.sandbox import CrowdStrikeVolume, Fault, Sandbox
from secmetrics_dagster.sandbox.__main__ import _parser
from secmetrics_dagster.sandbox.crowdstrike import FACETS, TIES, vulnerability_created

from .helpers import module_sandbox, moment, shifted_timestamps

SECRET = "sandbox-token"
NOW = 1_800_000_000  # a fixed sandbox clock: 2027-01-15T08:00:00Z
CLOCK = datetime.fromtimestamp(NOW, UTC)
DAY = timedelta(days=1)
FILTER = "cve.id:!['']+last_seen_within:'14'"
VOLUME = CrowdStrikeVolume(hosts=30, vulnerabilities=50, region="eu-1")


sandbox, _clean = module_sandbox(5, SECRET, crowdstrike=VOLUME)


def token_for(box, secret=SECRET) -> requests.Response:
    return requests.post(
        f"{box.url}/oauth2/token", data={"client_id": "sandbox-client", "client_secret": secret}, timeout=5
    )


@pytest.fixture
def client(sandbox):
    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {token_for(sandbox).json()['access_token']}"
        yield session


def spotlight(client, box, **params):
    params.setdefault("filter", FILTER)
    return client.get(f"{box.url}/spotlight/combined/vulnerabilities/v1", params=params, timeout=5)


def all_vulnerabilities(client, box, **params) -> tuple[list[dict], int]:
    records, pages, after = [], 0, None
    while True:
        body = spotlight(client, box, **params, **({"after": after} if after else {})).json()
        records += body["resources"]
        pages += 1
        after = body["meta"]["pagination"].get("after")
        if not after:
            return records, pages


GATEWAYS = ("crowdstrike-api-gateway", "csam")  # their refusals carry no `resources` (elastic/integrations#9051)


def assert_falcon_error(response, status, message=None):
    assert response.status_code == status
    body = response.json()
    assert set(body["meta"]) >= {"query_time", "powered_by", "trace_id"}
    assert response.headers["X-Cs-Traceid"] == body["meta"]["trace_id"]
    if body["meta"]["powered_by"] in GATEWAYS:
        assert set(body) == {"meta", "errors"}
    else:
        assert set(body) == {"meta", "resources", "errors"} and body["resources"] == []
    (error,) = body["errors"]
    assert error["code"] == status and error["message"]
    if message:
        assert message in error["message"]


# ---------------------------------------------------------------------------------------------- token


def test_token_is_201_with_expires_in_and_the_region_header(sandbox):
    response = token_for(sandbox)
    assert response.status_code == 201 and response.headers["X-Cs-Region"] == "eu-1"
    body = response.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 1799 and len(body["access_token"]) > 40


def test_wrong_secret_gets_403_with_the_token_services_message(sandbox):
    refused = token_for(sandbox, "nope")
    assert_falcon_error(refused, 403, "Failed to issue access token - Client authentication failed")
    assert refused.json()["meta"]["powered_by"] == "csam"


def test_a_request_with_an_expired_token_is_401_and_counts_against_15_per_address():
    # CrowdStrike's rate-limit documentation, quoted in CrowdStrike/gofalcon#364; the 15 in CrowdStrike/falconpy#130.
    with Sandbox(seed=5, token=SECRET, crowdstrike=CrowdStrikeVolume(token_ttl=1, rate_window=60)) as box:
        token = token_for(box).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        assert requests.get(f"{box.url}/devices/queries/devices/v1", headers=headers, timeout=5).status_code == 200
        deadline = time.monotonic() + 5
        while (answer := requests.get(f"{box.url}/devices/queries/devices/v1", headers=headers, timeout=5)).ok:
            assert time.monotonic() < deadline, "the token outlived its expires_in"
        answers = [answer] + [
            requests.get(f"{box.url}/devices/queries/devices/v1", headers=headers, timeout=5) for _ in range(15)
        ]
    assert_falcon_error(answers[0], 401, "access denied, invalid bearer token")
    assert [a.headers["X-Ratelimit-Limit"] for a in answers] == ["15"] * 16
    assert [a.status_code for a in answers] == [401] * 15 + [429]
    assert answers[-1].headers["X-Ratelimit-Remaining"] == "0" and int(answers[-1].headers["X-Ratelimit-Retryafter"])


def test_every_answer_names_the_cloud_in_x_cs_region(client, sandbox):
    assert client.get(f"{sandbox.url}/devices/queries/devices/v1", timeout=5).headers["X-Cs-Region"] == "eu-1"


def test_missing_credentials_are_400(sandbox):
    assert_falcon_error(requests.post(f"{sandbox.url}/oauth2/token", data={"client_id": "x"}, timeout=5), 400)


@pytest.mark.parametrize("authorization", [None, "Bearer not-a-token", f"token {SECRET}"])
def test_data_routes_need_an_issued_bearer_token(sandbox, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    response = requests.get(f"{sandbox.url}/devices/queries/devices/v1", headers=headers, timeout=5)
    assert_falcon_error(response, 401, "access denied, invalid bearer token")


def test_a_revoked_token_stops_working(sandbox, client):
    token = client.headers["Authorization"].split()[1]
    assert requests.post(f"{sandbox.url}/oauth2/revoke", data={"token": token}, timeout=5).status_code == 200
    assert client.get(f"{sandbox.url}/devices/queries/devices/v1", timeout=5).status_code == 401


def test_a_token_is_refused_after_token_uses_calls(client):
    with Sandbox(seed=5, token=SECRET, crowdstrike=CrowdStrikeVolume(token_uses=2)) as box:
        headers = {"Authorization": f"Bearer {token_for(box).json()['access_token']}"}
        codes = [
            requests.get(f"{box.url}/devices/queries/devices/v1", headers=headers, timeout=5).status_code
            for _ in range(3)
        ]
    assert codes == [200, 200, 401]


# ---------------------------------------------------------------------------------------------- hosts


def test_device_ids_page_by_offset_with_the_total(client, sandbox):
    pages = [
        client.get(f"{sandbox.url}/devices/queries/devices/v1", params={"offset": o, "limit": 12}, timeout=5).json()
        for o in (0, 12, 24)
    ]
    assert [p["meta"]["pagination"] for p in pages] == [{"offset": o, "limit": 12, "total": 30} for o in (0, 12, 24)]
    ids = [i for p in pages for i in p["resources"]]
    assert len(ids) == len(set(ids)) == 30 and all(len(i) == 32 for i in ids)


def test_device_ids_by_offset_stop_at_10000(client, sandbox):
    # "Setting your offset to 10K or higher will produce a 400 error" (falconpy samples/hosts/offset_vs_token.py)
    response = client.get(f"{sandbox.url}/devices/queries/devices/v1", params={"offset": 10_000}, timeout=5)
    assert_falcon_error(response, 400, "offset")


def test_the_scroll_query_pages_every_host_by_the_pointer_of_the_previous_answer(client, sandbox):
    url = f"{sandbox.url}/devices/queries/devices-scroll/v1"
    pages, pointer = [], None
    for _ in range(3):
        params = {"limit": 12, **({"offset": pointer} if pointer else {})}
        pages.append(client.get(url, params=params, timeout=5).json())
        pointer = pages[-1]["meta"]["pagination"]["offset"]
    ids = [i for page in pages for i in page["resources"]]
    by_offset = client.get(f"{sandbox.url}/devices/queries/devices/v1", params={"limit": 30}, timeout=5).json()
    assert ids == by_offset["resources"] and len(set(ids)) == 30
    assert all(isinstance(p["meta"]["pagination"]["offset"], str) for p in pages)
    assert {p["meta"]["pagination"]["total"] for p in pages} == {30}


def test_a_scroll_pointer_not_issued_by_the_sandbox_is_400(client, sandbox):
    response = client.get(
        f"{sandbox.url}/devices/queries/devices-scroll/v1", params={"offset": "not-a-pointer"}, timeout=5
    )
    assert_falcon_error(response, 400)


@pytest.mark.parametrize("limit", [0, 5001, "x"])
def test_device_ids_limit_outside_1_to_5000_is_400(client, sandbox, limit):
    response = client.get(f"{sandbox.url}/devices/queries/devices/v1", params={"limit": limit}, timeout=5)
    assert_falcon_error(response, 400)


def test_device_details_come_back_for_posted_ids_with_falcon_fields(client, sandbox):
    ids = client.get(f"{sandbox.url}/devices/queries/devices/v1", params={"limit": 5}, timeout=5).json()["resources"]
    response = client.post(f"{sandbox.url}/devices/entities/devices/v2", json={"ids": ids}, timeout=5)
    body = response.json()
    assert response.status_code == 200 and body["errors"] == []
    assert [h["device_id"] for h in body["resources"]] == ids
    host = body["resources"][0]
    for name in (
        "cid",
        "hostname",
        "platform_name",
        "os_version",
        "agent_version",
        "first_seen",
        "last_seen",
        "status",
        "local_ip",
        "mac_address",
        "policies",
        "device_policies",
        "product_type_desc",
        "modified_timestamp",
    ):
        assert name in host, name
    assert datetime.fromisoformat(host["last_seen"].replace("Z", "+00:00")) > datetime.fromisoformat(
        host["first_seen"].replace("Z", "+00:00")
    )


def test_device_details_report_unknown_ids_as_404_errors(client, sandbox):
    ids = client.get(f"{sandbox.url}/devices/queries/devices/v1", params={"limit": 1}, timeout=5).json()["resources"]
    body = client.post(f"{sandbox.url}/devices/entities/devices/v2", json={"ids": ids + ["f" * 32]}, timeout=5).json()
    assert len(body["resources"]) == 1 and [e["code"] for e in body["errors"]] == [404]
    only_unknown = client.post(f"{sandbox.url}/devices/entities/devices/v2", json={"ids": ["0" * 32]}, timeout=5)
    assert only_unknown.status_code == 404


def test_more_than_5000_detail_ids_is_400(client, sandbox):
    response = client.post(f"{sandbox.url}/devices/entities/devices/v2", json={"ids": ["a" * 32] * 5001}, timeout=5)
    assert_falcon_error(response, 400, "the maximum is 5000")


# ------------------------------------------------------------------------------------------ spotlight


def test_spotlight_pages_with_after_cover_every_vulnerability_once_in_created_order(client, sandbox):
    records, pages = all_vulnerabilities(client, sandbox, limit=7)
    assert pages == 8 and len(records) == len({r["id"] for r in records}) == 50
    created = [r["created_timestamp"] for r in records]
    assert created == sorted(created) and len(set(created)) == -(-50 // TIES)  # several share an instant
    first = spotlight(client, sandbox, limit=7).json()["meta"]["pagination"]
    assert first["total"] == 50 and first["limit"] == 7 and first["after"]


@pytest.mark.parametrize(
    "route, path, cursor, params",
    [
        ("crowdstrike.spotlight", "/spotlight/combined/vulnerabilities/v1", "after", {"filter": FILTER}),
        ("crowdstrike.devices_scroll", "/devices/queries/devices-scroll/v1", "offset", {}),
    ],
)
def test_the_short_fault_leaves_one_record_out_of_a_page_whose_cursor_still_moves_past_it(
    client, sandbox, route, path, cursor, params
):
    def page(pointer=None):
        query = {**params, "limit": 7, **({cursor: pointer} if pointer else {})}
        body = client.get(f"{sandbox.url}{path}", params=query, timeout=5).json()
        ids = [r["id"] if isinstance(r, dict) else r for r in body["resources"]]
        return ids, body["meta"]["pagination"][cursor], body["meta"]["pagination"]["total"]

    _, second, _ = page()
    sandbox.add_fault(Fault(route=route, kind="short", times=1))
    short, third, total = page(second)
    again, third_again, _ = page(second)  # the same cursor asked for again: the whole page, the same next cursor
    following, _, _ = page(third)
    assert len(short) == 6 and again[:6] == short and len(again) == 7 and third_again == third
    assert again[6] not in following and total == {"after": 50, "offset": 30}[cursor]


def test_vulnerabilities_have_spotlight_fields_and_the_requested_facets(client, sandbox):
    bare = spotlight(client, sandbox, limit=1).json()["resources"][0]
    assert set(bare["cve"]) == {"id"} and "host_info" not in bare and "remediation" not in bare
    full = spotlight(client, sandbox, limit=1, facet=["cve", "host_info", "remediation"]).json()["resources"][0]
    for name in ("id", "aid", "cid", "status", "created_timestamp", "updated_timestamp", "apps", "suppression_info"):
        assert name in full, name
    assert full["id"].startswith(full["aid"] + "_")
    assert {"id", "base_score", "severity", "exploit_status", "exprt_rating", "published_date"} <= set(full["cve"])
    assert {"hostname", "platform", "os_version", "local_ip"} <= set(full["host_info"])
    assert full["remediation"]["entities"][0]["id"] == full["apps"][0]["remediation"]["ids"][0]


def test_vulnerabilities_belong_to_real_hosts(client, sandbox):
    aids = {v["aid"] for v in spotlight(client, sandbox, limit=50).json()["resources"]}
    hosts = set(
        client.get(f"{sandbox.url}/devices/queries/devices/v1", params={"limit": 100}, timeout=5).json()["resources"]
    )
    assert aids <= hosts


def test_a_created_timestamp_range_filter_returns_the_rest_of_the_list(client, sandbox):
    records, _ = all_vulnerabilities(client, sandbox, limit=50)
    mark = records[20]["created_timestamp"]
    body = spotlight(client, sandbox, limit=50, filter=f"({FILTER})+created_timestamp:>='{mark}'").json()
    expected = [r["id"] for r in records if r["created_timestamp"] >= mark]
    assert [r["id"] for r in body["resources"]] == expected and body["meta"]["pagination"]["total"] == len(expected)
    later = spotlight(client, sandbox, limit=50, filter=f"created_timestamp:>'{mark}'").json()["resources"]
    assert [r["id"] for r in later] == [r["id"] for r in records if r["created_timestamp"] > mark]


@pytest.mark.parametrize(
    "params",
    [
        {"filter": "status:'open'"},
        {"facet": "cve_details"},
        {"sort": "updated_timestamp|desc"},
        {"limit": 5001},
        {"after": "not-a-cursor"},
    ],
)
def test_unsupported_or_invalid_spotlight_queries_are_400(client, sandbox, params):
    assert_falcon_error(spotlight(client, sandbox, **params), 400)


def test_an_after_token_of_another_query_is_400(client, sandbox):
    after = spotlight(client, sandbox, limit=5).json()["meta"]["pagination"]["after"]
    response = spotlight(client, sandbox, limit=5, filter="last_seen_within:'3'", after=after)
    assert_falcon_error(response, 400, "different query")


def test_an_expired_after_token_is_404_search_context_expired(client):
    with Sandbox(seed=5, token=SECRET, crowdstrike=CrowdStrikeVolume(vulnerabilities=50, cursor_pages=2)) as box:
        box_client = requests.Session()
        box_client.headers["Authorization"] = f"Bearer {token_for(box).json()['access_token']}"
        first = spotlight(box_client, box, limit=5).json()
        second = spotlight(box_client, box, limit=5, after=first["meta"]["pagination"]["after"])
        third = spotlight(box_client, box, limit=5, after=second.json()["meta"]["pagination"]["after"])
    assert second.status_code == 200
    # Falcon's answer to an aged-out cursor (https://github.com/elastic/integrations/issues/19206)
    assert_falcon_error(third, 404, "Search context expired, 'after' key no longer valid")
    assert third.json()["meta"]["pagination"] == {"limit": 5, "total": 0, "after": ""}


def test_the_after_token_is_opaque_base64(client, sandbox):
    after = spotlight(client, sandbox, limit=5).json()["meta"]["pagination"]["after"]
    assert json.loads(base64.urlsafe_b64decode(after + "=" * (-len(after) % 4)))["version"] == "v1"


def test_a_million_vulnerabilities_are_generated_on_the_fly():
    volume = CrowdStrikeVolume(hosts=5000, vulnerabilities=1_000_000, now=NOW)
    with Sandbox(seed=1, token=SECRET, crowdstrike=volume) as box:
        with requests.Session() as session:
            session.headers["Authorization"] = f"Bearer {token_for(box).json()['access_token']}"
            first = spotlight(session, box, limit=1).json()
            assert first["meta"]["pagination"]["total"] == 1_000_000
            mark = vulnerability_created(1_000_000, 999_990, CLOCK).strftime("%Y-%m-%dT%H:%M:%SZ")
            last = spotlight(session, box, limit=5000, filter=f"created_timestamp:>='{mark}'").json()
    assert len(last["resources"]) == 10 and "after" not in last["meta"]["pagination"]
    assert last["resources"][-1]["created_timestamp"] >= mark


# ------------------------------------------------------------------------------------ zero trust


def test_zero_trust_assessments_for_ids_with_scores(client, sandbox):
    ids = client.get(f"{sandbox.url}/devices/queries/devices/v1", params={"limit": 3}, timeout=5).json()["resources"]
    body = client.get(
        f"{sandbox.url}/zero-trust-assessment/entities/assessments/v1", params={"ids": ids + ["0" * 32]}, timeout=5
    ).json()
    assert [a["aid"] for a in body["resources"]] == ids
    assessment = body["resources"][0]
    assert {
        "aid",
        "cid",
        "event_platform",
        "product_type_desc",
        "assessment",
        "assessment_items",
        "modified_time",
    } <= set(assessment)
    assert {"overall", "os", "sensor_config"} <= set(assessment["assessment"])
    assert [e["code"] for e in body["errors"]] == [404]


# --------------------------------------------------------------------------------- limits and faults


def test_every_answer_carries_the_rate_limit_and_it_counts_down():
    with Sandbox(seed=5, token=SECRET, crowdstrike=CrowdStrikeVolume(rate_limit=100, rate_window=3600)) as box:
        headers = {"Authorization": f"Bearer {token_for(box).json()['access_token']}"}
        answers = [requests.get(f"{box.url}/devices/queries/devices/v1", headers=headers, timeout=5) for _ in range(3)]
    assert [(a.headers["X-Ratelimit-Limit"], a.headers["X-Ratelimit-Remaining"]) for a in answers] == [
        ("100", "99"),
        ("100", "98"),
        ("100", "97"),
    ]


def test_past_the_rate_limit_the_answer_is_429_with_an_epoch_retryafter():
    with Sandbox(seed=5, token=SECRET, crowdstrike=CrowdStrikeVolume(rate_limit=3, rate_window=60)) as box:
        headers = {"Authorization": f"Bearer {token_for(box).json()['access_token']}"}
        answers = [requests.get(f"{box.url}/devices/queries/devices/v1", headers=headers, timeout=5) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert [a.headers["X-Ratelimit-Remaining"] for a in answers] == ["2", "1", "0", "0"]
    refused = answers[-1]
    assert_falcon_error(refused, 429, "API rate limit exceeded")
    assert refused.headers["X-Ratelimit-Limit"] == "3"
    # A sliding window (CrowdStrike/gofalcon#364): the next slot is when the first of the three leaves it.
    assert time.time() + 55 < int(refused.headers["X-Ratelimit-Retryafter"]) <= time.time() + 61


def test_a_429_fault_answers_like_falcon(client, sandbox):
    sandbox.add_fault(Fault("crowdstrike.spotlight", "429"))
    response = spotlight(client, sandbox)
    assert_falcon_error(response, 429)
    assert response.headers["X-Ratelimit-Remaining"] == "0"
    assert int(response.headers["X-Ratelimit-Retryafter"]) > time.time() - 1


@pytest.mark.parametrize("kind", ["401", "403", "500", "503"])
def test_status_faults_use_falcons_error_body(client, sandbox, kind):
    sandbox.add_fault(Fault("crowdstrike.*", kind))
    assert_falcon_error(client.get(f"{sandbox.url}/devices/queries/devices/v1", timeout=5), int(kind))


def falcon_records(seed: int, now: float, hosts: int = 5, vulnerabilities: int = 5) -> dict[str, list[dict]]:
    """Every host, vulnerability (all facets) and assessment a sandbox with this seed and clock serves."""
    volume = CrowdStrikeVolume(hosts=hosts, vulnerabilities=vulnerabilities, now=now)
    with Sandbox(seed=seed, token=SECRET, crowdstrike=volume) as box, requests.Session() as s:
        s.headers["Authorization"] = f"Bearer {token_for(box).json()['access_token']}"
        ids = s.get(f"{box.url}/devices/queries/devices/v1", params={"limit": 5000}, timeout=5).json()["resources"]
        return {
            "hosts": s.post(f"{box.url}/devices/entities/devices/v2", json={"ids": ids}, timeout=5).json()["resources"],
            "vulnerabilities": all_vulnerabilities(s, box, limit=5000, facet=list(FACETS))[0],
            "assessments": s.get(
                f"{box.url}/zero-trust-assessment/entities/assessments/v1", params={"ids": ids}, timeout=5
            ).json()["resources"],
        }


def test_same_seed_gives_identical_records():
    # Records count back from the clock: the same clock for all (two sandboxes started a second apart would differ).
    assert falcon_records(3, NOW) == falcon_records(3, NOW) and falcon_records(3, NOW) != falcon_records(4, NOW)


def test_timestamps_count_back_from_the_sandbox_clock():
    first, later = falcon_records(3, NOW, 30, 60), falcon_records(3, NOW + 86_400, 30, 60)
    # Everything is the same a day later, only every timestamp is a day later, but the CVE catalogue's own dates;
    # none is after the clock, none older than the oldest first sighting (three years before the last).
    fixed = {"published_date", "spotlight_published_date"}
    for kind, records in first.items():
        stamps = shifted_timestamps(records, later[kind], DAY, fixed, kind)
        assert len(stamps) >= len(records) and all(CLOCK - 3.3 * 365 * DAY <= t <= CLOCK for t in stamps), kind


def test_hosts_mostly_checked_in_this_week_and_vulnerabilities_close_in_and_past_their_sla():
    records = falcon_records(3, NOW, hosts=300, vulnerabilities=3000)
    seen = [moment(h["last_seen"]) for h in records["hosts"]]
    assert all(moment(h["first_seen"]) < moment(h["last_seen"]) <= CLOCK for h in records["hosts"])
    week = sum(1 for t in seen if t >= CLOCK - 7 * DAY) / len(seen)
    month = sum(1 for t in seen if t >= CLOCK - 30 * DAY) / len(seen)
    assert 0.8 < week < 0.97 and week < month < 1  # so sensor coverage (7 days) has both answers
    vulns = records["vulnerabilities"]
    created = [moment(v["created_timestamp"]) for v in vulns]
    assert created == sorted(created) and CLOCK - 400 * DAY <= created[0] and created[-1] <= CLOCK
    assert created[0] < CLOCK - 365 * DAY < CLOCK - 7 * DAY < created[-1]  # a year's window cuts the list
    for v in vulns:
        assert moment(v["created_timestamp"]) <= moment(v["updated_timestamp"]) <= CLOCK
        assert ("closed_timestamp" in v) == (v["status"] == "closed")
    critical = [v for v in vulns if v["cve"]["severity"] == "CRITICAL"]
    closed = {
        moment(v["closed_timestamp"]) - moment(v["created_timestamp"]) <= 15 * DAY
        for v in critical
        if v["status"] == "closed"
    }
    still_open = {CLOCK - moment(v["created_timestamp"]) <= 15 * DAY for v in critical if v["status"] != "closed"}
    assert closed == {True, False} and still_open == {True, False}  # within and past a 15-day SLA, both ways


def test_the_cli_has_crowdstrike_volume_flags():
    args = _parser().parse_args(["--crowdstrike-vulnerabilities", "1000", "--crowdstrike-cursor-pages", "3"])
    assert (args.crowdstrike__vulnerabilities, args.crowdstrike__cursor_pages, args.crowdstrike__hosts) == (1000, 3, 40)


def test_volume_rejects_impossible_settings():
    with pytest.raises(ValueError, match="need at least one host"):
        CrowdStrikeVolume(hosts=0, vulnerabilities=5)
    with pytest.raises(ValueError, match="region"):
        CrowdStrikeVolume(region="mars-1")


def test_without_a_clock_records_count_back_from_when_the_sandbox_starts():
    before = datetime.fromtimestamp(int(time.time()), UTC)
    with Sandbox(seed=3, token=SECRET, crowdstrike=CrowdStrikeVolume(hosts=20, vulnerabilities=30)) as box:
        after = datetime.fromtimestamp(int(time.time()), UTC)
        with requests.Session() as s:
            s.headers["Authorization"] = f"Bearer {token_for(box).json()['access_token']}"
            ids = s.get(f"{box.url}/devices/queries/devices/v1", timeout=5).json()["resources"]
            zta = s.get(f"{box.url}/zero-trust-assessment/entities/assessments/v1", params={"ids": ids}, timeout=5)
            vulns = all_vulnerabilities(s, box, limit=100)[0]
    modified = [moment(a["modified_time"]) for a in zta.json()["resources"]]
    assert before - DAY <= min(modified) and max(modified) <= after  # assessed within the day before the start
    assert before - 400 * DAY <= moment(vulns[0]["created_timestamp"]) < moment(vulns[-1]["updated_timestamp"]) <= after
