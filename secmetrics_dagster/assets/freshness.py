"""Freshness judged on when data was collected from the API, not when it was last written.

Dagster 1.13's freshness daemon (`TimeWindowFreshnessPolicyEvaluator`) compares the policy's window with
the timestamp of the asset's latest materialization event; it reads no metadata and no observations. A
backup reload writes the stores now, so its ordinary materialization would read as fresh. Every
materialization that serves a backup is therefore recorded (again) with the backup's original collection
time as its event time: the UI's "last materialized", the freshness policy and the stale alerts then all
show the data's real age, and it keeps the run id, the metadata (`source: backup`) and the step it came from.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Optional

import dagster as dg
from dagster._core.events import DagsterEvent, DagsterEventType, StepMaterializationData


def _step_key(context: Any) -> Optional[str]:
    op_context = getattr(context, "op_execution_context", context)
    try:
        return op_context.get_step_execution_context().step.key
    except Exception:  # noqa: BLE001 - a direct invocation has no step; the event is still valid without one
        return None


def record_at_collection_time(context: Any, materialization: dg.AssetMaterialization, collected_at: datetime) -> None:
    """Store `materialization` in this run's event log with `collected_at` as its event time."""
    collected = collected_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    event = DagsterEvent(
        event_type_value=DagsterEventType.ASSET_MATERIALIZATION.value,
        job_name=context.job_name,
        step_key=_step_key(context),
        event_specific_data=StepMaterializationData(materialization),
        message=(
            f"{materialization.asset_key.to_user_string()}: served from the S3 backup collected {collected}; "
            "recorded at that time so freshness judges the data's real age."
        ),
    )
    context.instance.report_dagster_event(event, run_id=context.run_id, timestamp=collected_at.timestamp())


def restate_backup_materialization(context: Any, asset_key: dg.AssetKey, collected_at: datetime) -> None:
    """After an asset served a backup: re-record the materialization Dagster just stored at the collection time."""
    latest = context.instance.get_latest_materialization_event(asset_key)
    if latest is None or latest.run_id != context.run_id or latest.asset_materialization is None:
        return
    record_at_collection_time(context, latest.asset_materialization, collected_at)
    context.log.warning(
        f"{asset_key.to_user_string()}: materialization recorded again at the backup's collection time "
        f"{collected_at.strftime('%Y-%m-%dT%H:%M:%SZ')}, so freshness shows the data's real age and turns stale "
        "once that is past the freshness window."
    )
