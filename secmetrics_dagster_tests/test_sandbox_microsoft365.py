"""The Graph sandbox speaks Entra ID's token endpoint and Graph's paging, limits, licence and error shapes."""

from datetime import UTC, datetime

import pytest
import requests

from secmetrics_dagster.sandbox import Microsoft365Volume, Sandbox

TENANT = "contoso.onmicrosoft.com"


def token_response(box, **changes):
    form = {
        "grant_type": "client_credentials",
        "client_id": "app",
        "client_secret": "sandbox-token",
        "scope": f"{box.url}/.default",
        **changes,
    }
    return requests.post(f"{box.url}/{TENANT}/oauth2/v2.0/token", data=form)


def bearer(box):
    return {"Authorization": f"Bearer {token_response(box).json()['access_token']}"}


@pytest.fixture
def box():
    with Sandbox(seed=5, microsoft365=Microsoft365Volume(users=130, devices=7, page_size=25)) as sandbox:
        yield sandbox


def test_client_credentials_give_an_expiring_bearer_token(box):
    body = token_response(box).json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3599 and body["access_token"].count(".") == 2


@pytest.mark.parametrize(
    "changes, status, code",
    [
        (dict(client_secret="wrong"), 401, 7000215),
        (dict(scope="User.Read.All"), 400, 1002012),
        (dict(grant_type="password"), 400, 70003),
    ],
)
def test_token_request_errors_are_entra_id_error_bodies(box, changes, status, code):
    answer = token_response(box, **changes)
    assert answer.status_code == status and answer.json()["error_codes"] == [code]
    assert answer.json()["error_description"].startswith(f"AADSTS{code}:")


def test_graph_refuses_missing_forged_and_expired_tokens():
    with Sandbox(microsoft365=Microsoft365Volume(token_lifetime=0)) as box:
        expired = bearer(box)
        for headers in ({}, {"Authorization": "Bearer a.b.c"}, expired):
            answer = requests.get(f"{box.url}/v1.0/users", headers=headers)
            assert answer.status_code == 401 and answer.json()["error"]["code"] == "InvalidAuthenticationToken"
        assert "expired" in requests.get(f"{box.url}/v1.0/users", headers=expired).json()["error"]["message"]


def test_next_links_are_absolute_with_a_skiptoken_and_keep_the_query(box):
    headers, url, seen = bearer(box), f"{box.url}/v1.0/users?$select=id,displayName&$top=40", []
    while url:
        body = requests.get(url, headers=headers).json()
        seen += [u["id"] for u in body["value"]]
        url = body.get("@odata.nextLink")
        if url:
            assert url.startswith(f"{box.url}/v1.0/users?") and "$skiptoken=" in url and "$top=40" in url
    assert len(seen) == len(set(seen)) == 130 and set(body["value"][0]) == {"id", "displayName"}


def test_page_size_limits_follow_graph(box):
    headers = bearer(box)
    too_big = requests.get(f"{box.url}/v1.0/users", params={"$top": 1000}, headers=headers)
    assert too_big.status_code == 400 and "between 1 and 999" in too_big.json()["error"]["message"]
    capped = requests.get(
        f"{box.url}/v1.0/users", params={"$top": 999, "$select": "id,signInActivity"}, headers=headers
    ).json()
    assert len(capped["value"]) == 120 and "@odata.nextLink" in capped
    default = requests.get(f"{box.url}/v1.0/deviceManagement/managedDevices", headers=headers).json()
    assert len(default["value"]) == 7


def test_an_unlicensed_tenant_answers_graph_licence_errors():
    with Sandbox(microsoft365=Microsoft365Volume(premium=0, intune=0)) as box:
        headers = bearer(box)
        sign_ins = requests.get(f"{box.url}/v1.0/users", params={"$select": "id,signInActivity"}, headers=headers)
        plain = requests.get(f"{box.url}/v1.0/users", params={"$select": "id"}, headers=headers)
        report = requests.get(f"{box.url}/v1.0/reports/authenticationMethods/userRegistrationDetails", headers=headers)
        intune = requests.get(f"{box.url}/v1.0/deviceManagement/managedDevices", headers=headers)
    assert sign_ins.status_code == report.status_code == 403 and plain.status_code == 200
    assert sign_ins.json()["error"]["code"] == "Authentication_RequestFromNonPremiumTenantOrB2CTenant"
    assert intune.status_code == 400 and intune.json()["error"]["message"] == "Request not applicable to target tenant."


def test_users_report_their_count_only_with_count_true_and_consistency_level_eventual(box):
    headers, url = bearer(box), f"{box.url}/v1.0/users"
    counted = requests.get(url, params={"$count": "true"}, headers={**headers, "ConsistencyLevel": "eventual"}).json()
    silent = requests.get(url, params={"$count": "true"}, headers=headers)
    assert counted["@odata.count"] == 130 and len(counted["value"]) == 25
    # Without the header Graph drops the count silently (aad-advanced-queries.md): still 200, no @odata.count.
    assert silent.status_code == 200 and "@odata.count" not in silent.json()
    assert "@odata.count" not in requests.get(url, headers={**headers, "ConsistencyLevel": "eventual"}).json()


