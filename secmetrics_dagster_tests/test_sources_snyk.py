"""Snyk assets end to end in-process: sandbox -> pull -> spool -> all four stores, faults and fallback."""

import json

import dagster as dg
import pytest
import requests

from secmetrics_dagster.sandbox import Fault, Sandbox, SnykVolume
from secmetrics_dagster.sources import snyk as snyk_source
from secmetrics_dagster.sources.snyk import SnykResource
from secmetrics_dagster.stores.verify import stores_written

from .conftest import SANDBOX_TOKEN
from .harness import materialize_source
from .helpers import (
    duck_rows,
    failure_text,
    log_text,
    materialization_metadata,
    materialized_tags,
    pg_rows,
    replace,
    store_counts,
    stored_file,
)

TAGS = ["snyk_organizations", "snyk_members", "snyk_projects", "snyk_issues"]


def run(snyk, collection, stores, instance=None, selection=None, assets=None):
    return materialize_source(
        snyk_source.SOURCE, snyk, collection, stores, instance=instance, selection=selection, assets=assets
    )


def expected_counts(sandbox) -> dict:
    """What the sandbox holds, counted with plain requests (independent of the collector's client)."""
    headers = {"Authorization": f"token {SANDBOX_TOKEN}"}
    orgs = requests.get(
        f"{sandbox.url}/rest/orgs", params={"version": "2024-10-15", "limit": 100}, headers=headers
    ).json()["data"]
    counts = {"snyk_organizations": len(orgs), "snyk_members": 0, "snyk_projects": 0, "snyk_issues": 0}
    for org in orgs:
        counts["snyk_members"] += len(
            requests.get(
                f"{sandbox.url}/v1/org/{org['id']}/members", params={"includeGroupAdmins": "true"}, headers=headers
            ).json()
        )
        for tag, path in (("snyk_projects", "projects"), ("snyk_issues", "issues")):
            url, params = f"{sandbox.url}/rest/orgs/{org['id']}/{path}", {"version": "2024-10-15", "limit": 100}
            while url:
                body = requests.get(url, params=params, headers=headers).json()
                counts[tag] += len(body["data"])
                nxt = body["links"].get("next")
                url, params = (f"{sandbox.url}/rest{nxt}" if nxt else None), None
    return counts


def test_every_snyk_asset_lands_in_all_four_stores_with_the_sandbox_counts(
    sandbox, snyk, collection, all_stores, s3_client, pg_conn
):
    result = run(snyk, collection, all_stores)
    assert result.success, failure_text(result)
    expected = expected_counts(sandbox)
    assert expected == {
        "snyk_organizations": 2,
        "snyk_members": expected["snyk_members"],
        "snyk_projects": 46,
        "snyk_issues": 114,
    }
    for tag in TAGS:
        assert store_counts(all_stores, s3_client, pg_conn, tag) == dict.fromkeys(
            ["file", "s3", "postgres", "duckdb"], expected[tag]
        ), tag
        assert materialization_metadata(result, tag)["records"] == expected[tag]


def test_records_are_unique_and_carry_the_collection_stamps(snyk, collection, file_stores):
    result = run(snyk, collection, file_stores)
    assert result.success, failure_text(result)
    doc = json.loads(stored_file(file_stores, "snyk_issues", "acme").read_text())
    ids = [r["id"] for r in doc["data"]]
    assert len(ids) == len(set(ids))
    meta = doc["metadata"]
    assert {(r["_tenancy"], r["_upload_id"], r["_upload_timestamp"]) for r in doc["data"]} == {
        (meta["tenancy"], meta["upload_id"], meta["timestamp"])
    }
    members = json.loads(stored_file(file_stores, "snyk_members", "acme").read_text())
    assert all(m["_org_id"] for m in members["data"])


