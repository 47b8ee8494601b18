"""The vendor sandbox's Snyk routes, fault injection, admin endpoints and CLI, over real HTTP with requests."""

from __future__ import annotations

import base64
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from secmetrics_dagster.sandbox import Fault, Sandbox, SnykVolume

from .helpers import module_sandbox, moment, shifted_timestamps

VERSION = "2024-10-15"
TOKEN = "sandbox-token"
VOLUME = SnykVolume(orgs=3, projects_per_org=25, issues_per_org=230, members_per_org=8)
PROJECT_ROOT = Path(__file__).resolve().parents[1]
NOW = 1_800_000_000  # a fixed sandbox clock: 2027-01-15T08:00:00Z
CLOCK = datetime.fromtimestamp(NOW, UTC)
DAY = timedelta(days=1)


sandbox, _clean = module_sandbox(42, TOKEN, snyk=VOLUME)


@pytest.fixture
def client():
    with requests.Session() as session:
        session.headers["Authorization"] = f"token {TOKEN}"
        yield session


@pytest.fixture(scope="module")
def org_ids(sandbox):
    response = requests.get(
        sandbox.url + "/rest/orgs",
        params={"version": VERSION, "limit": 100},
        headers={"Authorization": f"token {TOKEN}"},
    )
    return [org["id"] for org in response.json()["data"]]


def rest(client, sandbox, path, **params):
    params.setdefault("version", VERSION)
    return client.get(sandbox.url + "/rest" + path, params=params, timeout=5)


def paginate(client, sandbox, path, **params):
    """Follow links.next to the end; returns (records, pages)."""
    pages = [rest(client, sandbox, path, **params)]
    while True:
        assert pages[-1].status_code == 200, pages[-1].text
        next_link = pages[-1].json()["links"].get("next")
        if not next_link:
            break
        pages.append(client.get(sandbox.url + "/rest" + next_link, timeout=5))
    return [record for page in pages for record in page.json()["data"]], pages


def cursor_index(link):
    cursor = parse_qs(urlsplit(link).query)["starting_after"][0]
    assert cursor.startswith("v1.")
    return int(json.loads(base64.b64decode(cursor[3:]))["id"])


def assert_jsonapi_error(response, status, code):
    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/vnd.api+json"
    body = response.json()
    assert body["jsonapi"] == {"version": "1.0"}
    (error,) = body["errors"]
    assert error["status"] == str(status)
    assert error["code"] == code
    assert error["title"] and error["detail"] and len(error["id"]) == 36
    assert error["meta"]["links"] == [f"https://docs.snyk.io/more-info/error-catalog#{code.lower()}"]


# ------------------------------------------------------------------------------------------------ auth


def test_missing_token_gets_401_with_jsonapi_error_body(sandbox):
    response = requests.get(sandbox.url + "/rest/orgs", params={"version": VERSION}, timeout=5)
    assert_jsonapi_error(response, 401, "SNYK-0005")
    error = response.json()["errors"][0]
    assert error["title"] == "Authentication error"
    assert error["detail"] == "Authentication credentials not recognized, or user access is not provisioned."


def test_wrong_token_gets_401(sandbox):
    response = requests.get(
        sandbox.url + "/rest/orgs", params={"version": VERSION}, headers={"Authorization": "token nope"}, timeout=5
    )
    assert_jsonapi_error(response, 401, "SNYK-0005")


@pytest.mark.parametrize("scheme", ["token", "Token", "Bearer"])
def test_token_and_bearer_schemes_are_accepted(sandbox, scheme):
    response = requests.get(
        sandbox.url + "/rest/orgs",
        params={"version": VERSION},
        headers={"Authorization": f"{scheme} {TOKEN}"},
        timeout=5,
    )
    assert response.status_code == 200


def test_v1_members_without_token_gets_v1_error_body(sandbox, org_ids):
    response = requests.get(sandbox.url + f"/v1/org/{org_ids[0]}/members", timeout=5)
    assert response.status_code == 401
    assert response.json() == {"code": 401, "message": "Not authorised", "error": "Not authorised"}


# ---------------------------------------------------------------------------------------- validation


def test_rest_without_version_is_400(client, sandbox):
    response = client.get(sandbox.url + "/rest/orgs", timeout=5)
    assert_jsonapi_error(response, 400, "SNYK-OPENAPI-0001")


