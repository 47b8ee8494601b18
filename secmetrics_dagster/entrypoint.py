"""The container's entrypoint: one image runs the webserver, the daemon, a one-off collection or a restore.

    python -m secmetrics_dagster.entrypoint webserver [dagster-webserver options]
    python -m secmetrics_dagster.entrypoint daemon [dagster-daemon run options]
    python -m secmetrics_dagster.entrypoint materialize [--select SELECTION]   (default: every asset)
    python -m secmetrics_dagster.entrypoint restore [TAG ...]                  (default: every asset)
    python -m secmetrics_dagster.entrypoint code-server                        (for run launchers: gRPC on :4000)

Before starting it prepares DAGSTER_HOME (this repository's dagster.yaml when DAGSTER_PG_HOST is set,
otherwise a SQLite instance inside DAGSTER_HOME) and refuses to start with half the PostgreSQL variables.
With RESTORE_ON_START=true the daemon and one-off modes first reload the last S3 backups, so a fresh
container has yesterday's data. The one-off modes post their own Slack alerts when no daemon is running.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Optional

MODULE = "secmetrics_dagster"
PACKAGED_YAML = Path(__file__).resolve().parents[1] / "dagster.yaml"
PG_VARS = ("DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB")
MODES = ("webserver", "daemon", "materialize", "restore", "code-server")
RESTORE_MODES = ("daemon", "materialize")  # not the webserver: two containers sharing one .env would restore twice
USAGE = __doc__.split("\n\n")[1]


def say(message: str) -> None:
    print(f"secmetrics-entrypoint: {message}", file=sys.stderr, flush=True)


def _truthy(value: Optional[str]) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def _tool(name: str) -> str:
    """The dagster executables live beside this interpreter (the image's or the virtualenv's)."""
    beside = Path(sys.executable).with_name(name)
    return str(beside) if beside.exists() else (shutil.which(name) or name)


def prepare_home(env: dict) -> str:
    """Make DAGSTER_HOME usable; returns a one-line description of the instance. Exits on bad settings."""
    home = env.get("DAGSTER_HOME")
    if not home:
        raise SystemExit(
            "secmetrics-entrypoint: DAGSTER_HOME is not set: point it at a directory for the Dagster "
            "instance (the image sets /opt/dagster/home)"
        )
    Path(home).mkdir(parents=True, exist_ok=True)
    config = Path(home) / "dagster.yaml"
    packaged = PACKAGED_YAML.read_text()
    # A copy this entrypoint made earlier (same first line) follows the image; a file of the operator's own stays.
    ours = config.exists() and config.read_text().split("\n", 1)[0] == packaged.split("\n", 1)[0]
    if env.get("DAGSTER_PG_HOST") and (not config.exists() or ours):
        config.write_text(packaged)
    if config.exists() and "DAGSTER_PG_HOST" in config.read_text():
        missing = [name for name in PG_VARS if name not in env]
        if missing:
            raise SystemExit(
                f"secmetrics-entrypoint: {config} keeps runs in PostgreSQL but {', '.join(missing)} "
                "is not set; set all of " + ", ".join(PG_VARS) + " (the password may be empty)"
            )
        return f"PostgreSQL instance {env['DAGSTER_PG_USER']}@{env['DAGSTER_PG_HOST']}:{env['DAGSTER_PG_PORT']}/{env['DAGSTER_PG_DB']}"
    if config.exists():
        return f"instance configured by {config}"
    return f"SQLite instance in {home} (no DAGSTER_PG_HOST): runs stay in this container unless {home} is a volume"


def _instance():
    import dagster as dg

    return dg.DagsterInstance.get()


def _daemon_alive(instance) -> bool:
    """A running daemon's sensors send the alerts; the one-off modes only speak when nobody else will."""
    beat = instance.get_daemon_heartbeats().get("SENSOR")
    return beat is not None and time.time() - beat.timestamp < 120


def _notify(instance, run) -> None:
    from dagster import DagsterRunStatus

    from .automation import alerts

    webhook = alerts.SlackWebhook.from_env()
    if not webhook.configured or _daemon_alive(instance):
        return
    if run.status == DagsterRunStatus.SUCCESS:
        alerts.post_all(webhook, alerts.completed_texts(instance, run))
    else:
        alerts.post_all(webhook, alerts.failed_texts(instance, run))


def restore(tags: Sequence[str] = (), reason: str = "requested") -> bool:
    """Run the restore job in this process against DAGSTER_HOME's instance; True when it succeeded."""
    from . import defs
    from .automation.restore import KIND_TAG, RESTORE_JOB, run_config

    instance = _instance()
    say(f"reloading the last S3 backups of {', '.join(tags) if tags else 'every asset'} ({reason})")
    result = defs.resolve_job_def(RESTORE_JOB).execute_in_process(
        run_config=run_config(tags, reason),
        instance=instance,
        raise_on_error=False,
        tags={KIND_TAG: "restore", "secmetrics/trigger": "entrypoint"},
    )
    _notify(instance, instance.get_run_by_id(result.run_id))
    say(f"restore {'succeeded' if result.success else 'FAILED'} (run {result.run_id}); see the run's log for details")
    return result.success