def test_metadata_tells_where_each_store_wrote_how_many_and_from_where(snyk, collection, all_stores):
    result = run(snyk, collection, all_stores)
    md = materialization_metadata(result, "snyk_projects")
    assert md["source"] == "api" and md["tenancy"] == "acme" and md["expected_total"] == 46
    stores = stores_written(md)  # the one `stores` table: a row per object written
    assert stores["file"]["where"].endswith("snyk_projects/acme.json")
    assert stores["s3 backup"]["where"] == f"s3://{all_stores.s3_bucket}/backup/snyk_projects/acme.json"
    assert stores["s3"]["where"].endswith(f"{md['upload_id']}.json")
    assert stores["postgres"]["where"] == f"{all_stores.postgres_schema}.snyk_projects"
    assert stores["duckdb"]["where"].endswith("::snyk_projects")
    for store in ("file", "s3", "postgres", "duckdb"):
        assert stores[store]["records"] == 46 and stores[store]["bytes"] > 0 and stores[store]["seconds"] >= 0
    assert md["http_requests"] >= 2 and md["http_retries"] == 0
    assert "postgres" in stores


@pytest.mark.parametrize("kind", ["429", "500", "timeout", "malformed", "truncated", "repeat"])
def test_transient_faults_mid_pagination_still_give_the_exact_records(
    sandbox, snyk, collection, all_stores, s3_client, pg_conn, kind
):
    sandbox.add_fault(Fault(route="snyk.issues", kind=kind, times=1, after=3, retry_after=0, delay=2.0))
    result = run(snyk, collection, all_stores)
    assert result.success, failure_text(result)
    md = materialization_metadata(result, "snyk_issues")
    assert md["records"] == 114 and md["source"] == "api"
    assert (md["http_retries"], md["http_repeated_pages"]) == ((0, 1) if kind == "repeat" else (1, 0))
    assert store_counts(all_stores, s3_client, pg_conn, "snyk_issues")["postgres"] == 114


def test_a_count_short_of_the_reported_total_fails_and_stores_nothing(sandbox, snyk, collection, all_stores, s3_client):
    # After the meta_count request; twice, because a short page with a next link is asked for once more.
    sandbox.add_fault(Fault(route="snyk.projects", kind="short", times=2, after=1))
    result = run(snyk, collection, all_stores)
    assert not result.success
    assert "reported 46 records but 45 arrived" in failure_text(result)
    assert "snyk_projects" not in materialized_tags(result)
    assert not stored_file(all_stores, "snyk_projects", "acme").exists()
    assert s3_client.list_objects_v2(Bucket=all_stores.s3_bucket, Prefix="backup/snyk_projects").get("KeyCount") == 0


def test_an_auth_failure_without_a_backup_fails_naming_the_variable(sandbox, collection, file_stores):
    bad = SnykResource(token="expired-token", endpoint=sandbox.url, page_limit=10)
    result = run(bad, collection, file_stores, selection="snyk_organizations")
    assert not result.success
    text = failure_text(result)
    assert "HTTP 401" in text and "Check SNYK_TOKEN" in text and "expired-token" not in text


def test_a_failed_pull_serves_the_last_backup_labelled_as_such(sandbox, snyk, collection, all_stores, pg_conn):
    instance = dg.DagsterInstance.ephemeral()
    first = run(snyk, collection, all_stores, instance=instance)
    assert first.success, failure_text(first)
    original = materialization_metadata(first, "snyk_issues")
    sandbox.add_fault(Fault(route="snyk.issues", kind="500", times=0))
    second = run(snyk, collection, all_stores, instance=instance)
    assert second.success, failure_text(second)
    md = materialization_metadata(second, "snyk_issues")
    assert md["source"] == "backup" and md["records"] == 114
    assert md["upload_id"] == original["upload_id"]
    assert (
        md["backup_collected_at"]
        == json.loads(stored_file(all_stores, "snyk_issues", "acme").read_text())["metadata"]["timestamp"]
    )
    assert md["backup_age_hours"] >= 0 and "HTTP 500" in md["fallback_reason"]
    assert materialization_metadata(second, "snyk_projects")["source"] == "api"
    assert "serving the last S3 backup" in log_text(instance, second)
    # reloading the same upload replaced it: no duplicate rows
    assert (
        len(pg_rows(pg_conn, all_stores.postgres_schema, "snyk_issues", f"WHERE upload_id = '{original['upload_id']}'"))
        == 114
    )


def test_with_fallback_disabled_a_failed_pull_fails(sandbox, snyk, collection, file_stores):
    assert run(snyk, collection, file_stores).success
    sandbox.add_fault(Fault(route="snyk.issues", kind="500", times=0))
    result = run(snyk, replace(collection, **{"fallback_to_backup": False}), file_stores)
    assert not result.success and "HTTP 500" in failure_text(result)


