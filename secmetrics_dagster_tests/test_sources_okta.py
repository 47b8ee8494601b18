"""Okta assets end to end: sandbox -> pull -> all four stores; statuses, Link pagination, rate limits, faults."""

import json
import logging

import dagster as dg
import pytest
import requests

from secmetrics_dagster.automation import checks
from secmetrics_dagster.collection import CollectionError, RunContext, Spool
from secmetrics_dagster.collection.http import HttpResponse, HttpSession
from secmetrics_dagster.collection.resource import CollectionResource
from secmetrics_dagster.sandbox import Fault, OktaVolume, Sandbox
from secmetrics_dagster.sources import okta as okta_source
from secmetrics_dagster.sources.base import Pull
from secmetrics_dagster.sources.okta import ROLELESS_STATUSES, OktaResource, okta_base_url

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

TAGS = ["okta_users", "okta_user_factors", "okta_user_roles", "okta_groups", "okta_group_members"]
SEED = 11  # an org with deprovisioned users and pending TOTP enrollments


@pytest.fixture
def box():
    with Sandbox(seed=SEED, token=SANDBOX_TOKEN, okta=OktaVolume(users=45, groups=5)) as sandbox:
        yield sandbox


@pytest.fixture
def okta(box) -> OktaResource:
    return OktaResource(domain=box.url, token=SANDBOX_TOKEN, page_limit=10)


def run(resource, collection, stores, selection=None, instance=None, checks=False):
    return materialize_source(
        okta_source.SOURCE, resource, collection, stores, selection=selection, instance=instance, checks=checks
    )


def count_stable(result, tag):
    return next(
        e
        for e in result.get_asset_check_evaluations()
        if e.asset_key.path[-1] == tag and e.check_name == checks.COUNT_STABLE
    )


def listing(url, params=None):
    """Every record of an Okta listing, following Link rel=next with plain requests."""
    headers = {"Authorization": f"SSWS {SANDBOX_TOKEN}"}
    records = []
    while url:
        response = requests.get(url, params=params, headers=headers)
        response.raise_for_status()
        records += response.json()
        url, params = response.links.get("next", {}).get("url"), None
    return records


def sandbox_counts(box) -> dict:
    """What the org holds, read the way Okta documents it: the plain listing plus a filter for DEPROVISIONED."""
    users = listing(f"{box.url}/api/v1/users") + listing(
        f"{box.url}/api/v1/users", {"filter": 'status eq "DEPROVISIONED"'}
    )
    groups = listing(f"{box.url}/api/v1/groups")
    counts = {
        "okta_users": len(users),
        "okta_user_factors": sum(len(listing(f"{box.url}/api/v1/users/{u['id']}/factors")) for u in users),
        "okta_user_roles": sum(
            len(listing(f"{box.url}/api/v1/users/{u['id']}/roles"))
            for u in users
            if u["status"] not in ROLELESS_STATUSES
        ),
        "okta_groups": len(groups),
        "okta_group_members": sum(len(listing(f"{box.url}/api/v1/groups/{g['id']}/users")) for g in groups),
    }
    box.reset_stats()
    return counts


def file_doc(stores, tag):
    return json.loads(stored_file(stores, tag, "acme").read_text())


def test_every_okta_asset_lands_in_all_four_stores_with_the_sandbox_counts(
    box, okta, collection, all_stores, s3_client, pg_conn
):
    expected = sandbox_counts(box)
    result = run(okta, collection, all_stores)
    assert result.success, failure_text(result)
    assert expected["okta_users"] == 45 and expected["okta_user_factors"] > 0 and expected["okta_group_members"] > 45
    assert expected["okta_user_roles"] > 0
    for tag in TAGS:
        assert store_counts(all_stores, s3_client, pg_conn, tag) == dict.fromkeys(
            ["file", "s3", "postgres", "duckdb"], expected[tag]
        ), tag
        assert materialization_metadata(result, tag)["records"] == expected[tag]
    # 45 users, 10 a page: five pages by Link rel="next", each read once
    assert box.stats()["okta.users"] == 5
    ids = [u["id"] for u in file_doc(all_stores, "okta_users")["data"]]
    assert len(ids) == len(set(ids))