def restore_on_start(env: dict) -> None:
    if not _truthy(env.get("RESTORE_ON_START")):
        return
    if not env.get("STORE_AWS_S3_BUCKET") or env.get("STORE_AWS_S3_BACKUP") == "":
        say("RESTORE_ON_START is set but no S3 backup is configured (STORE_AWS_S3_BUCKET); nothing to reload")
        return
    try:
        ok = restore(reason="container start (RESTORE_ON_START)")
    except Exception as exc:  # noqa: BLE001 - a failed restore must not keep the service from starting
        ok = False
        say(f"restore at start-up failed: {type(exc).__name__}: {exc}")
    if not ok:
        say("starting anyway; the stores keep whatever they held")


def selection_of(args: Sequence[str]) -> Optional[str]:
    """The value of --select in `dagster asset materialize` arguments."""
    for i, arg in enumerate(args):
        if arg == "--select" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--select="):
            return arg.split("=", 1)[1]
    return None


def unmatched_selection(select: str) -> Optional[str]:
    """Why `select` would be refused, or None when it names at least one asset.

    Dagster 1.13's `asset materialize` resolves the selection and hands the (possibly empty) key list to
    execute_job, where an empty list means "no selection": a typo such as `group:snky` runs every asset.
    The same resolution is done here first, so an empty one is refused naming what exists.
    """
    import dagster as dg

    from .definitions import defs

    graph = defs.resolve_asset_graph()
    try:
        keys = dg.AssetSelection.from_coercible(select.split(",")).resolve(graph, allow_missing=True)
    except Exception as exc:  # noqa: BLE001 - Dagster's own parse error, shown to the user as is
        return f"--select {select!r} is not a selection Dagster understands: {exc}"
    if keys:
        return None
    groups = sorted({graph.get(k).group_name for k in graph.get_all_asset_keys() if graph.get(k).group_name})
    return (
        f"--select {select!r} matches no asset, and Dagster would then materialize every asset. Known groups: "
        f"{', '.join(groups)}; e.g. --select 'group:snyk' or --select 'key:okta_*'."
    )


def materialize(args: Sequence[str], env: dict) -> int:
    """`dagster asset materialize` as a child process, then alerts and, if it failed, the restore of what it left out."""
    from .automation import alerts
    from .automation.restore import assets_left_out
    from .collection.resource import CollectionResource

    if selection_of(args) is None:
        args = ["--select", "*", *args]
    problem = unmatched_selection(selection_of(args) or "*")
    if problem:
        say(problem)
        return 2
    instance = _instance()
    webhook = alerts.SlackWebhook.from_env()
    if webhook.configured and not _daemon_alive(instance):
        webhook.post(
            f":arrow_forward: secmetrics [{env.get('TENANCY') or 'default'}]: collection started "
            f"(one-off container run, {' '.join(args)})"
        )
    started = datetime.now(UTC)
    child = subprocess.Popen([_tool("dagster"), "asset", "materialize", "-m", MODULE, *args], env=env)
    # As a container's PID 1 this process gets `docker stop`'s SIGTERM; the run must hear it too.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda sig, _frame: child.send_signal(sig))
    code = child.wait()
    from dagster import RunsFilter

    runs = instance.get_runs(filters=RunsFilter(created_after=started), limit=1)
    if not runs:
        say(f"dagster asset materialize exited {code} without recording a run")
        return code or 1
    run = runs[0]
    _notify(instance, run)
    fallback = CollectionResource.from_env().fallback_to_backup
    if code != 0 and fallback and not _daemon_alive(instance) and env.get("STORE_AWS_S3_BUCKET"):
        left_out = assets_left_out(instance, run.run_id)
        if left_out:
            restore(left_out, reason=f"collection run {run.run_id} failed")
    return code


def server_command(mode: str, args: Sequence[str], env: dict) -> list[str]:
    """The long-running servers. With DAGSTER_CODE_SERVER_HOST set, the webserver and the daemon load the code
    from that code server (as container-per-run launchers need) instead of importing it themselves."""
    grpc = env.get("DAGSTER_CODE_SERVER_HOST")
    port = env.get("DAGSTER_CODE_SERVER_PORT") or "4000"
    code = ["--grpc-host", grpc, "--grpc-port", port] if grpc else ["-m", MODULE]
    if mode == "webserver":
        host = env.get("DAGSTER_WEBSERVER_HOST") or "0.0.0.0"  # reachable through the container's published port
        return [_tool("dagster-webserver"), *code, "-h", host, "-p", env.get("DAGSTER_WEBSERVER_PORT") or "3000", *args]
    if mode == "daemon":
        return [_tool("dagster-daemon"), "run", *code, *args]
    return [_tool("dagster"), "code-server", "start", "-m", MODULE, "-h", "0.0.0.0", "-p", port, *args]


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in MODES:
        print(USAGE, file=sys.stderr)
        return 2
    mode, args = argv[0], argv[1:]
    env = dict(os.environ)
    # PID 1 ignores SIGTERM without a handler; until exec or a child takes over, stop cleanly on it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    say(f"{mode}: {prepare_home(env)}")
    if mode in RESTORE_MODES:
        restore_on_start(env)
    if mode == "materialize":
        return materialize(args, env)
    if mode == "restore":
        return 0 if restore([a for a in args if not a.startswith("-")]) else 1
    command = server_command(mode, args, env)
    sys.stdout.flush()
    # exec: the server becomes the container's main process and receives its stop signal directly.
    os.execvpe(command[0], command, env)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
