"""Microsoft 365 (Graph) assets end to end: token, @odata.nextLink paging, throttling, licence skips, all four stores."""

import json

import dagster as dg
import pytest
import requests

from secmetrics_dagster.automation import checks
from secmetrics_dagster.collection import CollectionError
from secmetrics_dagster.collection.resource import CollectionResource
from secmetrics_dagster.sandbox import Fault, Microsoft365Volume, Sandbox
from secmetrics_dagster.sources import microsoft365 as m365_source
from secmetrics_dagster.sources.microsoft365 import Microsoft365Resource

from .conftest import SANDBOX_TOKEN
from .harness import materialize_source
from .helpers import (
    failure_text,
    log_text,
    materialization_metadata,
    materialized_tags,
    pg_rows,
    store_counts,
    stored_file,
)

TAGS = [
    "microsoft365_users",
    "microsoft365_mfa_registration",
    "microsoft365_managed_devices",
    "microsoft365_secure_scores",
    "microsoft365_directory_roles",
]
TENANT = "contoso.onmicrosoft.com"
# More users than Graph's 120-per-page cap with signInActivity, and small default pages for the other lists.
VOLUME = dict(users=130, devices=23, score_days=12, page_size=10)


@pytest.fixture
def box():
    with Sandbox(seed=5, token=SANDBOX_TOKEN, microsoft365=Microsoft365Volume(**VOLUME)) as sandbox:
        yield sandbox


def graph(box, secret=SANDBOX_TOKEN) -> Microsoft365Resource:
    return Microsoft365Resource(
        tenant_id=TENANT,
        client_id="3f2e1d0c-9b8a-4765-8432-10fedcba9876",
        client_secret=secret,
        login_endpoint=box.url,
        graph_endpoint=box.url,
    )


def run(resource, collection, stores, selection=None, instance=None, checks=False):
    return materialize_source(
        m365_source.SOURCE, resource, collection, stores, selection=selection, instance=instance, checks=checks
    )


def bearer(box) -> dict:
    token = requests.post(
        f"{box.url}/{TENANT}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": "counter",
            "client_secret": SANDBOX_TOKEN,
            "scope": f"{box.url}/.default",
        },
    ).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


def graph_list(box, headers, path) -> list:
    """Every record of a Graph list, following @odata.nextLink."""
    url, records = f"{box.url}/v1.0/{path}", []
    while url:
        body = requests.get(url, headers=headers).json()
        records += body["value"]
        url = body.get("@odata.nextLink")
    return records


def sandbox_counts(box) -> dict:
    """Each list counted with plain requests, following @odata.nextLink."""
    headers = bearer(box)
    counts = {
        tag: len(graph_list(box, headers, path))
        for tag, path in zip(
            TAGS,
            [
                "users",
                "reports/authenticationMethods/userRegistrationDetails",
                "deviceManagement/managedDevices",
                "security/secureScores",
            ],
        )
    }
    roles = graph_list(box, headers, "directoryRoles")
    counts["microsoft365_directory_roles"] = sum(
        len(graph_list(box, headers, f"directoryRoles/{role['id']}/members")) for role in roles
    )
    box.reset_stats()
    return counts


def test_every_graph_asset_lands_in_all_four_stores_with_the_sandbox_counts(
    box, collection, all_stores, s3_client, pg_conn
):
    expected = sandbox_counts(box)
    assert expected == {
        "microsoft365_users": 130,
        "microsoft365_mfa_registration": 130,
        "microsoft365_managed_devices": 23,
        "microsoft365_secure_scores": 12,
        "microsoft365_directory_roles": expected["microsoft365_directory_roles"],
    }
    assert expected["microsoft365_directory_roles"] > 2
    result = run(graph(box), collection, all_stores)
    assert result.success, failure_text(result)
    for tag in TAGS:
        assert store_counts(all_stores, s3_client, pg_conn, tag) == dict.fromkeys(
            ["file", "s3", "postgres", "duckdb"], expected[tag]
        ), tag
    stats = box.stats()
    # users: Graph's count ($count=true), then 120 + 10 (signInActivity caps pages); the rest in pages of 10, each
    # followed by its @odata.nextLink
    assert (
        stats["microsoft365.users"] - 1,
        stats["microsoft365.registration"],
        stats["microsoft365.devices"],
        stats["microsoft365.secure_scores"],
    ) == (2, 13, 3, 2)
    assert stats["microsoft365.token"] == len(TAGS)  # one token per asset's pull
    users = pg_rows(pg_conn, all_stores.postgres_schema, "microsoft365_users_latest")
    assert set(users[0][2]) == set(m365_source.USER_FIELDS) | {"_tenancy", "_upload_timestamp", "_upload_id"}
    assert any(row[2]["signInActivity"] for row in users)


