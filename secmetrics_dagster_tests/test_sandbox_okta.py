"""The Okta sandbox speaks Okta's wire protocol: statuses, Link cursors, org-wide quotas, SSWS, error bodies."""

import pytest
import requests

from secmetrics_dagster.sandbox import Fault, OktaVolume, Sandbox
from secmetrics_dagster.sandbox.okta import STATUSES, object_id

HEADERS = {"Authorization": "SSWS sandbox-token"}
EVERY_STATUS = " or ".join(f'status eq "{s}"' for s in STATUSES)


@pytest.fixture
def box():
    with Sandbox(seed=11, okta=OktaVolume(users=45, groups=5, rate_window=3600)) as sandbox:
        yield sandbox


def get(box, path, **params):
    return requests.get(f"{box.url}{path}", params=params, headers=HEADERS)


def test_the_plain_user_listing_leaves_deprovisioned_users_out_and_a_status_search_brings_them(box):
    plain = get(box, "/api/v1/users").json()
    everyone = get(box, "/api/v1/users", search=EVERY_STATUS).json()
    assert len(everyone) == 45 and "DEPROVISIONED" not in {u["status"] for u in plain}
    assert {u["id"] for u in everyone} - {u["id"] for u in plain} == {
        u["id"] for u in everyone if u["status"] == "DEPROVISIONED"
    }


def test_pages_link_to_the_next_with_an_after_cursor_until_the_last(box):
    first = get(box, "/api/v1/users", limit=20, search=EVERY_STATUS)
    assert first.links["self"]["url"].endswith("limit=20")
    next_url = first.links["next"]["url"]
    assert f"after=0{first.json()[-1]['id']}" in next_url and "limit=20" in next_url and "search=status" in next_url
    second = requests.get(next_url, headers=HEADERS)
    third = requests.get(second.links["next"]["url"], headers=HEADERS)
    assert [len(r.json()) for r in (first, second, third)] == [20, 20, 5] and "next" not in third.links


def test_the_quota_counts_down_per_endpoint_and_then_answers_e0000047_until_the_reset():
    with Sandbox(okta=OktaVolume(users=3, rate_limit=3, rate_window=3600)) as box:
        answers = [get(box, "/api/v1/groups") for _ in range(4)]
        other = get(box, "/api/v1/users")
    assert [r.headers["X-Rate-Limit-Remaining"] for r in answers] == ["2", "1", "0", "0"]
    assert [r.status_code for r in answers] == [200, 200, 200, 429]
    assert answers[3].json()["errorCode"] == "E0000047" and "Retry-After" not in answers[3].headers
    assert int(answers[3].headers["X-Rate-Limit-Reset"]) % 3600 == 0
    assert other.status_code == 200 and other.headers["X-Rate-Limit-Remaining"] == "2"  # each endpoint its own quota


def test_only_an_ssws_token_is_accepted(box):
    for authorization in ("Bearer sandbox-token", "SSWS wrong", ""):
        answer = requests.get(f"{box.url}/api/v1/users", headers={"Authorization": authorization})
        assert answer.status_code == 401 and answer.json()["errorCode"] == "E0000011"


def test_an_unsupported_search_is_a_400_with_okta_error_body(box):
    answer = get(box, "/api/v1/users", search='profile.department eq "Sales"')
    assert answer.status_code == 400 and answer.json()["errorCode"] == "E0000031"


def test_factors_of_an_unknown_user_are_404_and_members_are_user_objects(box):
    assert get(box, "/api/v1/users/00uUnknownUser000000/factors").json()["errorCode"] == "E0000007"
    everyone = get(box, "/api/v1/groups").json()[0]
    assert everyone["type"] == "BUILT_IN" and everyone["profile"]["name"] == "Everyone"
    members = get(box, f"/api/v1/groups/{everyone['id']}/users", limit=200).json()
    assert len(members) == 45 and {"id", "status", "profile"} <= set(members[0])


def test_a_million_users_are_served_on_the_fly():
    with Sandbox(seed=2, okta=OktaVolume(users=1_000_000)) as box:
        cursor = "0" + object_id(2, "00u", 999_990)
        page = get(box, "/api/v1/users", search=EVERY_STATUS, after=cursor, limit=200)
    assert page.status_code == 200 and len(page.json()) == 9 and "next" not in page.links


def test_an_injected_429_carries_the_quota_headers_and_no_retry_after(box):
    # Okta tells a throttled client when to return in X-Rate-Limit-Reset (epoch seconds); it sends no Retry-After.
    box.add_fault(Fault(route="okta.users", kind="429", times=1, retry_after=30))
    answer = get(box, "/api/v1/users")
    assert answer.status_code == 429 and answer.json()["errorCode"] == "E0000047"
    assert "Retry-After" not in answer.headers and answer.headers["X-Rate-Limit-Remaining"] == "0"
    assert int(answer.headers["X-Rate-Limit-Reset"]) % 3600 == 0 and "Date" in answer.headers


def test_expand_stats_reports_each_groups_member_count_in_embedded_stats(box):
    groups = get(box, "/api/v1/groups", expand="stats").json()
    for group in groups:
        members = get(box, f"/api/v1/groups/{group['id']}/users", limit=1000).json()
        assert group["_embedded"]["stats"]["usersCount"] == len(members)
    assert groups[0]["_embedded"]["stats"]["usersCount"] == 45  # Everyone
    assert "_embedded" not in get(box, "/api/v1/groups").json()[0]