@pytest.mark.parametrize("version", ["2024-10-15~beta", "2023-06-01~experimental"])
def test_version_with_stability_suffix_is_accepted(client, sandbox, version):
    assert rest(client, sandbox, "/orgs", version=version).status_code == 200


@pytest.mark.parametrize("version", ["latest", "2024-10-15~alpha", "2024/10/15"])
def test_malformed_version_is_400(client, sandbox, version):
    assert_jsonapi_error(rest(client, sandbox, "/orgs", version=version), 400, "SNYK-OPENAPI-0001")


@pytest.mark.parametrize("limit", ["5", "15", "0", "110", "abc"])
def test_limit_outside_10_to_100_or_not_multiple_of_10_is_400(client, sandbox, limit):
    assert_jsonapi_error(rest(client, sandbox, "/orgs", limit=limit), 400, "SNYK-OPENAPI-0001")


@pytest.mark.parametrize("limit", [10, 50, 100])
def test_valid_limit_sizes_the_page(client, sandbox, org_ids, limit):
    response = rest(client, sandbox, f"/orgs/{org_ids[0]}/issues", limit=limit)
    assert len(response.json()["data"]) == limit


def test_unknown_org_is_404(client, sandbox):
    response = rest(client, sandbox, "/orgs/00000000-0000-4000-8000-000000000000/projects")
    assert_jsonapi_error(response, 404, "SNYK-OPENAPI-0004")


def test_invalid_cursor_is_400(client, sandbox):
    assert_jsonapi_error(rest(client, sandbox, "/orgs", starting_after="garbage"), 400, "SNYK-OPENAPI-0001")


# ---------------------------------------------------------------------------------------- pagination


def test_pagination_over_orgs_collects_every_org(client, sandbox):
    orgs, _ = paginate(client, sandbox, "/orgs")
    assert len(orgs) == VOLUME.orgs
    assert len({org["id"] for org in orgs}) == VOLUME.orgs
    assert all(org["type"] == "org" and org["attributes"]["is_personal"] is False for org in orgs)


def test_pagination_over_projects_collects_exactly_the_volume(client, sandbox, org_ids):
    seen = set()
    for org in org_ids:
        projects, pages = paginate(client, sandbox, f"/orgs/{org}/projects")
        assert len(projects) == VOLUME.projects_per_org
        assert len(pages) == 3  # 25 projects at the default limit of 10
        assert all(p["relationships"]["organization"]["data"]["id"] == org for p in projects)
        seen.update(p["id"] for p in projects)
    assert len(seen) == VOLUME.orgs * VOLUME.projects_per_org


def test_pagination_over_issues_collects_exactly_the_volume(client, sandbox, org_ids):
    seen = set()
    for org in org_ids:
        issues, pages = paginate(client, sandbox, f"/orgs/{org}/issues", limit=100)
        assert len(issues) == VOLUME.issues_per_org
        assert [len(p.json()["data"]) for p in pages] == [100, 100, 30]
        seen.update(i["id"] for i in issues)
    assert len(seen) == VOLUME.orgs * VOLUME.issues_per_org


def test_next_links_are_relative_without_rest_prefix(client, sandbox, org_ids):
    _, pages = paginate(client, sandbox, f"/orgs/{org_ids[1]}/issues", limit=50)
    links = [p.json()["links"] for p in pages]
    assert all(link["next"].startswith(f"/orgs/{org_ids[1]}/issues?") for link in links[:-1])
    assert "next" not in links[-1]
    assert "prev" not in links[0]
    assert all(link["prev"].startswith("/orgs/") for link in links[1:])
    assert not any("/rest" in value for link in links for value in link.values())


def test_links_preserve_version_limit_and_filters(client, sandbox, org_ids):
    response = rest(
        client,
        sandbox,
        f"/orgs/{org_ids[0]}/issues",
        version="2024-10-15~beta",
        limit=20,
        **{"type[0]": "package_vulnerability", "status": "open"},
    )
    query = parse_qs(urlsplit(response.json()["links"]["next"]).query)
    assert query["version"] == ["2024-10-15~beta"]
    assert query["limit"] == ["20"]
    assert query["type[0]"] == ["package_vulnerability"]
    assert query["status"] == ["open"]
    assert "%3D" in response.json()["links"]["next"]  # the cursor's base64 padding is URL-encoded