def test_a_429_is_waited_out_for_its_retry_after(box, collection, file_stores):
    box.add_fault(Fault(route="microsoft365.registration", kind="429", times=1, after=4, retry_after=1))
    result = run(graph(box), collection, file_stores, selection="microsoft365_mfa_registration")
    assert result.success, failure_text(result)
    md = materialization_metadata(result, "microsoft365_mfa_registration")
    assert md["records"] == 130 and md["http_throttled"] == 1 and md["http_retries"] == 1
    assert 1.0 <= md["http_waited_seconds"] < 1.5


@pytest.mark.parametrize(
    "licences, skipped",
    [
        (dict(premium=0), {"microsoft365_users", "microsoft365_mfa_registration"}),
        (dict(intune=0), {"microsoft365_managed_devices"}),
    ],
)
def test_a_list_the_tenant_is_not_licensed_for_skips_only_that_asset(collection, file_stores, licences, skipped):
    with Sandbox(seed=5, token=SANDBOX_TOKEN, microsoft365=Microsoft365Volume(**{**VOLUME, **licences})) as box:
        instance = dg.DagsterInstance.ephemeral()
        result = run(graph(box), collection, file_stores, instance=instance)
    assert result.success, failure_text(result)
    assert materialized_tags(result) == set(TAGS) - skipped
    observed = {
        e.asset_key.path[-1]: e.event_specific_data.asset_observation.metadata["skipped"].value
        for e in result.get_asset_observation_events()
    }
    assert set(observed) == skipped
    logs = log_text(instance, result)
    for tag in skipped:
        assert "not licensed or the app is not permitted" in observed[tag] and f"{tag} skipped" in logs
    reason = " ".join(observed.values())
    assert ("Authentication_RequestFromNonPremiumTenantOrB2CTenant" in reason) == ("premium" in licences)
    assert ("not applicable to target tenant" in reason) == ("intune" in licences)


def test_a_skipped_list_does_not_serve_its_backup(collection, all_stores):
    with Sandbox(seed=5, token=SANDBOX_TOKEN, microsoft365=Microsoft365Volume(**VOLUME)) as box:
        first = run(graph(box), collection, all_stores, selection="microsoft365_managed_devices")
    assert first.success and materialized_tags(first) == {"microsoft365_managed_devices"}
    with Sandbox(seed=5, token=SANDBOX_TOKEN, microsoft365=Microsoft365Volume(**VOLUME, intune=0)) as box:
        second = run(graph(box), collection, all_stores, selection="microsoft365_managed_devices")
    assert second.success, failure_text(second)
    assert materialized_tags(second) == set()  # skipped: not materialized from the backup either


def test_a_missing_permission_skips_the_asset(box, collection, file_stores):
    box.add_fault(Fault(route="microsoft365.secure_scores", kind="403", times=0))
    result = run(graph(box), collection, file_stores, selection=["microsoft365_secure_scores", "microsoft365_users"])
    assert result.success, failure_text(result)
    assert materialized_tags(result) == {"microsoft365_users"}
    [event] = result.get_asset_observation_events()
    reason = event.event_specific_data.asset_observation.metadata["skipped"].value
    assert "Authorization_RequestDenied" in reason and "SecurityEvents.Read.All" in reason


