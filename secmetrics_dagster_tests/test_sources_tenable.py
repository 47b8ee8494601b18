"""Tenable.io assets end to end in-process: sandbox -> real pyTenable -> spool -> all four stores; export jobs, faults."""

import json
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
import requests

from secmetrics_dagster.collection.errors import ConfigError
from secmetrics_dagster.sandbox import Fault, Sandbox, TenableVolume
from secmetrics_dagster.sandbox.tenable import api_keys
from secmetrics_dagster.sources import tenable as tenable_source
from secmetrics_dagster.sources.tenable import TenableResource
from secmetrics_dagster.stores import StoresResource

from .conftest import SANDBOX_TOKEN
from .harness import materialize_source
from .helpers import (
    failure_text,
    log_text,
    materialization_metadata,
    materialized_tags,
    replace,
    store_counts,
    stored_file,
)

TAGS = ["tenable_assets", "tenable_vulnerabilities", "tenable_findings", "tenable_was"]
STORES = ["file", "s3", "postgres", "duckdb"]
HEADERS = {"X-APIKeys": api_keys(SANDBOX_TOKEN)}


@pytest.fixture
def tenable(sandbox) -> TenableResource:
    # Chunk sizes small enough that every export has several chunks; a near-zero poll interval keeps it quick.
    return TenableResource(
        access_key=SANDBOX_TOKEN,
        secret_key=SANDBOX_TOKEN,
        url=sandbox.url,
        asset_chunk_size=100,
        compliance_num_findings=50,
        export_poll_seconds=0.01,
        export_threads=4,
    )


def run(tenable, collection, stores, instance=None, selection=None):
    return materialize_source(
        tenable_source.SOURCE, tenable, collection, stores, instance=instance, selection=selection
    )


def sandbox_export(sandbox, kind: str, body: dict) -> list[dict]:
    """Every record of one export, fetched with plain requests (independent of the collector and of pyTenable)."""
    uuid = requests.post(f"{sandbox.url}/{kind}/export", json=body, headers=HEADERS).json()["export_uuid"]
    status = {"status": "QUEUED"}
    while status["status"] != "FINISHED":
        status = requests.get(f"{sandbox.url}/{kind}/export/{uuid}/status", headers=HEADERS).json()
    return [
        record
        for chunk in status["chunks_available"]
        for record in requests.get(f"{sandbox.url}/{kind}/export/{uuid}/chunks/{chunk}", headers=HEADERS).json()
    ]


def sandbox_was_count(sandbox) -> int:
    count = 0
    configs = requests.post(f"{sandbox.url}/was/v2/configs/search", json={}, headers=HEADERS).json()["items"]
    for config in configs:
        targets = requests.post(
            f"{sandbox.url}/was/v2/scans/{config['last_scan']['scan_id']}/vulnerabilities/by-targets/search",
            headers=HEADERS,
        ).json()["items"]
        for target in targets:
            report = requests.get(f"{sandbox.url}/was/v2/scans/{target['scan']['scan_id']}/report", headers=HEADERS)
            count += len(report.json()["findings"])
    return count


def stored(stores: StoresResource, tag: str) -> list[dict]:
    return json.loads(stored_file(stores, tag, "acme").read_text())["data"]


def nothing_stored(stores: StoresResource, s3_client, tag: str) -> bool:
    file_missing = not stored_file(stores, tag, "acme").exists()
    return (
        file_missing and s3_client.list_objects_v2(Bucket=stores.s3_bucket, Prefix=f"backup/{tag}").get("KeyCount") == 0
    )


