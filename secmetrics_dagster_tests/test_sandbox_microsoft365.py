"""The Graph sandbox speaks Entra ID's token endpoint and Graph's paging, limits, licence and error shapes."""

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
