"""Freshness is judged on when the data was collected from the API: data served from an S3 backup reads as
stale even though it was just written to the stores.

Dagster 1.13's freshness daemon runs `TimeWindowFreshnessPolicyEvaluator` on each asset: it compares the
policy's windows with the timestamp of the asset's latest materialization event. These tests run that
same evaluator on the instance the runs wrote to.
"""

import asyncio
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
from dagster._core.definitions.freshness import FreshnessState
from dagster._core.definitions.freshness_evaluator import TimeWindowFreshnessPolicyEvaluator
from dagster._core.loader import LoadingContextForTest

from secmetrics_dagster import defs
from secmetrics_dagster.automation.restore import restore_job, run_config
from secmetrics_dagster.sandbox import Fault
from secmetrics_dagster.sources import snyk as snyk_source
from secmetrics_dagster.stores import S3Store, SnapshotIOManager
from secmetrics_dagster.stores.envelope import render_envelope

from .harness import source_assets
from .helpers import failure_text, make_snapshot, materialization_metadata


def freshness(instance, key: str) -> FreshnessState:
    node = defs.resolve_asset_graph().get(dg.AssetKey(key))  # the node the daemon evaluates, with its policy
    return asyncio.run(TimeWindowFreshnessPolicyEvaluator().evaluate_freshness(LoadingContextForTest(instance), node))


def plant_backup(stores, tmp_path, tag: str, hours_old: float, records: int = 3) -> datetime:
    """An S3 backup as an earlier collection left it, `hours_old` hours ago."""
    collected = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=hours_old)
    snapshot = make_snapshot(
        tmp_path,
        [{"id": f"org-{i}", "attributes": {"name": f"Org {i}"}} for i in range(records)],
        tag=tag,
        timestamp=collected,
    )
    envelope = render_envelope(snapshot)
    S3Store(stores.s3_bucket, None, stores.s3_backup, endpoint_url=stores.s3_endpoint_url).write(snapshot, envelope)
    envelope.unlink()
    snapshot.discard()
    return collected


def collect(instance, snyk, collection, stores, tag="snyk_organizations"):
    return dg.materialize(
        source_assets(snyk_source.SOURCE),
        instance=instance,
        selection=tag,
        raise_on_error=False,
        resources={
            "collection": collection,
            "stores": stores,
            "snapshot_io_manager": SnapshotIOManager(stores=stores),
            "snyk": snyk,
        },
    )


def test_data_just_collected_from_the_api_reads_fresh(snyk, collection, all_stores):
    instance = dg.DagsterInstance.ephemeral()
    assert freshness(instance, "snyk_organizations") == FreshnessState.UNKNOWN
    result = collect(instance, snyk, collection, all_stores)
    assert result.success, failure_text(result)
    assert freshness(instance, "snyk_organizations") == FreshnessState.PASS


@pytest.mark.parametrize(
    "hours_old,state", [(1, FreshnessState.PASS), (25, FreshnessState.WARN), (30, FreshnessState.FAIL)]
)
def test_a_backup_served_by_a_failed_pull_reads_its_collection_age(
    sandbox, snyk, collection, all_stores, tmp_path, hours_old, state
):
    collected = plant_backup(all_stores, tmp_path, "snyk_organizations", hours_old)
    sandbox.add_fault(Fault(route="snyk.orgs", kind="503", times=0))
    instance = dg.DagsterInstance.ephemeral()
    result = collect(instance, snyk, collection, all_stores)
    assert result.success, failure_text(result)
    assert materialization_metadata(result, "snyk_organizations")["source"] == "backup"
    latest = instance.get_latest_materialization_event(dg.AssetKey("snyk_organizations"))
    assert latest.timestamp == collected.timestamp() and latest.run_id == result.run_id
    assert {k: v.value for k, v in latest.asset_materialization.metadata.items()}["source"] == "backup"
    assert freshness(instance, "snyk_organizations") == state