def test_every_tenable_asset_lands_in_all_four_stores_with_the_sandbox_counts(
    sandbox, tenable, collection, all_stores, s3_client, pg_conn
):
    result = run(tenable, collection, all_stores)
    assert result.success, failure_text(result)
    expected = {
        "tenable_assets": len(sandbox_export(sandbox, "assets", {"chunk_size": 1000})),
        "tenable_vulnerabilities": len(
            sandbox_export(sandbox, "vulns", {"filters": {"state": ["OPEN", "REOPENED", "FIXED"]}})
        ),
        "tenable_findings": len(sandbox_export(sandbox, "compliance", {})),
        "tenable_was": sandbox_was_count(sandbox),
    }
    assert expected == {
        "tenable_assets": 120,
        "tenable_vulnerabilities": 600,
        "tenable_findings": 150,
        "tenable_was": 42,
    }
    for tag in TAGS:
        assert store_counts(all_stores, s3_client, pg_conn, tag) == dict.fromkeys(STORES, expected[tag]), tag
        assert materialization_metadata(result, tag)["records"] == expected[tag]


def test_chunks_downloaded_concurrently_give_each_finding_exactly_once(tenable, collection, file_stores):
    result = run(tenable, collection, file_stores, selection="tenable_vulnerabilities")
    assert result.success, failure_text(result)
    findings = stored(file_stores, "tenable_vulnerabilities")
    ids = [f["finding_id"] for f in findings]
    assert len(ids) == 600 and len(set(ids)) == 600
    meta = {(f["_tenancy"], f["_upload_id"], f["_upload_timestamp"]) for f in findings}
    assert len(meta) == 1 and next(iter(meta))[0] == "acme"


def test_the_configured_states_and_time_window_are_what_the_export_asks_for(sandbox, tenable, collection, file_stores):
    result = run(
        replace(tenable, vuln_states="open", since_days=7), collection, file_stores, selection="tenable_vulnerabilities"
    )
    assert result.success, failure_text(result)
    jobs = requests.get(f"{sandbox.url}/vulns/export/status", headers=HEADERS).json()["exports"]
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    assert [job["filters"] for job in jobs] == [
        {"state": ["OPEN"], "since": int((midnight - timedelta(days=7)).timestamp())}
    ]
    open_only = len(sandbox_export(sandbox, "vulns", {"filters": {"state": ["OPEN"]}}))
    assert materialization_metadata(result, "tenable_vulnerabilities")["records"] == open_only < 600


def test_the_vulnerability_states_setting_is_checked_before_any_request(sandbox, tenable, collection, file_stores):
    result = run(
        replace(tenable, vuln_states="open,closed"), collection, file_stores, selection="tenable_vulnerabilities"
    )
    assert not result.success
    assert "TIO_VULN_STATES='open,closed'" in failure_text(result)
    assert sandbox.stats().get("tenable.vulns.export") is None


def test_a_retried_run_resumes_the_export_job_instead_of_starting_a_new_one(sandbox, tenable, collection, file_stores):
    instance = dg.DagsterInstance.ephemeral()
    sandbox.add_fault(Fault(route="tenable.vulns.chunk", kind="500", times=0))
    first = run(tenable, collection, file_stores, instance=instance, selection="tenable_vulnerabilities")
    assert not first.success and "HTTP 500" in failure_text(first)
    sandbox.clear_faults()
    second = run(tenable, collection, file_stores, instance=instance, selection="tenable_vulnerabilities")
    assert second.success, failure_text(second)
    assert sandbox.stats()["tenable.vulns.export"] == 1  # one POST: the second run re-attached to the first job
    assert materialization_metadata(second, "tenable_vulnerabilities")["records"] == 600
    assert "resuming the vulns export" in log_text(instance, second)


def test_a_duplicate_export_request_adopts_the_job_tenable_is_still_running(
    sandbox, tenable, collection, file_stores, tmp_path
):
    sandbox.add_fault(Fault(route="tenable.vulns.status", kind="503", times=0))
    first = run(tenable, collection, file_stores, selection="tenable_vulnerabilities")
    assert not first.success
    # A fresh container: the spool directory that remembered the job is gone, the job is still QUEUED at Tenable.
    for state in (tmp_path / "spool" / "tenable-exports").glob("*.json"):
        state.unlink()
    sandbox.clear_faults()
    second = run(tenable, collection, file_stores, selection="tenable_vulnerabilities")
    assert second.success, failure_text(second)
    assert sandbox.stats()["tenable.vulns.export"] == 2  # the second POST was answered 409 with the active job
    assert len(requests.get(f"{sandbox.url}/vulns/export/status", headers=HEADERS).json()["exports"]) == 1
    assert materialization_metadata(second, "tenable_vulnerabilities")["records"] == 600