def test_cursor_is_v1_base64_json_of_last_index(client, sandbox, org_ids):
    response = rest(client, sandbox, f"/orgs/{org_ids[0]}/issues", limit=30)
    assert cursor_index(response.json()["links"]["next"]) == 29


def test_prev_link_returns_the_previous_page(client, sandbox, org_ids):
    first = rest(client, sandbox, f"/orgs/{org_ids[0]}/projects")
    second = client.get(sandbox.url + "/rest" + first.json()["links"]["next"], timeout=5)
    back = client.get(sandbox.url + "/rest" + second.json()["links"]["prev"], timeout=5)
    assert back.json()["data"] == first.json()["data"]


def test_a_million_issues_are_generated_on_the_fly(client):
    big = SnykVolume(orgs=1, projects_per_org=10, issues_per_org=1_000_000, members_per_org=1)
    with Sandbox(seed=1, token=TOKEN, snyk=big) as sb:
        org = rest(client, sb, "/orgs").json()["data"][0]["id"]
        cursor = "v1." + base64.b64encode(b'{"id":"999949"}').decode()
        last = rest(client, sb, f"/orgs/{org}/issues", limit=100, starting_after=cursor).json()
    assert len(last["data"]) == 50
    assert "next" not in last["links"]


def test_projects_meta_count_only_returns_count_without_data(client, sandbox, org_ids):
    response = rest(client, sandbox, f"/orgs/{org_ids[0]}/projects", meta_count="only")
    body = response.json()
    assert response.status_code == 200
    assert body["meta"] == {"count": VOLUME.projects_per_org}
    assert "data" not in body
    assert body["jsonapi"] == {"version": "1.0"} and "self" in body["links"]


def test_issue_records_have_snyk_shape_and_point_at_real_projects(client, sandbox, org_ids):
    projects, _ = paginate(client, sandbox, f"/orgs/{org_ids[0]}/projects", limit=100)
    issues = rest(client, sandbox, f"/orgs/{org_ids[0]}/issues", limit=100).json()["data"]
    project_ids = {p["id"] for p in projects}
    for issue in issues:
        attributes = issue["attributes"]
        assert issue["type"] == "issue"
        assert attributes["type"] == "package_vulnerability"
        assert attributes["status"] in ("open", "resolved")
        assert attributes["effective_severity_level"] in ("low", "medium", "high", "critical")
        assert attributes["problems"][0]["id"].startswith("SNYK-")
        assert attributes["coordinates"][0]["representations"][0]["dependency"]["package_name"]
        assert attributes["risk"]["score"]["model"] == "v1"
        assert issue["relationships"]["scan_item"]["data"]["id"] in project_ids
        assert issue["relationships"]["organization"]["data"] == {"id": org_ids[0], "type": "org"}


def test_members_is_a_bare_array_of_v1_users(client, sandbox, org_ids):
    response = client.get(sandbox.url + f"/v1/org/{org_ids[0]}/members", timeout=5)
    members = response.json()
    assert response.status_code == 200
    assert isinstance(members, list) and len(members) == VOLUME.members_per_org
    assert all(set(m) == {"id", "username", "name", "email", "role"} for m in members)
    assert {m["role"] for m in members} <= {"admin", "collaborator"}
    assert members[0]["role"] == "admin"


def test_include_group_admins_adds_admins(client, sandbox, org_ids):
    url = sandbox.url + f"/v1/org/{org_ids[0]}/members"
    plain = client.get(url, timeout=5).json()
    with_admins = client.get(url, params={"includeGroupAdmins": "true"}, timeout=5).json()
    extra = with_admins[len(plain) :]
    assert with_admins[: len(plain)] == plain
    assert extra and all(m["role"] == "admin" for m in extra)


# --------------------------------------------------------------------------------------- determinism