def test_a_wrong_client_secret_fails_naming_the_variables(box, collection, file_stores):
    result = run(
        graph(box, secret="wrong-client-secret-value"), collection, file_stores, selection="microsoft365_secure_scores"
    )
    assert not result.success
    text = failure_text(result)
    assert "AADSTS7000215" in text and "MICROSOFT365_CLIENT_SECRET" in text and "MICROSOFT365_TENANT_ID" in text
    assert "wrong-client-secret-value" not in text
    assert box.stats().get("microsoft365.secure_scores") is None  # Graph was never asked without a token


def test_a_token_refused_mid_pagination_is_renewed_and_the_pull_resumes(box, collection, all_stores, pg_conn):
    box.add_fault(Fault(route="microsoft365.registration", kind="401", times=1, after=5))
    result = run(graph(box), collection, all_stores, selection="microsoft365_mfa_registration")
    assert result.success, failure_text(result)
    assert materialization_metadata(result, "microsoft365_mfa_registration")["records"] == 130
    assert box.stats()["microsoft365.token"] == 2 and box.stats()["microsoft365.registration"] == 14
    rows = pg_rows(pg_conn, all_stores.postgres_schema, "microsoft365_mfa_registration_latest")
    assert len({row[2]["id"] for row in rows}) == 130


def test_the_token_is_renewed_before_it_expires_and_not_before(box):
    with graph(box).client(CollectionResource().http_settings()) as http:
        now = [1000.0]
        http.clock = lambda: now[0]
        http.authorize()
        now[0] += 3599 - 301  # still more than five minutes left
        http.authorize()
        assert box.stats()["microsoft365.token"] == 1
        now[0] += 2  # inside the last five minutes
        http.authorize()
        assert box.stats()["microsoft365.token"] == 2
        assert http.get_json("v1.0/security/secureScores")["value"]


def test_a_malformed_page_is_retried_and_the_records_are_exact(box, collection, file_stores):
    box.add_fault(Fault(route="microsoft365.devices", kind="malformed", times=1, after=1))
    result = run(graph(box), collection, file_stores, selection="microsoft365_managed_devices")
    assert result.success, failure_text(result)
    md = materialization_metadata(result, "microsoft365_managed_devices")
    assert md["records"] == 23 and md["http_retries"] == 1


def test_a_next_link_on_the_graph_host_is_followed_and_one_elsewhere_fails_naming_the_variable(box):
    with graph(box).client(CollectionResource().http_settings()) as http:
        same = f"{box.url}/v1.0/users?$skiptoken=abc"
        assert http.follow(same) == same
        with pytest.raises(CollectionError) as raised:
            http.follow("https://graph.microsoft.com/v1.0/users?$skiptoken=abc")
    text = str(raised.value)
    assert "https://graph.microsoft.com" in text and box.url in text and "MICROSOFT365_GRAPH_ENDPOINT" in text


@pytest.mark.parametrize("endpoint", ["https://graph.microsoft.us", "https://graph.microsoft.us/v1.0/"])
def test_a_national_cloud_endpoint_sets_the_graph_host_and_the_token_scope(endpoint):
    resource = Microsoft365Resource(
        tenant_id=TENANT,
        client_id="c",
        client_secret="s",
        login_endpoint="https://login.microsoftonline.us",
        graph_endpoint=endpoint,
    )
    with resource.client(CollectionResource().http_settings()) as http:
        assert http.base_url == "https://graph.microsoft.us/"
        assert http.scope == "https://graph.microsoft.us/.default"
        assert http.token_url == f"https://login.microsoftonline.us/{TENANT}/oauth2/v2.0/token"


def test_directory_role_holders_are_one_record_per_role_and_member_with_the_roles_template(collection, file_stores):
    # One record a page for every list Graph pages; a role's members are one answer whatever the page size (paging.md).
    with Sandbox(seed=5, token=SANDBOX_TOKEN, microsoft365=Microsoft365Volume(**{**VOLUME, "page_size": 1})) as box:
        headers = bearer(box)
        roles = graph_list(box, headers, "directoryRoles")
        held = {
            (role["id"], member["id"]): role
            for role in roles
            for member in graph_list(box, headers, f"directoryRoles/{role['id']}/members")
        }
        box.reset_stats()
        result = run(graph(box), collection, file_stores, selection="microsoft365_directory_roles")
        stats = box.stats()
    assert result.success, failure_text(result)
    records = json.loads(stored_file(file_stores, "microsoft365_directory_roles").read_text())["data"]
    assert sorted((r["_role_id"], r["id"]) for r in records) == sorted(held)
    for record in records:
        role = held[(record["_role_id"], record["id"])]
        assert record["_role_template_id"] == role["roleTemplateId"]
        assert record["_role_display_name"] == role["displayName"]
    assert {r["_principal_type"] for r in records} == {"user", "group", "servicePrincipal"}
    assert all(r["userPrincipalName"] for r in records if r["_principal_type"] == "user")
    assert stats["microsoft365.directory_roles"] == 1
    assert stats["microsoft365.directory_role_members"] == len({r["_role_id"] for r in records}) < len(records)