def test_deprovisioned_users_are_collected_with_every_other_status(box, okta, collection, all_stores, pg_conn):
    deprovisioned = listing(f"{box.url}/api/v1/users", {"filter": 'status eq "DEPROVISIONED"'})
    assert deprovisioned  # the plain listing would leave these out
    result = run(okta, collection, all_stores, selection="okta_users")
    assert result.success, failure_text(result)
    rows = pg_rows(pg_conn, all_stores.postgres_schema, "okta_users_latest")
    collected = {row[2]["id"] for row in rows if row[2]["status"] == "DEPROVISIONED"}
    assert collected == {u["id"] for u in deprovisioned}
    assert len({row[2]["status"] for row in rows}) >= 4
    assert all(row[2]["profile"]["login"] for row in rows)


def test_factors_are_read_for_every_user_but_the_deprovisioned_and_keep_no_enrollment_secret(
    box, okta, collection, file_stores
):
    result = run(okta, collection, file_stores, selection=["okta_users", "okta_user_factors"])
    assert result.success, failure_text(result)
    users = file_doc(file_stores, "okta_users")["data"]
    assert box.stats()["okta.factors"] == sum(u["status"] != "DEPROVISIONED" for u in users)
    factors = file_doc(file_stores, "okta_user_factors")["data"]
    assert {f["_user_id"] for f in factors} <= {u["id"] for u in users}
    text = stored_file(file_stores, "okta_user_factors", "acme").read_text()
    pending_totp = [
        f for f in factors if f["status"] == "PENDING_ACTIVATION" and f["factorType"] == "token:software:totp"
    ]
    assert pending_totp and "sharedSecret" not in text and all("_embedded" not in f for f in factors)


def test_roles_are_asked_for_every_user_who_can_sign_in_and_carry_the_user_id(box, okta, collection, file_stores):
    result = run(okta, collection, file_stores, selection=["okta_users", "okta_user_roles"])
    assert result.success, failure_text(result)
    users = file_doc(file_stores, "okta_users")["data"]
    asked = {u["id"] for u in users if u["status"] not in ("STAGED", "SUSPENDED", "DEPROVISIONED")}
    assert box.stats()["okta.user_roles"] == len(asked) < len(users)
    roles = file_doc(file_stores, "okta_user_roles")["data"]
    held = [(uid, role["id"]) for uid in asked for role in listing(f"{box.url}/api/v1/users/{uid}/roles")]
    assert sorted((r["_user_id"], r["id"]) for r in roles) == sorted(held)
    assert {r["assignmentType"] for r in roles} == {"USER", "GROUP"}
    assert materialization_metadata(result, "okta_user_roles")["records"] == len(held)


def test_a_token_that_may_not_read_roles_skips_the_roles_asset_naming_the_scope(box, okta, collection, file_stores):
    box.add_fault(Fault(route="okta.user_roles", kind="403", times=0))
    instance = dg.DagsterInstance.ephemeral()
    result = run(okta, collection, file_stores, selection=["okta_users", "okta_user_roles"], instance=instance)
    assert result.success, failure_text(result)
    assert materialized_tags(result) == {"okta_users"}
    [event] = result.get_asset_observation_events()
    reason = event.event_specific_data.asset_observation.metadata["skipped"].value
    assert "E0000006" in reason and "okta.roles.read" in reason and SANDBOX_TOKEN not in reason
    assert box.stats()["okta.user_roles"] == 1  # the first refusal decides: the token's permission, not the user's
    assert "okta_user_roles skipped" in log_text(instance, result)


def test_roles_of_a_user_deleted_since_the_listing_are_skipped_with_a_warning(box, okta, tmp_path, caplog):
    everyone = listing(f"{box.url}/api/v1/users", {"search": okta_source.USER_SEARCH})
    admin = next(u for u in everyone if listing(f"{box.url}/api/v1/users/{u['id']}/roles"))
    deleted = {"id": "00uDeletedSinceTheList", "status": "ACTIVE"}
    spool = Spool(RunContext("okta_user_roles", "acme"), tmp_path / "spool")
    with okta.client(CollectionResource().http_settings()) as http:
        pull = Pull(okta, http, spool, {"okta_users": [deleted, admin]}, logging.getLogger("okta-test"))
        with caplog.at_level(logging.WARNING, logger="okta-test"):
            okta_source.pull_user_roles(pull)
    snapshot = spool.close()
    assert snapshot.records == len(listing(f"{box.url}/api/v1/users/{admin['id']}/roles"))
    assert "1 user(s) of okta_users no longer exist (404)" in caplog.text
    snapshot.discard()