def _bodies(seed):
    # Records count back from the clock: one fixed clock (two sandboxes started a second apart would differ).
    volume = SnykVolume(orgs=2, projects_per_org=12, issues_per_org=12, now=NOW)
    with Sandbox(seed=seed, token=TOKEN, snyk=volume) as sb:
        with requests.Session() as s:
            s.headers["Authorization"] = f"token {TOKEN}"
            orgs = rest(s, sb, "/orgs")
            org = orgs.json()["data"][0]["id"]
            return [
                orgs.content,
                rest(s, sb, f"/orgs/{org}/projects").content,
                rest(s, sb, f"/orgs/{org}/issues").content,
                s.get(sb.url + f"/v1/org/{org}/members", timeout=5).content,
            ]


def test_same_seed_gives_identical_bodies():
    assert _bodies(7) == _bodies(7)


def test_different_seeds_give_different_bodies():
    assert all(a != b for a, b in zip(_bodies(7), _bodies(8)))


def _group(now: float) -> dict[str, list[dict]]:
    """Every project and issue of every org a sandbox at clock `now` serves."""
    with Sandbox(seed=5, token=TOKEN, snyk=SnykVolume(orgs=2, projects_per_org=30, issues_per_org=300, now=now)) as sb:
        with requests.Session() as s:
            s.headers["Authorization"] = f"token {TOKEN}"
            orgs = [o["id"] for o in rest(s, sb, "/orgs").json()["data"]]
            return {
                kind: [r for org in orgs for r in paginate(s, sb, f"/orgs/{org}/{kind}", limit=100)[0]]
                for kind in ("projects", "issues")
            }


def test_timestamps_count_back_from_the_sandbox_clock():
    first, again, later = _group(NOW), _group(NOW), _group(NOW + 86_400)
    assert first == again  # the same seed and clock give the same group
    for kind, records in first.items():
        # The same records a day later, only every timestamp a day later; none after the clock, none over 3 years.
        stamps = shifted_timestamps(records, later[kind], DAY, path=kind)
        assert len(stamps) >= len(records) and all(CLOCK - 3 * 365 * DAY <= t <= CLOCK for t in stamps), kind
    created = {p["id"]: moment(p["attributes"]["created"]) for p in first["projects"]}
    for issue in first["issues"]:
        attributes = issue["attributes"]
        found, updated = moment(attributes["created_at"]), moment(attributes["updated_at"])
        assert created[issue["relationships"]["scan_item"]["data"]["id"]] <= found <= updated <= CLOCK
        assert updated - found <= 180 * DAY
        if attributes["status"] == "resolved":
            assert moment(attributes["resolution"]["resolved_at"]) == updated
    ages = [CLOCK - moment(i["attributes"]["created_at"]) for i in first["issues"]]
    assert min(ages) < 30 * DAY and max(ages) > 365 * DAY  # found this month and years ago


# -------------------------------------------------------------------------------------------- faults


@pytest.mark.parametrize(
    "kind, code",
    [
        ("401", "SNYK-0005"),
        ("403", "SNYK-OPENAPI-0002"),
        ("404", "SNYK-OPENAPI-0004"),
        ("500", "SNYK-9999"),
        ("503", "SNYK-0099"),
    ],
)
def test_status_fault_answers_with_snyk_error_body(client, sandbox, kind, code):
    sandbox.add_fault(Fault("snyk.orgs", kind))
    assert_jsonapi_error(rest(client, sandbox, "/orgs"), int(kind), code)


def test_status_fault_on_v1_route_uses_v1_error_body(client, sandbox, org_ids):
    sandbox.add_fault(Fault("snyk.members", "403"))
    response = client.get(sandbox.url + f"/v1/org/{org_ids[0]}/members", timeout=5)
    assert response.status_code == 403
    assert response.json() == {"code": 403, "message": "Forbidden", "error": "Forbidden"}


def test_429_fault_sends_retry_after(client, sandbox):
    sandbox.add_fault(Fault("snyk.orgs", "429", retry_after=7))
    response = rest(client, sandbox, "/orgs")
    assert_jsonapi_error(response, 429, "SNYK-0001")
    assert response.headers["Retry-After"] == "7"


def test_timeout_fault_outlasts_the_client_read_timeout(client, sandbox):
    sandbox.add_fault(Fault("snyk.orgs", "timeout", delay=1.0))
    with pytest.raises(requests.exceptions.ReadTimeout):
        client.get(sandbox.url + "/rest/orgs", params={"version": VERSION}, timeout=(2, 0.2))
    assert rest(client, sandbox, "/orgs").status_code == 200


