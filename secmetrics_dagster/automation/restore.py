"""The fallback op and job: reload the last S3 backup of selected assets (or all) into every configured store.

Each reload is recorded as a materialization labelled `source: backup`, stamped with the backup's original
collection time (see freshness.py), so downstream metrics have data and nobody mistakes it for fresh. The
container runs it at start-up (RESTORE_ON_START) and a sensor runs it for what a failed collection left out.
"""

from collections.abc import Iterable
from typing import Optional

import dagster as dg

from ..assets.factory import snapshot_metadata
from ..assets.freshness import record_at_collection_time
from ..sources import SOURCES
from ..stores.backup import backup_age_hours, load_backup
from ..stores.io_manager import StoresResource, store_metadata, write_everywhere

RESTORE_JOB = "restore_from_backup"
RESTORE_OP = "reload_backups"
KIND_TAG = "secmetrics/kind"


def all_tags() -> list[str]:
    return [tag for source in SOURCES for tag in source.tags]


class RestoreConfig(dg.Config):
    assets: list[str] = []  # asset tags; empty reloads every asset that has a backup
    reason: str = "requested"


def run_config(tags: Iterable[str] = (), reason: str = "requested") -> dict:
    return {"ops": {RESTORE_OP: {"config": {"assets": list(tags), "reason": reason}}}}


def _reload(context, stores: StoresResource, collection, tag: str, reason: str) -> Optional[str]:
    """Reload one tag; returns a one-line summary, None when it has no backup. Raises when a store fails."""
    snapshot = load_backup(stores, tag, collection.tenancy, collection.spool_path(), logger=context.log)
    if snapshot is None:
        return None
    snapshot.columns = next(s.dataset(tag).columns for s in SOURCES if tag in s.tags)
    outcome = write_everywhere(snapshot, stores, context.log.error)
    outcome.raise_for_failures(snapshot, f"Fix the failing store and run {RESTORE_JOB} again")
    metadata = {**snapshot_metadata(snapshot), **store_metadata(snapshot, outcome), "restore_reason": reason}
    record_at_collection_time(
        context,
        dg.AssetMaterialization(
            asset_key=tag, metadata=metadata, description=f"Reloaded from the S3 backup ({reason})."
        ),
        snapshot.timestamp,
    )
    return f"{tag}: {snapshot.records} records collected {snapshot.timestamp_text} ({backup_age_hours(snapshot)} h old)"


@dg.op(
    name=RESTORE_OP,
    required_resource_keys={"collection", "stores"},
    description="Reload the last S3 backup of the configured assets (all when none are named) into every store.",
)
def reload_backups(context: dg.OpExecutionContext, config: RestoreConfig) -> None:
    stores: StoresResource = context.resources.stores
    collection = context.resources.collection
    known = all_tags()
    unknown = sorted(set(config.assets) - set(known))
    if unknown:
        raise dg.Failure(
            description=f"unknown asset(s) {', '.join(unknown)}; known: {', '.join(known)}", allow_retries=False
        )
    if not stores.s3_bucket or not stores.s3_backup:
        raise dg.Failure(
            description="nothing to restore from: set STORE_AWS_S3_BUCKET (and keep STORE_AWS_S3_BACKUP) "
            "so each collection leaves a backup",
            allow_retries=False,
        )
    restored, absent, failed = [], [], {}
    for tag in config.assets or known:
        try:
            summary = _reload(context, stores, collection, tag, config.reason)
        except Exception as exc:  # noqa: BLE001 - one bad backup must not stop the others
            failed[tag] = str(exc)
            context.log.error(f"{tag}: the backup could not be reloaded: {exc}")
            continue
        if summary is None:
            absent.append(tag)
            context.log.info(f"{tag}: no backup in s3://{stores.s3_bucket}; nothing to reload")
        else:
            restored.append(tag)
            context.log.warning(f"reloaded {summary}")
    context.log.info(f"restore: {len(restored)} reloaded, {len(absent)} without a backup, {len(failed)} failed")
    if failed or (config.assets and absent):
        problems = [f"{tag}: {error}" for tag, error in failed.items()]
        problems += [f"{tag}: no backup" for tag in absent if config.assets]
        raise dg.Failure(description="restore incomplete: " + "; ".join(problems), allow_retries=False)


@dg.job(
    name=RESTORE_JOB,
    tags={KIND_TAG: "restore"},
    description="Reload the last S3 backups into every configured store, labelled source=backup at their "
    "original collection time. Config: ops.reload_backups.config.assets (tags; empty = all).",
)
def restore_job():
    reload_backups()


def assets_left_out(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """Collection assets a run planned but did not materialize (failed or skipped downstream)."""
    planned, done = set(), set()
    kinds = {dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED, dg.DagsterEventType.ASSET_MATERIALIZATION}
    for entry in instance.all_logs(run_id, of_type=kinds):
        event = entry.dagster_event
        if event is None or event.asset_key is None:
            continue
        (done if event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION else planned).add(event.asset_key)
    known = set(all_tags())
    return sorted(key.path[-1] for key in planned - done if key.path[-1] in known)