def test_the_pull_pauses_before_the_org_wide_rate_limit_runs_out(collection, file_stores):
    with Sandbox(
        seed=SEED, token=SANDBOX_TOKEN, okta=OktaVolume(users=20, groups=1, rate_limit=10, rate_window=1)
    ) as box:
        resource = OktaResource(domain=box.url, token=SANDBOX_TOKEN, rate_limit_reserve=20)
        instance = dg.DagsterInstance.ephemeral()
        result = run(
            resource, collection, file_stores, selection=["okta_users", "okta_user_factors"], instance=instance
        )
        assert result.success, failure_text(result)
        factor_requests = box.stats()["okta.factors"]
    md = materialization_metadata(result, "okta_user_factors")
    assert factor_requests > 10  # more than one window's quota
    assert md["http_throttled"] == 0 and md["http_retries"] == 0  # never ran into a 429
    assert md["http_paced_seconds"] > 0
    assert "until it resets" in log_text(instance, result)


def test_a_429_waits_for_the_rate_limit_reset_rather_than_a_fixed_delay(collection, file_stores):
    with Sandbox(seed=SEED, token=SANDBOX_TOKEN, okta=OktaVolume(users=12, rate_window=1)) as box:
        # Retry-After says 30 s, beyond the 10 s budget: only honouring X-Rate-Limit-Reset (<= 1 s away) succeeds.
        box.add_fault(Fault(route="okta.users", kind="429", times=1, after=1, retry_after=30))
        result = run(
            OktaResource(domain=box.url, token=SANDBOX_TOKEN, page_limit=5),
            collection,
            file_stores,
            selection="okta_users",
        )
    assert result.success, failure_text(result)
    md = materialization_metadata(result, "okta_users")
    assert md["records"] == 12 and md["http_throttled"] == 1 and md["http_retries"] == 1
    assert md["http_waited_seconds"] <= 1.05


def test_an_auth_failure_fails_naming_the_variables(box, collection, file_stores):
    bad = OktaResource(domain=box.url, token="00expired-okta-token")
    result = run(bad, collection, file_stores, selection="okta_groups")
    assert not result.success
    text = failure_text(result)
    assert "HTTP 401" in text and "E0000011" in text and "OKTA_TOKEN" in text and "OKTA_DOMAIN" in text
    assert "00expired-okta-token" not in text
    assert "okta_groups" not in materialized_tags(result)


def test_a_malformed_page_is_retried_and_the_records_are_exact(box, okta, collection, all_stores, pg_conn):
    box.add_fault(Fault(route="okta.users", kind="malformed", times=1, after=2))
    result = run(okta, collection, all_stores, selection="okta_users")
    assert result.success, failure_text(result)
    md = materialization_metadata(result, "okta_users")
    assert md["records"] == 45 and md["http_retries"] == 1
    assert len(pg_rows(pg_conn, all_stores.postgres_schema, "okta_users_latest")) == 45


def test_a_page_size_outside_okta_limits_is_refused_before_any_request(box, collection, file_stores):
    result = run(
        OktaResource(domain=box.url, token=SANDBOX_TOKEN, page_limit=500),
        collection,
        file_stores,
        selection="okta_groups",
    )
    assert not result.success and "OKTA_PAGE_LIMIT must be between 1 and 200" in failure_text(result)
    assert box.stats() == {}


def test_groups_carry_oktas_member_counts_and_group_members_report_their_sum(box, okta, collection, file_stores):
    expected = sandbox_counts(box)["okta_group_members"]
    result = run(okta, collection, file_stores, selection=["okta_groups", "okta_group_members"], checks=True)
    assert result.success, failure_text(result)
    groups = file_doc(file_stores, "okta_groups")["data"]
    assert sum(g["_embedded"]["stats"]["usersCount"] for g in groups) == expected  # kept as Okta sends them
    md = materialization_metadata(result, "okta_group_members")
    assert md["records"] == md["reported_total"] == expected
    assert count_stable(result, "okta_group_members").passed


