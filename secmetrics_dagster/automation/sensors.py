"""Sensors: Slack alerts on run start, success and failure, a stale-data alert from the freshness daemon's
verdicts, and the automatic backup restore of what a failed collection left out.

They watch every run in the instance (`monitor_all_code_locations`), so runs started from the CLI or the
container's one-off mode are seen too, not only those launched through the webserver or the schedule.
"""

import json
from datetime import UTC, datetime

import dagster as dg

from ..collection.resource import CollectionResource
from ..sources import SOURCES
from ..stores.io_manager import StoresResource
from . import alerts
from .restore import KIND_TAG, assets_left_out, restore_job, run_config

NOT_ALERTED_KINDS = ("maintenance",)  # run retention is housekeeping, not news


def is_collection(run: dg.DagsterRun) -> bool:
    return run.tags.get(KIND_TAG) not in ("restore", *NOT_ALERTED_KINDS)


def is_alerted(run: dg.DagsterRun) -> bool:
    return run.tags.get(KIND_TAG) not in NOT_ALERTED_KINDS


def _webhook(context) -> alerts.SlackWebhook:
    return alerts.SlackWebhook.from_env(context.log)


def _slack_run_sensor(status: dg.DagsterRunStatus, name: str, description: str, texts) -> dg.RunStatusSensorDefinition:
    """A sensor that posts `texts(instance, run)` to Slack when any run in the instance reaches `status`."""

    @dg.run_status_sensor(
        run_status=status,
        name=name,
        monitor_all_code_locations=True,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=description,
    )
    def slack_sensor(context: dg.RunStatusSensorContext):
        webhook = _webhook(context)
        if webhook.configured and is_alerted(context.dagster_run):
            alerts.post_all(webhook, texts(context.instance, context.dagster_run))

    return slack_sensor


slack_on_run_started = _slack_run_sensor(
    dg.DagsterRunStatus.STARTED,
    "slack_on_run_started",
    "Slack: a collection or restore run started.",
    lambda instance, run: [alerts.started_text(instance, run)],
)
slack_on_run_success = _slack_run_sensor(
    dg.DagsterRunStatus.SUCCESS,
    "slack_on_run_success",
    "Slack: a run completed (records, failed checks), and which assets came from backup.",
    alerts.completed_texts,
)
slack_on_run_failure = _slack_run_sensor(
    dg.DagsterRunStatus.FAILURE,
    "slack_on_run_failure",
    "Slack: a run failed, with each failing collector and its cause.",
    alerts.failed_texts,
)


def restore_request(
    instance: dg.DagsterInstance, run: dg.DagsterRun, stores: StoresResource, collection: CollectionResource
):
    """What to reload after a failed collection run: a RunRequest, or a SkipReason saying why not."""
    if not is_collection(run):
        return dg.SkipReason(f"run {run.run_id} is not a collection run")
    if not collection.fallback_to_backup:
        return dg.SkipReason("COLLECTION_FALLBACK is off")
    if not stores.s3_bucket or not stores.s3_backup:
        return dg.SkipReason("no S3 backup is configured (STORE_AWS_S3_BUCKET)")
    tags = assets_left_out(instance, run.run_id)
    if not tags:
        return dg.SkipReason(f"run {run.run_id} failed after materializing every planned asset")
    return dg.RunRequest(
        run_key=f"restore-after-{run.run_id}",
        run_config=run_config(tags, reason=f"collection run {run.run_id} failed"),
        tags={KIND_TAG: "restore", "secmetrics/restore_for": run.run_id},
    )


@dg.run_failure_sensor(
    name="restore_after_failed_collection",
    monitor_all_code_locations=True,
    request_job=restore_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="When a collection run fails, reload the last S3 backup of every asset it "
    "did not materialize, so downstream metrics still have data.",
)
def restore_after_failed_collection(
    context: dg.RunFailureSensorContext, stores: StoresResource, collection: CollectionResource
):
    return restore_request(context.instance, context.dagster_run, stores, collection)


def asset_keys() -> list[dg.AssetKey]:
    return [dg.AssetKey(tag) for source in SOURCES for tag in source.tags]


def stale_alerts(instance: dg.DagsterInstance, cursor: dict) -> tuple[list[str], dict]:
    """Messages for assets that turned WARN/FAIL since the last alert, and the new cursor."""
    states = instance.get_freshness_state_records(asset_keys())
    texts, seen = [], {}
    for key, record in states.items():
        name, state = key.to_user_string(), record.freshness_state.value
        seen[name] = state
        if state not in ("WARN", "FAIL") or cursor.get(name) == state:
            continue
        event = instance.get_latest_materialization_event(key)
        metadata = (
            {k: v.value for k, v in event.asset_materialization.metadata.items()}
            if event and event.asset_materialization
            else None
        )
        collected = datetime.fromtimestamp(event.timestamp, UTC) if event else None
        texts.append(alerts.stale_text(name, state, metadata, collected))
    return texts, seen


@dg.sensor(
    name="slack_on_stale_data",
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Slack: an asset turned stale (WARN or FAIL) by its freshness policy, judged on when its "
    "data was collected from the API.",
)
def slack_on_stale_data(context: dg.SensorEvaluationContext):
    texts, seen = stale_alerts(context.instance, json.loads(context.cursor or "{}"))
    webhook = _webhook(context)
    if not webhook.configured:
        context.update_cursor(json.dumps(seen))
        return dg.SkipReason("SLACK_WEBHOOK_URL is not set")
    alerts.post_all(webhook, texts)
    context.update_cursor(json.dumps(seen))
    return dg.SkipReason(f"{len(texts)} stale alert(s) sent" if texts else "nothing newly stale")


SENSORS = [
    slack_on_run_started,
    slack_on_run_success,
    slack_on_run_failure,
    restore_after_failed_collection,
    slack_on_stale_data,
]
