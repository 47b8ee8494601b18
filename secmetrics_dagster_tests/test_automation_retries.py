"""Step retries on top of the HTTP retries: a transient failure is retried before stale data is served, the
S3 backup is served only on the last attempt, and refused credentials are not retried at all.

A small test source whose pull fails a set number of times stands in for a vendor; its assets are built
with COLLECTION_STEP_RETRIES=2 and no delay (the suite otherwise runs steps once, see conftest.py).
"""

import dagster as dg
import pytest

from secmetrics_dagster.assets import build_assets, factory, policies
from secmetrics_dagster.collection import AuthError, CollectionError, HttpSession
from secmetrics_dagster.sources.base import DatasetSpec, Source, VendorResource
from secmetrics_dagster.stores import SnapshotIOManager, StoresResource

from .helpers import failure_text, log_text, materialization_metadata


class FlakyResource(VendorResource):
    def missing_env(self):
        return []

    def client(self, settings, logger=None):
        return HttpSession("Flaky", "http://127.0.0.1:9/", settings=settings, logger=logger)


class Vendor:
    """How the next pulls go: `failures` of them raise `error`, then they return five things."""

    def __init__(self):
        self.calls = 0
        self.failures = 0
        self.error: Exception = CollectionError("Flaky: GET /things failed after 6 attempts: HTTP 503")

    def pull(self, pull):
        self.calls += 1
        if self.failures:
            self.failures -= 1
            raise self.error
        pull.spool.extend({"id": i} for i in range(5))


@pytest.fixture
def vendor():
    return Vendor()


@pytest.fixture
def flaky_assets(monkeypatch, vendor):
    monkeypatch.setenv("COLLECTION_STEP_RETRIES", "2")
    monkeypatch.setenv("COLLECTION_STEP_RETRY_DELAY", "0")
    flaky = Source(
        group="flaky",
        title="Flaky tool",
        docs_url="https://example.invalid/docs",
        resource=FlakyResource,
        datasets=(DatasetSpec("flaky_things", "Things", "Five things.", "GET /things", pull=vendor.pull),),
        sandbox_env=lambda url, token: {},
    )
    return build_assets([flaky])


@pytest.fixture
def stores(tmp_path, bucket, s3_endpoint):
    return StoresResource(
        file_template=str(tmp_path / "data/%TAG/%TENANCY.json"),
        s3_bucket=bucket,
        s3_backup="backup/%TAG/%TENANCY.json",
        s3_endpoint_url=s3_endpoint,
    )


def _run(assets, collection, stores, instance):
    return dg.materialize(
        assets,
        instance=instance,
        raise_on_error=False,
        resources={
            "collection": collection,
            "stores": stores,
            "snapshot_io_manager": SnapshotIOManager(stores=stores),
            "flaky": FlakyResource(),
        },
    )


def _retries(instance, result) -> int:
    return sum(
        1
        for e in instance.all_logs(result.run_id)
        if e.dagster_event and e.dagster_event.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY
    )


def _with_backup(flaky_assets, collection, stores, vendor):
    instance = dg.DagsterInstance.ephemeral()
    assert _run(flaky_assets, collection, stores, instance).success
    vendor.calls = 0
    return instance


def test_every_collection_asset_retries_its_step_with_backoff_and_jitter(flaky_assets):
    policy = flaky_assets[0].op.retry_policy
    assert (policy.max_retries, policy.backoff, policy.jitter) == (2, dg.Backoff.EXPONENTIAL, dg.Jitter.PLUS_MINUS)


def test_a_transient_failure_is_retried_and_collected_from_the_api_not_the_backup(
    flaky_assets, collection, stores, vendor
):
    instance = _with_backup(flaky_assets, collection, stores, vendor)
    vendor.failures = 1
    result = _run(flaky_assets, collection, stores, instance)
    assert result.success, failure_text(result)
    assert vendor.calls == 2 and _retries(instance, result) == 1
    assert materialization_metadata(result, "flaky_things")["source"] == "api"
    assert "flaky_things: attempt 1 of 3 failed (" in log_text(instance, result)


