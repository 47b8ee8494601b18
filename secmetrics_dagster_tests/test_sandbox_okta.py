"""The Okta sandbox speaks Okta's wire protocol: statuses, Link cursors, org-wide quotas, SSWS, error bodies."""

from datetime import UTC, datetime, timedelta

import pytest
import requests

from secmetrics_dagster.sandbox import Fault, OktaVolume, Sandbox
from secmetrics_dagster.sandbox.okta import ADMIN_GROUP, STATUSES, object_id

HEADERS = {"Authorization": "SSWS sandbox-token"}
EVERY_STATUS = " or ".join(f'status eq "{s}"' for s in STATUSES)


@pytest.fixture
def box():
    with Sandbox(seed=11, okta=OktaVolume(users=45, groups=5, rate_window=3600)) as sandbox:
        yield sandbox


def get(box, path, **params):
    return requests.get(f"{box.url}{path}", params=params, headers=HEADERS)


def moment(text):
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.000Z").replace(tzinfo=UTC)


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


def test_a_users_roles_list_direct_and_group_assignments_with_their_assignee(box):
    everyone = get(box, "/api/v1/users", search=EVERY_STATUS, limit=200).json()
    roles = {u["id"]: get(box, f"/api/v1/users/{u['id']}/roles").json() for u in everyone}
    admins = [u for u in everyone if roles[u["id"]]]
    assert 0 < len(admins) < len(everyone) / 4  # a few administrators
    admin_group = get(box, "/api/v1/groups", limit=10).json()[ADMIN_GROUP]
    members = {m["id"] for m in get(box, f"/api/v1/groups/{admin_group['id']}/users", limit=1000).json()}
    for user in admins:
        for role in roles[user["id"]]:
            assert {"id", "label", "type", "status", "assignmentType", "created", "lastUpdated"} <= set(role)
            assignee = role["_links"]["assignee"]["href"]
            if role["assignmentType"] == "GROUP":  # held through the group, and the user is in it
                assert assignee.endswith(f"/api/v1/groups/{admin_group['id']}") and user["id"] in members
            else:
                assert assignee.endswith(f"/api/v1/users/{user['id']}")
    assert members and all(any(r["assignmentType"] == "GROUP" for r in roles[m]) for m in members)
    assert get(box, "/api/v1/users/00uUnknownUser000000/roles").json()["errorCode"] == "E0000007"


def test_timestamps_count_back_from_the_sandbox_clock():
    def users(now):
        with Sandbox(seed=11, okta=OktaVolume(users=30, now=now)) as box:
            # _links carry the sandbox's port, which differs between the two
            return [
                {k: v for k, v in u.items() if k != "_links"}
                for u in get(box, "/api/v1/users", search=EVERY_STATUS).json()
            ]

    first, again, later = users(1_800_000_000), users(1_800_000_000), users(1_800_000_000 + 86_400)
    assert first == again  # the same seed and clock give the same org
    for a, b in zip(first, later):
        for key in ("created", "activated", "statusChanged", "lastLogin", "passwordChanged"):
            if a[key] is not None:
                assert moment(b[key]) - moment(a[key]) == timedelta(days=1)
                assert moment(a[key]) <= datetime.fromtimestamp(1_800_000_000, UTC)


def test_the_org_mixes_recent_and_dormant_sign_ins_and_users_without_mfa():
    now = datetime.fromtimestamp(1_800_000_000, UTC)
    with Sandbox(seed=3, okta=OktaVolume(users=400, groups=6, now=now.timestamp(), rate_window=3600)) as box:
        everyone = get(box, "/api/v1/users", search=EVERY_STATUS, limit=200).json()
        everyone += requests.get(
            get(box, "/api/v1/users", search=EVERY_STATUS, limit=200).links["next"]["url"], headers=HEADERS
        ).json()
        enrolled = [u for u in everyone if u["status"] not in ("DEPROVISIONED", "STAGED")]
        factors = {u["id"]: get(box, f"/api/v1/users/{u['id']}/factors").json() for u in enrolled}
        admins = [u for u in enrolled if get(box, f"/api/v1/users/{u['id']}/roles").json()]
    active = [u for u in everyone if u["status"] == "ACTIVE"]
    ages = [None if u["lastLogin"] is None else (now - moment(u["lastLogin"])).days for u in active]
    recent = sum(1 for d in ages if d is not None and d < 30) / len(active)
    dormant = sum(1 for d in ages if d is None or d > 90) / len(active)
    without_mfa = [u for u in enrolled if not any(f["status"] == "ACTIVE" for f in factors[u["id"]])]
    assert len(everyone) == 400 and recent > 0.7 and 0.05 < dormant < 0.2
    assert 0.05 < len(without_mfa) / len(enrolled) < 0.2
    assert any(a in without_mfa for a in admins) and any(a not in without_mfa for a in admins)