def test_a_directory_lists_count_is_on_its_first_page_only(box):
    headers = {**bearer(box), "ConsistencyLevel": "eventual"}
    first = requests.get(f"{box.url}/v1.0/users", params={"$count": "true"}, headers=headers).json()
    second = requests.get(first["@odata.nextLink"], headers=headers).json()
    assert "$count=true" in first["@odata.nextLink"]  # the next link keeps the query, yet
    assert first["@odata.count"] == 130 and "@odata.count" not in second  # paging.md: the first page only


def test_a_directory_roles_members_come_in_one_answer_whatever_the_page_size(box):
    headers = bearer(box)
    roles = requests.get(f"{box.url}/v1.0/directoryRoles", headers=headers).json()["value"]
    sizes = []
    for role in roles:
        body = requests.get(f"{box.url}/v1.0/directoryRoles/{role['id']}/members?$top=1", headers=headers).json()
        assert "@odata.nextLink" not in body  # paging.md: role members are not paged
        sizes.append(len(body["value"]))
    assert max(sizes) > 1


def test_managed_devices_carry_their_count_unasked_on_every_page(box):
    headers, url, counts = bearer(box), f"{box.url}/v1.0/deviceManagement/managedDevices?$top=3", []
    while url:
        body = requests.get(url, headers=headers).json()
        counts.append(body["@odata.count"])
        url = body.get("@odata.nextLink")
    assert counts == [7, 7, 7]


def test_the_registration_report_offers_no_count(box):
    answer = requests.get(
        f"{box.url}/v1.0/reports/authenticationMethods/userRegistrationDetails",
        params={"$count": "true"},
        headers={**bearer(box), "ConsistencyLevel": "eventual"},
    )
    assert answer.status_code == 200 and "@odata.count" not in answer.json()


def test_a_refused_token_gets_graphs_bearer_challenge(box):
    answer = requests.get(f"{box.url}/v1.0/users", headers={"Authorization": "Bearer a.b.c"})
    challenge = answer.headers["WWW-Authenticate"]
    assert challenge.startswith('Bearer realm=""') and 'client_id="00000003-0000-0000-c000-000000000000"' in challenge


def graph_list(box, headers, path):
    url, records = f"{box.url}/v1.0/{path}", []
    while url:
        body = requests.get(url, headers=headers).json()
        records += body["value"]
        url = body.get("@odata.nextLink")
    return records


def test_directory_roles_are_the_activated_roles_in_one_page_and_their_members_are_typed_directory_objects(box):
    headers = bearer(box)
    listing = requests.get(f"{box.url}/v1.0/directoryRoles", headers=headers).json()
    assert "@odata.nextLink" not in listing and {"id", "displayName", "roleTemplateId"} <= set(listing["value"][0])
    global_admin = next(r for r in listing["value"] if r["roleTemplateId"] == "62e90394-69f5-4237-9190-012177145e10")
    by_id = graph_list(box, headers, f"directoryRoles/{global_admin['id']}/members")
    by_template = graph_list(box, headers, f"directoryRoles/roleTemplateId={global_admin['roleTemplateId']}/members")
    assert by_id == by_template and {m["@odata.type"] for m in by_id} == {"#microsoft.graph.user"}
    unknown = requests.get(
        f"{box.url}/v1.0/directoryRoles/{'0' * 8}-0000-0000-0000-{'0' * 12}/members", headers=headers
    )
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "Request_ResourceNotFound"


def test_is_admin_in_the_registration_report_is_holding_a_directory_role(box):
    headers = bearer(box)
    holders = {
        m["id"]
        for role in graph_list(box, headers, "directoryRoles")
        for m in graph_list(box, headers, f"directoryRoles/{role['id']}/members")
        if m["@odata.type"] == "#microsoft.graph.user"
    }
    report = graph_list(box, headers, "reports/authenticationMethods/userRegistrationDetails")
    assert holders and {r["id"] for r in report if r["isAdmin"]} == holders
    assert any(not r["isMfaRegistered"] for r in report if r["isAdmin"])  # an admin without MFA, as reviews find


def test_timestamps_count_back_from_the_sandbox_clock_with_recent_dormant_and_stale_records():
    now = datetime.fromtimestamp(1_800_000_000, UTC)
    volume = Microsoft365Volume(users=300, devices=200, page_size=999, now=now.timestamp())
    with Sandbox(seed=8, microsoft365=volume) as box:
        headers = bearer(box)
        users = graph_list(box, headers, "users?$select=id,createdDateTime,signInActivity&$top=120")
        devices = graph_list(box, headers, "deviceManagement/managedDevices")
        scores = graph_list(box, headers, "security/secureScores")

    def age(text):
        return (now - datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)).days

    sign_ins = [None if u["signInActivity"] is None else age(u["signInActivity"]["lastSignInDateTime"]) for u in users]
    assert all(age(u["createdDateTime"]) >= 0 for u in users) and all(d is None or d >= 0 for d in sign_ins)
    assert sum(1 for d in sign_ins if d is not None and d < 30) / len(users) > 0.7
    assert 0.05 < sum(1 for d in sign_ins if d is None or d > 90) / len(users) < 0.2
    syncs = [age(d["lastSyncDateTime"]) for d in devices]
    assert min(syncs) >= 0 and sum(1 for d in syncs if d <= 7) / len(syncs) > 0.7 and max(syncs) > 30
    assert 0 <= age(scores[0]["createdDateTime"]) <= 1  # the newest daily snapshot is today's or yesterday's