def test_a_failing_store_does_not_stop_the_others_and_is_named(snyk, collection, all_stores, s3_client, tmp_path):
    from .services import free_port

    broken = replace(all_stores, **{"postgres_port": free_port()})
    result = run(snyk, collection, broken, selection="snyk_organizations")
    assert not result.success
    text = failure_text(result)
    assert "postgres store failed" in text and "Stores written: file, s3, duckdb" in text
    assert stored_file(broken, "snyk_organizations", "acme").exists()
    assert s3_client.list_objects_v2(Bucket=broken.s3_bucket, Prefix="backup/snyk_organizations").get("KeyCount") == 1
    assert len(duck_rows(broken.duckdb_path, "snyk_organizations")) == 2


def test_a_hostile_tenancy_fails_before_anything_is_written(snyk, collection, all_stores, s3_client, tmp_path):
    result = run(snyk, replace(collection, **{"tenancy": "../../etc"}), all_stores, selection="snyk_organizations")
    assert not result.success and "invalid tenancy" in failure_text(result)
    assert not (tmp_path / "data/source").exists()
    assert s3_client.list_objects_v2(Bucket=all_stores.s3_bucket).get("KeyCount") == 0


@pytest.mark.parametrize("only", ["file", "duckdb", "postgres", "s3"])
def test_downstream_assets_stream_their_input_back_from_any_single_store(snyk, collection, all_stores, only):
    keep = {
        "file": {"file_template"},
        "duckdb": {"duckdb_path"},
        "postgres": {"postgres_host"},
        "s3": {"s3_bucket"},
    }[only]
    update = {k: None for k in ("file_template", "duckdb_path", "postgres_host", "s3_bucket") if k not in keep}
    single = replace(all_stores, **update)
    result = run(snyk, collection, single)
    assert result.success, failure_text(result)
    assert materialization_metadata(result, "snyk_issues")["records"] == 114


def test_a_corrupt_backup_is_not_served_and_the_original_error_stands(sandbox, snyk, collection, all_stores, s3_client):
    instance = dg.DagsterInstance.ephemeral()
    assert run(snyk, collection, all_stores, instance=instance, selection="snyk_organizations").success
    key = "backup/snyk_organizations/acme.json"
    whole = s3_client.get_object(Bucket=all_stores.s3_bucket, Key=key)["Body"].read()
    s3_client.put_object(Bucket=all_stores.s3_bucket, Key=key, Body=whole[: len(whole) // 2])
    sandbox.add_fault(Fault(route="snyk.orgs", kind="500", times=0))
    result = run(snyk, collection, all_stores, instance=instance, selection="snyk_organizations")
    assert not result.success
    assert "HTTP 500" in failure_text(result)
    assert "the backup could not be read either" in log_text(instance, result)


def test_without_any_backup_a_failed_pull_fails_with_its_own_error(sandbox, snyk, collection, file_stores):
    sandbox.add_fault(Fault(route="snyk.orgs", kind="503", times=0))
    result = run(snyk, collection, file_stores, selection="snyk_organizations")
    assert (
        not result.success and "HTTP 503" in failure_text(result) and "failed after 3 attempts" in failure_text(result)
    )


def test_a_listing_that_ends_with_an_empty_page_linking_to_itself_ends_there(collection, file_stores):
    # Snyk answers a listing that ends exactly on a page boundary with one more, empty, page whose links.next
    # equals links.self (snyk-labs/pysnyk#212): every record is kept and the pull ends.
    volume = SnykVolume(orgs=1, projects_per_org=20, issues_per_org=10, members_per_org=2, trailing_empty_page=1)
    with Sandbox(seed=7, token=SANDBOX_TOKEN, snyk=volume) as box:
        resource = SnykResource(token=SANDBOX_TOKEN, endpoint=box.url, page_limit=10)
        result = run(resource, collection, file_stores)
    assert result.success, failure_text(result)
    assert materialization_metadata(result, "snyk_projects")["records"] == 20
    assert materialization_metadata(result, "snyk_issues")["records"] == 10