@pytest.mark.parametrize("route", ["microsoft365.directory_roles", "microsoft365.directory_role_members"])
def test_a_missing_role_permission_skips_the_directory_roles_asset_naming_it(box, collection, file_stores, route):
    box.add_fault(Fault(route=route, kind="403", times=0))
    result = run(graph(box), collection, file_stores, selection="microsoft365_directory_roles")
    assert result.success, failure_text(result)
    assert materialized_tags(result) == set()
    [event] = result.get_asset_observation_events()
    reason = event.event_specific_data.asset_observation.metadata["skipped"].value
    assert "Authorization_RequestDenied" in reason and "RoleManagement.Read.Directory" in reason


def count_stable(result, tag):
    return next(
        e
        for e in result.get_asset_check_evaluations()
        if e.asset_key.path[-1] == tag and e.check_name == checks.COUNT_STABLE
    )


def test_graph_counts_the_users_and_the_count_is_recorded_and_checked_with_the_upload(box, collection, file_stores):
    result = run(graph(box), collection, file_stores, selection="microsoft365_users", checks=True)
    assert result.success, failure_text(result)
    md = materialization_metadata(result, "microsoft365_users")
    # The sandbox counts only with ConsistencyLevel: eventual, as Graph does: a total proves the header was sent.
    assert md["reported_total"] == md["records"] == 130
    assert box.stats()["microsoft365.users"] == 1 + 2  # the count, then the two pages
    assert count_stable(result, "microsoft365_users").passed


def test_a_short_users_page_is_asked_for_again_and_nothing_is_lost(box, collection, file_stores):
    # The first page (after the count) loses its last user while its next link moves past it.
    box.add_fault(Fault(route="microsoft365.users", kind="short", times=1, after=1))
    result = run(graph(box), collection, file_stores, selection="microsoft365_users")
    assert result.success, failure_text(result)
    md = materialization_metadata(result, "microsoft365_users")
    assert md["records"] == 130 and md["http_short_pages"] == 0
    assert box.stats()["microsoft365.users"] == 1 + 2 + 1


def test_a_users_page_short_twice_is_counted_and_record_count_stable_warns(box, collection, file_stores):
    box.add_fault(Fault(route="microsoft365.users", kind="short", times=2, after=1))
    result = run(graph(box), collection, file_stores, selection="microsoft365_users", checks=True)
    assert result.success, failure_text(result)
    md = materialization_metadata(result, "microsoft365_users")
    assert md["records"] == 129 and md["http_short_pages"] == 1 and md["reported_total"] == 130
    stable = count_stable(result, "microsoft365_users")
    assert not stable.passed and stable.severity == dg.AssetCheckSeverity.WARN
    assert "1 page(s) came back shorter" in stable.description
    assert "reported 130 records but 129 arrived" in stable.description


def test_a_token_refused_while_a_short_page_is_asked_again_resumes_at_that_page(box, collection, file_stores):
    box.add_fault(Fault(route="microsoft365.users", kind="short", times=1, after=1))
    box.add_fault(Fault(route="microsoft365.users", kind="401", times=1, after=2))  # the second ask of that page
    result = run(graph(box), collection, file_stores, selection="microsoft365_users")
    assert result.success, failure_text(result)
    md = materialization_metadata(result, "microsoft365_users")
    assert md["records"] == md["reported_total"] == 130 and box.stats()["microsoft365.token"] == 2