def test_delayed_request_does_not_block_other_requests(client, sandbox):
    sandbox.add_fault(Fault("snyk.orgs", "timeout", delay=1.0))
    slow = threading.Thread(target=lambda: requests.get(sandbox.url + "/rest/orgs", timeout=5))
    slow.start()
    while sandbox.stats().get("snyk.orgs", 0) < 1:  # the slow request has reached the server
        time.sleep(0.005)
    assert requests.get(sandbox.url + "/_sandbox/health", timeout=5).status_code == 200
    assert rest(client, sandbox, "/orgs").status_code == 200
    assert slow.is_alive()
    slow.join()


def test_stop_does_not_wait_for_a_delayed_request(client):
    sb = Sandbox(token=TOKEN).start()
    sb.add_fault(Fault("snyk.orgs", "timeout", delay=60))
    errors = []

    def call():
        try:
            requests.get(sb.url + "/rest/orgs", timeout=30)
        except requests.RequestException as exc:
            errors.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    while sb.stats().get("snyk.orgs", 0) < 1:
        time.sleep(0.005)
    started = time.monotonic()
    sb.stop()
    assert time.monotonic() - started < 3
    caller.join(timeout=5)
    assert not caller.is_alive() and errors


def test_malformed_fault_sends_200_with_unparseable_json(client, sandbox):
    sandbox.add_fault(Fault("snyk.orgs", "malformed"))
    response = rest(client, sandbox, "/orgs")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/vnd.api+json"
    with pytest.raises(ValueError):
        response.json()


def test_truncated_fault_raises_a_requests_exception(client, sandbox, org_ids):
    sandbox.add_fault(Fault("snyk.issues", "truncated"))
    with pytest.raises(requests.exceptions.RequestException):
        rest(client, sandbox, f"/orgs/{org_ids[0]}/issues", limit=100)
    assert rest(client, sandbox, f"/orgs/{org_ids[0]}/issues").status_code == 200


def test_repeat_fault_returns_the_previous_page_body(client, sandbox, org_ids):
    first = rest(client, sandbox, f"/orgs/{org_ids[2]}/issues", limit=20)
    sandbox.add_fault(Fault("snyk.issues", "repeat"))
    second = client.get(sandbox.url + "/rest" + first.json()["links"]["next"], timeout=5)
    assert second.status_code == 200
    assert second.content == first.content


def test_repeat_fault_without_previous_page_serves_normally_and_waits(client):
    with Sandbox(token=TOKEN, snyk=SnykVolume(orgs=1, issues_per_org=40)) as sb:
        sb.add_fault(Fault("snyk.issues", "repeat"))
        org = rest(client, sb, "/orgs").json()["data"][0]["id"]
        first = rest(client, sb, f"/orgs/{org}/issues")
        assert cursor_index(first.json()["links"]["next"]) == 9
        second = client.get(sb.url + "/rest" + first.json()["links"]["next"], timeout=5)
    assert second.content == first.content


def test_short_fault_drops_one_record_but_keeps_links(client, sandbox, org_ids):
    normal = rest(client, sandbox, f"/orgs/{org_ids[0]}/projects")
    sandbox.add_fault(Fault("snyk.projects", "short"))
    short = rest(client, sandbox, f"/orgs/{org_ids[0]}/projects")
    assert short.json()["data"] == normal.json()["data"][:-1]
    assert short.json()["links"] == normal.json()["links"]


def test_short_fault_drops_one_member(client, sandbox, org_ids):
    sandbox.add_fault(Fault("snyk.members", "short"))
    members = client.get(sandbox.url + f"/v1/org/{org_ids[0]}/members", timeout=5).json()
    assert len(members) == VOLUME.members_per_org - 1


def test_fault_fires_times_then_stops(client, sandbox):
    sandbox.add_fault(Fault("snyk.orgs", "500", times=2))
    assert [rest(client, sandbox, "/orgs").status_code for _ in range(3)] == [500, 500, 200]


def test_fault_with_times_zero_fires_forever(client, sandbox):
    sandbox.add_fault(Fault("snyk.orgs", "503", times=0))
    assert [rest(client, sandbox, "/orgs").status_code for _ in range(5)] == [503] * 5


