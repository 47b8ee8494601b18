"""Scaling steps out on Celery: COLLECTION_EXECUTOR=celery runs every step on `dagster-celery` workers through
the broker CELERY_BROKER_URL (results in CELERY_BACKEND_URL), COLLECTION_CELERY_QUEUES routes vendors to queues
of their own, and `python -m secmetrics_dagster.automation.celery reexecute RUN_ID` retries a failed run from
its failed steps (the CLI has no re-execution command)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional

import dagster as dg

from ..collection.env import env_text
from ..collection.errors import ConfigError
from ..sources import SOURCES

EXECUTORS = ("multiprocess", "celery")
QUEUE_TAG = "dagster-celery/queue"  # dagster_celery.tags.DAGSTER_CELERY_QUEUE_TAG
DEFAULT_QUEUE = "dagster"  # dagster_celery.defaults.task_default_queue: workers started without -q serve it


def executor_name() -> str:
    """COLLECTION_EXECUTOR: `multiprocess` (the default, steps in processes of the run's machine) or `celery`."""
    name = (env_text("COLLECTION_EXECUTOR") or "multiprocess").strip().lower()
    if name not in EXECUTORS:
        raise ConfigError(f"COLLECTION_EXECUTOR={name!r} is not one of {', '.join(EXECUTORS)}")
    return name


def celery_executor() -> dg.ExecutorDefinition:
    """The celery executor on CELERY_BROKER_URL and CELERY_BACKEND_URL, both required. The URLs are passed by
    reference (`{"env": ...}`), so a broker password never enters the run config or the UI."""
    from dagster_celery import celery_executor as executor  # only deployments that select it import Celery

    for name in ("CELERY_BROKER_URL", "CELERY_BACKEND_URL"):
        if env_text(name) is None:
            raise ConfigError(
                f"COLLECTION_EXECUTOR=celery needs {name}, e.g. redis://127.0.0.1:6379/0 "
                "(the same value on the workers, which read it from celery.yaml)"
            )
    return executor.configured(
        {"broker": {"env": "CELERY_BROKER_URL"}, "backend": {"env": "CELERY_BACKEND_URL"}}, name="celery"
    )


def queues() -> dict[str, str]:
    """COLLECTION_CELERY_QUEUES (e.g. `crowdstrike=falcon,tenable=tenable`): vendor group -> Celery queue; a vendor
    not named runs on the default queue `dagster`."""
    raw = os.environ.get("COLLECTION_CELERY_QUEUES", "")
    known = {source.group for source in SOURCES}
    routes = {}
    for item in raw.replace(";", ",").split(","):
        if not item.strip():
            continue
        group, sep, queue = (part.strip() for part in item.partition("="))
        if not sep or not group or not queue:
            raise ConfigError(
                f"COLLECTION_CELERY_QUEUES: {item.strip()!r} is not vendor=queue, e.g. crowdstrike=falcon"
            )
        if group.lower() not in known:
            raise ConfigError(
                f"COLLECTION_CELERY_QUEUES names unknown source {group!r}; known: {', '.join(sorted(known))}"
            )
        routes[group.lower()] = queue
    return routes


def op_tags() -> dict[str, dict[str, str]]:
    """Per vendor group, the op tags that put its steps on its queue (ignored by the multiprocess executor)."""
    return {group: {QUEUE_TAG: queue} for group, queue in queues().items()}


def reexecute(run_id: str, instance: Optional[dg.DagsterInstance] = None) -> dg.ExecuteJobResult:
    """Re-execute a failed run from its failed (and not started) steps, on the job's own executor, after
    releasing the pool slots the failed run still holds."""
    from dagster._utils.hosted_user_process import recon_job_from_origin

    own = instance is None
    instance = instance or dg.DagsterInstance.get()
    try:
        parent = instance.get_run_by_id(run_id)
        if parent is None:
            raise ConfigError(f"no run {run_id} in this instance (DAGSTER_HOME={os.environ.get('DAGSTER_HOME')})")
        options = dg.ReexecutionOptions.from_failure(run_id, instance)  # refuses a run that has not failed
        # A step whose worker was killed never released its vendor pool slot, and the failed run holds no step
        # any more: without this the re-executed step would wait for that slot for ever.
        instance.event_log_storage.free_concurrency_slots_for_run(run_id)
        job = recon_job_from_origin(parent.job_code_origin)
        return dg.execute_job(job, instance, reexecution_options=options, raise_on_error=False)
    finally:
        if own:
            instance.dispose()


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m secmetrics_dagster.automation.celery")
    commands = parser.add_subparsers(dest="command", required=True)
    retry = commands.add_parser("reexecute", help="re-execute a failed run from failure")
    retry.add_argument("run_id")
    args = parser.parse_args(argv)
    result = reexecute(args.run_id)
    print(f"re-execution {result.run_id} of {args.run_id}: {'RUN_SUCCESS' if result.success else 'RUN_FAILURE'}")
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main())
