"""The fallback job: the last S3 backup of selected assets (or all) reloaded into every configured store,
recorded as `source: backup` at its original collection time, and launched by a sensor when a collection
run fails so downstream metrics still have data."""

import shutil

import dagster as dg
import psycopg
import pytest

from secmetrics_dagster.automation import sensors
from secmetrics_dagster.automation.restore import RESTORE_JOB, restore_job, run_config
from secmetrics_dagster.sandbox import Fault
from secmetrics_dagster.sources import snyk as snyk_source
from secmetrics_dagster.stores import SnapshotIOManager

from .harness import source_assets
from .helpers import duck_rows, failure_text, pg_rows, replace, stored_file

TAGS = ["snyk_organizations", "snyk_members", "snyk_projects", "snyk_issues"]


def _collect(instance, snyk, collection, stores, **kw):
    return dg.materialize(
        source_assets(snyk_source.SOURCE),
        instance=instance,
        raise_on_error=False,
        **kw,
        resources={
            "collection": collection,
            "stores": stores,
            "snapshot_io_manager": SnapshotIOManager(stores=stores),
            "snyk": snyk,
        },
    )


def _restore(instance, collection, stores, tags=(), reason="requested"):
    job = dg.Definitions(jobs=[restore_job], resources={"collection": collection, "stores": stores}).resolve_job_def(
        RESTORE_JOB
    )
    return job.execute_in_process(run_config=run_config(tags, reason), instance=instance, raise_on_error=False)


def _latest(instance, tag):
    event = instance.get_latest_materialization_event(dg.AssetKey(tag))
    return event, {k: v.value for k, v in event.asset_materialization.metadata.items()}


@pytest.fixture
def collected(snyk, collection, all_stores, tmp_path, pg_params):
    """One good collection, then the local stores wiped as a fresh container would have them (S3 keeps the backups)."""
    first = _collect(dg.DagsterInstance.ephemeral(), snyk, collection, all_stores)
    assert first.success, failure_text(first)
    shutil.rmtree(tmp_path / "data")
    with psycopg.connect(**pg_params, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{all_stores.postgres_schema}" CASCADE')
    return {
        e.asset_key.path[-1]: e.step_materialization_data.materialization
        for e in first.get_asset_materialization_events()
    }


def test_the_restore_job_reloads_selected_assets_into_every_store_labelled_backup(
    collected, collection, all_stores, pg_conn
):
    instance = dg.DagsterInstance.ephemeral()
    result = _restore(instance, collection, all_stores, ["snyk_projects"], reason="container start")
    assert result.success, failure_text(result)
    original = {k: v.value for k, v in collected["snyk_projects"].metadata.items()}
    event, md = _latest(instance, "snyk_projects")
    assert md["source"] == "backup" and md["upload_id"] == original["upload_id"] and md["records"] == 46
    assert event.timestamp == original["collected_at"] == md["collected_at"]  # at the original collection time
    assert md["restore_reason"] == "container start" and event.run_id == result.run_id
    assert stored_file(all_stores, "snyk_projects", "acme").exists()
    assert len(pg_rows(pg_conn, all_stores.postgres_schema, "snyk_projects_latest")) == 46
    assert len(duck_rows(all_stores.duckdb_path, "snyk_projects_latest")) == 46
    assert instance.get_latest_materialization_event(dg.AssetKey("snyk_issues")) is None  # not selected


def test_restoring_everything_reloads_each_asset_that_has_a_backup(collected, collection, all_stores):
    instance = dg.DagsterInstance.ephemeral()
    result = _restore(instance, collection, all_stores)
    assert result.success, failure_text(result)  # other sources have no backup here: noted, not a failure
    for tag in TAGS:
        assert _latest(instance, tag)[1]["source"] == "backup", tag


def test_naming_an_asset_without_a_backup_fails_the_restore_naming_it(collection, all_stores):
    result = _restore(dg.DagsterInstance.ephemeral(), collection, all_stores, ["snyk_issues"])
    assert not result.success and "snyk_issues: no backup" in failure_text(result)


def test_an_unknown_asset_or_no_s3_is_refused_with_what_to_do(collection, all_stores):
    unknown = _restore(dg.DagsterInstance.ephemeral(), collection, all_stores, ["snyk_everything"])
    assert not unknown.success and "unknown asset(s) snyk_everything" in failure_text(unknown)
    no_s3 = _restore(dg.DagsterInstance.ephemeral(), collection, replace(all_stores, s3_bucket=None))
    assert not no_s3.success and "set STORE_AWS_S3_BUCKET" in failure_text(no_s3)


def _failure_context(instance, result):
    run = instance.get_run_by_id(result.run_id)
    event = next(e for e in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE))
    return dg.build_run_status_sensor_context(
        sensor_name=sensors.restore_after_failed_collection.name,
        dagster_instance=instance,
        dagster_run=run,
        dagster_event=event.dagster_event,
    ).for_run_failure()


def test_a_failed_collection_triggers_a_restore_of_what_it_left_out(sandbox, snyk, collection, all_stores):
    instance = dg.DagsterInstance.ephemeral()
    assert _collect(instance, snyk, collection, all_stores).success
    sandbox.add_fault(Fault(route="snyk.orgs", kind="503", times=0))
    # a run that fails outright (its pull may not fall back), leaving all four assets without new data
    failed = _collect(instance, snyk, replace(collection, fallback_to_backup=False), all_stores)
    assert not failed.success
    request = sensors.restore_after_failed_collection(
        _failure_context(instance, failed), stores=all_stores, collection=collection
    )
    assert isinstance(request, dg.RunRequest) and request.run_key == f"restore-after-{failed.run_id}"
    assert request.run_config == run_config(sorted(TAGS), reason=f"collection run {failed.run_id} failed")
    assert request.tags["secmetrics/kind"] == "restore"
    # the requested run does what it says
    config = request.run_config["ops"]["reload_backups"]["config"]
    assert _restore(instance, collection, all_stores, config["assets"], config["reason"]).success
    assert _latest(instance, "snyk_issues")[1]["source"] == "backup"


def test_a_failed_restore_run_does_not_trigger_another(collection, all_stores):
    instance = dg.DagsterInstance.ephemeral()
    failed = _restore(instance, collection, all_stores, ["snyk_issues"])  # no backup: fails
    assert not failed.success
    skip = sensors.restore_after_failed_collection(
        _failure_context(instance, failed), stores=all_stores, collection=collection
    )
    assert isinstance(skip, dg.SkipReason) and "not a collection run" in skip.skip_message


def test_with_fallback_off_a_failed_collection_is_not_restored(sandbox, snyk, collection, all_stores):
    collection = replace(collection, fallback_to_backup=False)
    instance = dg.DagsterInstance.ephemeral()
    sandbox.add_fault(Fault(route="snyk.orgs", kind="503", times=0))
    failed = _collect(instance, snyk, collection, all_stores)
    skip = sensors.restore_after_failed_collection(
        _failure_context(instance, failed), stores=all_stores, collection=collection
    )
    assert isinstance(skip, dg.SkipReason) and "COLLECTION_FALLBACK" in skip.skip_message