@pytest.mark.parametrize("outcome", ["ERROR", "CANCELLED", "chunks_failed"])
def test_an_export_job_lost_on_tenables_side_fails_the_pull_naming_the_job(
    tenable, collection, all_stores, s3_client, outcome
):
    with Sandbox(seed=7, token=SANDBOX_TOKEN, tenable=TenableVolume(export_faults=(f"vulns:{outcome}",))) as box:
        result = run(replace(tenable, url=box.url), collection, all_stores, selection="tenable_vulnerabilities")
        job = requests.get(f"{box.url}/vulns/export/status", headers=HEADERS).json()["exports"][0]["uuid"]
    assert not result.success
    text = failure_text(result)
    assert f"export job {job}" in text and "nothing was stored" in text
    assert (f"status {outcome}" in text) if outcome != "chunks_failed" else ("failed chunk(s) [3]" in text)
    assert nothing_stored(all_stores, s3_client, "tenable_vulnerabilities")


def test_after_a_lost_export_job_the_next_run_starts_a_new_one(tenable, collection, file_stores):
    with Sandbox(seed=7, token=SANDBOX_TOKEN, tenable=TenableVolume(export_faults=("vulns:ERROR",))) as box:
        for _ in range(2):
            assert not run(
                replace(tenable, url=box.url), collection, file_stores, selection="tenable_vulnerabilities"
            ).success
        assert box.stats()["tenable.vulns.export"] == 2


def test_a_chunk_that_keeps_failing_fails_the_pull_naming_the_job_and_chunk(
    sandbox, tenable, collection, all_stores, s3_client
):
    sandbox.add_fault(Fault(route="tenable.vulns.chunk", kind="500", times=0))
    result = run(tenable, collection, all_stores, selection="tenable_vulnerabilities")
    assert not result.success
    job = requests.get(f"{sandbox.url}/vulns/export/status", headers=HEADERS).json()["exports"][0]["uuid"]
    text = failure_text(result)
    assert f"/vulns/export/{job}/chunks/" in text and "HTTP 500" in text and "after pyTenable's retries" in text
    assert nothing_stored(all_stores, s3_client, "tenable_vulnerabilities")


def test_a_chunk_that_never_parses_fails_instead_of_counting_as_empty(sandbox, tenable, collection, file_stores):
    sandbox.add_fault(Fault(route="tenable.vulns.chunk", kind="malformed", times=0))
    result = run(tenable, collection, file_stores, selection="tenable_vulnerabilities")
    assert not result.success
    assert "was not a JSON array in 3 attempts" in failure_text(result)


@pytest.mark.parametrize(
    "route,kind",
    [
        ("tenable.vulns.chunk", "429"),
        ("tenable.vulns.chunk", "500"),
        ("tenable.vulns.chunk", "timeout"),
        ("tenable.vulns.chunk", "truncated"),
        ("tenable.vulns.chunk", "malformed"),
        ("tenable.vulns.status", "503"),
        ("tenable.vulns.status", "malformed"),
        ("tenable.vulns.export", "429"),
    ],
)
def test_transient_faults_are_retried_and_give_the_exact_records(
    sandbox, tenable, collection, all_stores, s3_client, pg_conn, route, kind
):
    sandbox.add_fault(
        Fault(route=route, kind=kind, times=1, after=1 if route.endswith("chunk") else 0, retry_after=1, delay=2.0)
    )
    result = run(tenable, collection, all_stores, selection="tenable_vulnerabilities")
    assert result.success, failure_text(result)
    md = materialization_metadata(result, "tenable_vulnerabilities")
    assert md["records"] == 600 and md["source"] == "api"
    assert md["http_retries"] == 1 and md["http_throttled"] == (1 if kind == "429" else 0)
    assert store_counts(all_stores, s3_client, pg_conn, "tenable_vulnerabilities")["postgres"] == 600