def test_the_backup_is_served_only_on_the_last_attempt(flaky_assets, collection, stores, vendor):
    instance = _with_backup(flaky_assets, collection, stores, vendor)
    vendor.failures = 99
    result = _run(flaky_assets, collection, stores, instance)
    assert result.success, failure_text(result)
    assert vendor.calls == 3 and _retries(instance, result) == 2
    md = materialization_metadata(result, "flaky_things")
    assert md["source"] == "backup" and md["records"] == 5 and "HTTP 503" in md["fallback_reason"]


def test_without_a_backup_the_last_attempt_fails_with_the_pull_error(flaky_assets, collection, stores, vendor):
    instance = dg.DagsterInstance.ephemeral()
    vendor.failures = 99
    result = _run(flaky_assets, collection, stores, instance)
    assert not result.success and vendor.calls == 3
    assert "HTTP 503" in failure_text(result)


def test_refused_credentials_are_not_retried(flaky_assets, collection, stores, vendor):
    instance = dg.DagsterInstance.ephemeral()
    vendor.failures, vendor.error = 99, AuthError("Flaky: GET /things was refused with HTTP 401. Check FLAKY_TOKEN")
    result = _run(flaky_assets, collection, stores, instance)
    assert not result.success and vendor.calls == 1 and _retries(instance, result) == 0
    assert "Check FLAKY_TOKEN" in failure_text(result)


def test_refused_credentials_serve_the_backup_at_once(flaky_assets, collection, stores, vendor):
    instance = _with_backup(flaky_assets, collection, stores, vendor)
    vendor.failures, vendor.error = 99, AuthError("Flaky: GET /things was refused with HTTP 401. Check FLAKY_TOKEN")
    result = _run(flaky_assets, collection, stores, instance)
    assert result.success and vendor.calls == 1
    assert materialization_metadata(result, "flaky_things")["source"] == "backup"


def test_an_attempt_knows_how_long_until_the_next_and_until_the_last(monkeypatch):
    monkeypatch.setenv("COLLECTION_STEP_RETRIES", "2")
    monkeypatch.setenv("COLLECTION_STEP_RETRY_DELAY", "60")
    policy = policies.step_retry_policy()
    # Exponential backoff: 60 s before attempt 2, 120 s before attempt 3 (jitter aside).
    assert policies.attempt_plan(policy, 0) == policies.AttemptPlan(1, 3, 60.0, 180.0)
    assert policies.attempt_plan(policy, 1) == policies.AttemptPlan(2, 3, 120.0, 120.0)
    last = policies.attempt_plan(policy, 2)
    assert last == policies.AttemptPlan(3, 3, None, 0.0) and last.is_last
    assert policies.attempt_plan(None, 0).is_last


def test_a_failed_attempt_says_when_the_next_starts_and_when_the_backup_would_be_served(monkeypatch):
    monkeypatch.setenv("COLLECTION_STEP_RETRIES", "2")
    monkeypatch.setenv("COLLECTION_STEP_RETRY_DELAY", "60")
    plan = policies.attempt_plan(policies.step_retry_policy(), 0)
    backup = factory.BackupOutlook(True, "the S3 backup s3://b/backup/x/acme.json collected 2026-11-30T06:00:00Z")
    assert factory.retry_message("x", "HTTP 503", plan, backup) == (
        "x: attempt 1 of 3 failed (HTTP 503). Dagster starts attempt 2 of 3 in about 60 s. If attempt 3 fails too, "
        "the S3 backup s3://b/backup/x/acme.json collected 2026-11-30T06:00:00Z is served then, about 180 s from "
        "now plus the time the attempts themselves take."
    )
    none = factory.BackupOutlook(False, "COLLECTION_FALLBACK=false turns the fallback off")
    assert factory.retry_message("x", "HTTP 503", plan, none).endswith(
        "If attempt 3 fails too, the step fails and no backup will be served: COLLECTION_FALLBACK=false turns the "
        "fallback off."
    )