def test_a_restore_job_reload_reads_its_collection_age(collection, all_stores, tmp_path):
    collected = plant_backup(all_stores, tmp_path, "snyk_organizations", 30)
    instance = dg.DagsterInstance.ephemeral()
    job = dg.Definitions(
        jobs=[restore_job], resources={"collection": collection, "stores": all_stores}
    ).resolve_job_def(restore_job.name)
    assert job.execute_in_process(run_config=run_config(["snyk_organizations"]), instance=instance).success
    assert (
        instance.get_latest_materialization_event(dg.AssetKey("snyk_organizations")).timestamp == collected.timestamp()
    )
    assert freshness(instance, "snyk_organizations") == FreshnessState.FAIL


def test_a_good_collection_after_a_backup_reads_fresh_again(sandbox, snyk, collection, all_stores, tmp_path):
    plant_backup(all_stores, tmp_path, "snyk_organizations", 30)
    sandbox.add_fault(Fault(route="snyk.orgs", kind="503", times=3))  # every HTTP attempt of one pull
    instance = dg.DagsterInstance.ephemeral()
    assert collect(instance, snyk, collection, all_stores).success
    assert freshness(instance, "snyk_organizations") == FreshnessState.FAIL
    assert collect(instance, snyk, collection, all_stores).success
    assert freshness(instance, "snyk_organizations") == FreshnessState.PASS


def materialization_count(instance, tag: str) -> int:
    return len(instance.fetch_materializations(dg.AssetKey(tag), limit=100).records)


def test_each_collection_from_the_api_records_one_materialization(snyk, collection, all_stores):
    instance = dg.DagsterInstance.ephemeral()
    for runs in (1, 2, 3):
        assert collect(instance, snyk, collection, all_stores).success
        assert materialization_count(instance, "snyk_organizations") == runs


def test_a_fallback_records_the_steps_materialization_and_one_restatement_at_the_backups_collection_time(
    sandbox, snyk, collection, all_stores, tmp_path
):
    """Dagster 1.13 has no other way (README, "Freshness of backup data"): the step's own materialization is
    stamped when it is logged, and freshness reads only the latest materialization's event time."""
    collected = plant_backup(all_stores, tmp_path, "snyk_organizations", 30)
    instance = dg.DagsterInstance.ephemeral()
    sandbox.add_fault(Fault(route="snyk.orgs", kind="503", times=0))
    result = collect(instance, snyk, collection, all_stores)
    assert result.success, failure_text(result)
    records = instance.fetch_materializations(dg.AssetKey("snyk_organizations"), limit=100).records
    assert len(records) == 2 and {r.run_id for r in records} == {result.run_id}
    assert sorted(r.timestamp for r in records)[0] == collected.timestamp()
    assert instance.get_latest_materialization_event(dg.AssetKey("snyk_organizations")).timestamp == (
        collected.timestamp()
    )


def test_collected_from_api_warns_after_a_fallback_with_the_backups_age_and_the_reason(
    sandbox, snyk, collection, all_stores, tmp_path
):
    plant_backup(all_stores, tmp_path, "snyk_organizations", 30)
    sandbox.add_fault(Fault(route="snyk.orgs", kind="503", times=0))
    result = dg.materialize(
        source_assets(snyk_source.SOURCE, checks=True),
        instance=dg.DagsterInstance.ephemeral(),
        selection=dg.AssetSelection.assets("snyk_organizations").without_checks()
        | dg.AssetSelection.checks_for_assets("snyk_organizations"),
        raise_on_error=False,
        resources={
            "collection": collection,
            "stores": all_stores,
            "snapshot_io_manager": SnapshotIOManager(stores=all_stores),
            "snyk": snyk,
        },
    )
    assert result.success, failure_text(result)
    check = next(e for e in result.get_asset_check_evaluations() if e.check_name == "collected_from_api")
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert "(30.0 h old)" in check.description and "503" in check.description