def test_a_429_is_waited_out_for_as_long_as_retry_after_says(sandbox, tenable, collection, file_stores):
    sandbox.add_fault(Fault(route="tenable.assets.chunk", kind="429", times=1, retry_after=1))
    result = run(tenable, collection, file_stores, selection="tenable_assets")
    assert result.success, failure_text(result)
    assert materialization_metadata(result, "tenable_assets")["http_waited_seconds"] >= 1.0


def test_rejected_keys_fail_naming_the_variables_and_never_the_secret(sandbox, tenable, collection, file_stores):
    bad = replace(tenable, secret_key="expired-secret-key")
    result = run(bad, collection, file_stores, selection="tenable_assets")
    assert not result.success
    text = failure_text(result)
    assert "HTTP 401" in text and "TIO_ACCESS_KEY and TIO_SECRET_KEY" in text and "expired-secret-key" not in text


def test_keys_without_export_permission_fail_with_http_403_and_the_hint(sandbox, tenable, collection, file_stores):
    sandbox.add_fault(Fault(route="tenable.was.configs", kind="403", times=0))
    result = run(tenable, collection, file_stores, selection="tenable_was")
    assert not result.success
    text = failure_text(result)
    assert "HTTP 403" in text and "/was/v2/configs/search" in text and "must be allowed to read and export" in text


def test_a_failed_pull_serves_the_last_backup_labelled_as_such(sandbox, tenable, collection, all_stores):
    instance = dg.DagsterInstance.ephemeral()
    first = run(tenable, collection, all_stores, instance=instance, selection="tenable_findings")
    assert first.success, failure_text(first)
    sandbox.add_fault(Fault(route="tenable.compliance.export", kind="503", times=0))
    second = run(tenable, collection, all_stores, instance=instance, selection="tenable_findings")
    assert second.success, failure_text(second)
    md = materialization_metadata(second, "tenable_findings")
    assert md["source"] == "backup" and md["records"] == 150
    assert md["upload_id"] == materialization_metadata(first, "tenable_findings")["upload_id"]
    assert "HTTP 503" in md["fallback_reason"]


def test_without_keys_the_assets_are_skipped_with_a_warning_naming_both_variables(collection, file_stores):
    instance = dg.DagsterInstance.ephemeral()
    result = run(TenableResource(), collection, file_stores, instance=instance)
    assert result.success and materialized_tags(result) == set()
    assert "missing environment variable(s) TIO_ACCESS_KEY, TIO_SECRET_KEY" in log_text(instance, result)


def test_from_env_reads_the_documented_variables(monkeypatch):
    for name, value in {
        "TIO_ACCESS_KEY": "a",
        "TIO_SECRET_KEY": "s",
        "TIO_URL": "http://proxy:8080/tio",
        "TIO_VULN_STATES": "open",
        "TIO_SINCE_DAYS": "0",
        "TIO_VULN_NUM_ASSETS": "100",
        "TIO_ASSET_CHUNK_SIZE": "500",
        "TIO_COMPLIANCE_NUM_FINDINGS": "200",
        "TIO_EXPORT_THREADS": "8",
        "TIO_EXPORT_POLL_SECONDS": "2.5",
        "TIO_EXPORT_RESUME_HOURS": "6",
    }.items():
        monkeypatch.setenv(name, value)
    resource = TenableResource.from_env()
    assert (
        resource.url,
        resource.states(),
        resource.since(),
        resource.vuln_num_assets,
        resource.asset_chunk_size,
        resource.compliance_num_findings,
        resource.export_threads,
        resource.export_poll_seconds,
        resource.export_resume_hours,
    ) == ("http://proxy:8080/tio", ["OPEN"], None, 100, 500, 200, 8, 2.5, 6.0)
    monkeypatch.setenv("TIO_EXPORT_THREADS", "many")
    with pytest.raises(ConfigError, match="TIO_EXPORT_THREADS must be a whole number from 1 to 64, got 'many'"):
        TenableResource.from_env()