def test_a_group_listing_fewer_members_than_its_count_warns_though_no_page_was_short(box, collection, file_stores):
    expected = sandbox_counts(box)["okta_group_members"]
    # One page per group (no next link to re-ask by): one member left out is seen by the count alone.
    box.add_fault(Fault(route="okta.group_members", kind="short", times=1, after=1))
    instance = dg.DagsterInstance.ephemeral()
    resource = OktaResource(domain=box.url, token=SANDBOX_TOKEN, page_limit=200)
    result = run(
        resource, collection, file_stores, ["okta_groups", "okta_group_members"], instance=instance, checks=True
    )
    assert result.success, failure_text(result)
    md = materialization_metadata(result, "okta_group_members")
    assert md["records"] == expected - 1 and md["reported_total"] == expected and md["http_short_pages"] == 0
    stable = count_stable(result, "okta_group_members")
    assert not stable.passed and stable.severity == dg.AssetCheckSeverity.WARN
    assert f"reported {expected} records but {expected - 1} arrived" in stable.description
    assert "1 group(s) list another number of members than okta_groups' usersCount" in log_text(instance, result)


def test_a_short_users_page_with_a_next_link_is_asked_for_again_and_nothing_is_lost(box, okta, collection, file_stores):
    box.add_fault(Fault(route="okta.users", kind="short", times=1, after=1))
    result = run(okta, collection, file_stores, selection="okta_users")
    assert result.success, failure_text(result)
    md = materialization_metadata(result, "okta_users")
    assert md["records"] == 45 and md["http_short_pages"] == 0
    assert box.stats()["okta.users"] == 5 + 1  # the second page asked twice


def test_a_users_page_short_twice_is_counted_and_record_count_stable_warns(box, okta, collection, file_stores):
    box.add_fault(Fault(route="okta.users", kind="short", times=2, after=1))
    result = run(okta, collection, file_stores, selection="okta_users", checks=True)
    assert result.success, failure_text(result)
    md = materialization_metadata(result, "okta_users")
    assert md["records"] == 44 and md["http_short_pages"] == 1
    stable = count_stable(result, "okta_users")
    assert not stable.passed and stable.severity == dg.AssetCheckSeverity.WARN
    assert "1 page(s) came back shorter than the page size asked for" in stable.description


@pytest.mark.parametrize(
    "domain, base",
    [
        ("acme.okta.com", "https://acme.okta.com/"),
        ("https://acme.okta.com/", "https://acme.okta.com/"),
        ("https://acme-admin.okta.com", "https://acme.okta.com/"),
        ("acme.okta-emea.com/api/v1", "https://acme.okta-emea.com/"),
        ("http://127.0.0.1:8800", "http://127.0.0.1:8800/"),
        ("login.acme.example", "https://login.acme.example/"),
        ("acme-admin.okta.com.example", "https://acme-admin.okta.com.example/"),  # not Okta's: left as it is
    ],
)
def test_okta_domain_takes_a_bare_domain_a_url_or_the_admin_host(domain, base):
    assert okta_base_url(domain) == base


def test_a_next_link_to_another_host_fails_naming_both_origins_and_okta_domain():
    http = HttpSession("Okta", "https://acme.okta.com")
    link = (
        '<https://elsewhere.example/api/v1/users?limit=2>; rel="self", '
        '<https://elsewhere.example/api/v1/users?after=000uX&limit=2>; rel="next"'
    )
    response = HttpResponse(200, {"Link": link}, b"[]", "https://acme.okta.com/api/v1/users")
    with pytest.raises(CollectionError) as raised:
        okta_source._next_link(http, response)
    text = str(raised.value)
    assert "https://elsewhere.example" in text and "https://acme.okta.com" in text and "OKTA_DOMAIN" in text


def test_a_next_link_on_the_configured_origin_is_followed_as_given():
    http = HttpSession("Okta", "https://acme.okta.com")
    link = '<https://acme.okta.com:443/api/v1/users?after=000uX&limit=2>; rel="next"'
    response = HttpResponse(200, {"Link": link}, b"[]", "https://acme.okta.com/api/v1/users")
    assert okta_source._next_link(http, response) == "https://acme.okta.com:443/api/v1/users?after=000uX&limit=2"