def test_fault_after_lets_requests_through_first(client, sandbox):
    sandbox.add_fault(Fault("snyk.orgs", "500", after=2))
    assert [rest(client, sandbox, "/orgs").status_code for _ in range(4)] == [200, 200, 500, 200]


def test_faults_fire_in_list_order(client, sandbox):
    sandbox.set_faults([Fault("snyk.orgs", "429", retry_after=0), Fault("snyk.orgs", "500")])
    assert [rest(client, sandbox, "/orgs").status_code for _ in range(3)] == [429, 500, 200]


def test_fault_on_one_route_leaves_others_alone(client, sandbox, org_ids):
    sandbox.add_fault(Fault("snyk.issues", "500", times=0))
    assert rest(client, sandbox, "/orgs").status_code == 200
    assert rest(client, sandbox, f"/orgs/{org_ids[0]}/issues").status_code == 500


@pytest.mark.parametrize("pattern", ["*", "snyk.*"])
def test_wildcard_fault_matches_every_vendor_route(client, sandbox, org_ids, pattern):
    sandbox.add_fault(Fault(pattern, "500", times=0))
    assert rest(client, sandbox, "/orgs").status_code == 500
    assert client.get(sandbox.url + f"/v1/org/{org_ids[0]}/members", timeout=5).status_code == 500
    assert requests.get(sandbox.url + "/_sandbox/health", timeout=5).status_code == 200


def test_set_faults_replaces_and_clear_faults_removes(client, sandbox):
    sandbox.add_fault(Fault("snyk.orgs", "500", times=0))
    sandbox.set_faults([Fault("snyk.orgs", "403")])
    assert rest(client, sandbox, "/orgs").status_code == 403
    sandbox.set_faults([Fault("snyk.orgs", "500", times=0)])
    sandbox.clear_faults()
    assert rest(client, sandbox, "/orgs").status_code == 200


def test_fault_spec_parses_cli_form():
    fault = Fault.parse("snyk.issues:429:times=2,retry_after=0")
    assert fault == Fault("snyk.issues", "429", times=2, retry_after=0)
    assert Fault.parse("*:timeout:delay=0.5").delay == 0.5
    with pytest.raises(ValueError):
        Fault.parse("snyk.issues:418")


def test_latency_delays_vendor_responses(client):
    with Sandbox(token=TOKEN, latency_ms=150) as sb:
        started = time.monotonic()
        assert rest(client, sb, "/orgs").status_code == 200
        assert time.monotonic() - started >= 0.15


# ---------------------------------------------------------------------------------- server and admin


def test_responses_keep_the_connection_alive_with_content_length(sandbox):
    conn = http.client.HTTPConnection("127.0.0.1", sandbox.port, timeout=5)
    try:
        for _ in range(2):
            conn.request("GET", f"/rest/orgs?version={VERSION}", headers={"Authorization": f"token {TOKEN}"})
            response = conn.getresponse()
            body = response.read()
            assert response.status == 200
            assert int(response.getheader("Content-Length")) == len(body)
            assert not response.will_close
    finally:
        conn.close()


def test_stats_count_requests_per_route(client, sandbox, org_ids):
    sandbox.add_fault(Fault("snyk.issues", "500"))
    rest(client, sandbox, "/orgs")
    rest(client, sandbox, f"/orgs/{org_ids[0]}/issues")
    rest(client, sandbox, f"/orgs/{org_ids[0]}/issues")
    assert sandbox.stats() == {"snyk.orgs": 1, "snyk.issues": 2}
    sandbox.reset_stats()
    assert sandbox.stats() == {}


def test_admin_health(sandbox):
    response = requests.get(sandbox.url + "/_sandbox/health", timeout=5)
    assert response.json() == {"status": "ok"}


def test_admin_stats(client, sandbox):
    rest(client, sandbox, "/orgs")
    assert requests.get(sandbox.url + "/_sandbox/stats", timeout=5).json() == {"snyk.orgs": 1}


def test_admin_post_faults_replaces_and_delete_clears(client, sandbox):
    sandbox.add_fault(Fault("snyk.orgs", "500", times=0))
    posted = requests.post(
        sandbox.url + "/_sandbox/faults", json=[{"route": "snyk.orgs", "kind": "429", "retry_after": 0}], timeout=5
    )
    assert posted.status_code == 200
    response = rest(client, sandbox, "/orgs")
    assert response.status_code == 429 and response.headers["Retry-After"] == "0"
    requests.post(sandbox.url + "/_sandbox/faults", json=[{"route": "*", "kind": "500", "times": 0}], timeout=5)
    assert requests.delete(sandbox.url + "/_sandbox/faults", timeout=5).status_code == 200
    assert rest(client, sandbox, "/orgs").status_code == 200


def test_admin_rejects_invalid_faults(sandbox):
    response = requests.post(sandbox.url + "/_sandbox/faults", json=[{"route": "*", "kind": "teapot"}], timeout=5)
    assert response.status_code == 400
    assert "teapot" in response.json()["error"]


def test_unknown_path_is_404(sandbox):
    assert requests.get(sandbox.url + "/rest/nothing-here", timeout=5).status_code == 404


# ----------------------------------------------------------------------------------------------- CLI


def test_cli_serves_until_sigterm_and_exits_0(tmp_path):
    port_file = tmp_path / "port"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "secmetrics_dagster.sandbox",
            "--port",
            "0",
            "--port-file",
            str(port_file),
            "--snyk-orgs",
            "2",
            "--fault",
            "snyk.orgs:429:times=1,retry_after=0",
        ],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
    )
    try:
        deadline = time.monotonic() + 10
        while not port_file.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "sandbox did not write its port file"
            time.sleep(0.02)
        url = f"http://127.0.0.1:{int(port_file.read_text())}"
        assert requests.get(url + "/_sandbox/health", timeout=5).json() == {"status": "ok"}
        headers = {"Authorization": f"token {TOKEN}"}
        params = {"version": VERSION}
        assert requests.get(url + "/rest/orgs", params=params, headers=headers, timeout=5).status_code == 429
        orgs = requests.get(url + "/rest/orgs", params=params, headers=headers, timeout=5).json()
        assert len(orgs["data"]) == 2
        proc.send_signal(signal.SIGTERM)
        stdout, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0
    assert stdout.strip() == f"sandbox listening on {url}"


def test_a_listing_ending_on_a_page_boundary_can_end_with_an_empty_page_linking_to_itself(client):
    # snyk-labs/pysnyk issue 212: Snyk returned an empty page whose links.next is links.self after the last records.
    volume = SnykVolume(orgs=1, projects_per_org=20, issues_per_org=0, members_per_org=1, trailing_empty_page=1)
    with Sandbox(seed=3, token=TOKEN, snyk=volume) as sb:
        org = rest(client, sb, "/orgs").json()["data"][0]["id"]
        second = client.get(sb.url + "/rest" + rest(client, sb, f"/orgs/{org}/projects").json()["links"]["next"])
        empty = client.get(sb.url + "/rest" + second.json()["links"]["next"]).json()
    assert len(second.json()["data"]) == 10 and empty["data"] == []
    assert empty["links"]["next"] == empty["links"]["self"]


def test_by_default_the_last_page_has_no_next_link_even_on_a_page_boundary(client, sandbox, org_ids):
    _, pages = paginate(client, sandbox, f"/orgs/{org_ids[0]}/issues", limit=10)
    assert [len(p.json()["data"]) for p in pages][-1] == 10 and "next" not in pages[-1].json()["links"]


def test_without_a_clock_records_count_back_from_when_the_sandbox_starts():
    before = datetime.fromtimestamp(int(time.time()), UTC)
    with Sandbox(seed=5, token=TOKEN, snyk=SnykVolume(orgs=1, projects_per_org=20, issues_per_org=20)) as sb:
        after = datetime.fromtimestamp(int(time.time()), UTC)
        with requests.Session() as s:
            s.headers["Authorization"] = f"token {TOKEN}"
            org = rest(s, sb, "/orgs").json()["data"][0]["id"]
            projects = rest(s, sb, f"/orgs/{org}/projects", limit=100).json()["data"]
            issues = rest(s, sb, f"/orgs/{org}/issues", limit=100).json()["data"]
    created = [moment(p["attributes"]["created"]) for p in projects]
    assert before - 3 * 365 * DAY <= min(created) and max(created) <= after - 7 * DAY  # imported 7 days to 3 years ago
    assert all(moment(i["attributes"]["updated_at"]) <= after for i in issues)
