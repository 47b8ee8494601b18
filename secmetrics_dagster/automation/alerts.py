"""Slack alerts through an incoming webhook (SLACK_WEBHOOK_URL, the seed's variable): collection started,
completed, failed (each failing collector with its cause), served from backup, and stale data.

A webhook is one HTTPS POST of JSON, so plain requests does it (dagster-slack wants a bot token, which the
seed's users do not have). Posting is best effort: one attempt with a short timeout, failures logged without
the URL (it is the secret) and never raised, so an alert can never fail a run or a sensor.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Optional
from urllib.parse import urlsplit

import dagster as dg
import requests

log = logging.getLogger(__name__)

POST_TIMEOUT = (3.05, 5.0)  # connect, read: a slow Slack must not hold a sensor tick


class SlackWebhook:
    """Posts text to one Slack incoming webhook; a missing URL makes every post a no-op."""

    def __init__(self, url: Optional[str], logger: Optional[logging.Logger] = None):
        self.url = (url or "").strip() or None
        self.log = logger or log

    @classmethod
    def from_env(cls, logger: Optional[logging.Logger] = None) -> SlackWebhook:
        return cls(os.environ.get("SLACK_WEBHOOK_URL"), logger)

    @property
    def configured(self) -> bool:
        return self.url is not None

    def _where(self) -> str:
        return urlsplit(self.url or "").hostname or "the webhook host"

    def post(self, text: str) -> bool:
        """True when Slack accepted the message. Never raises."""
        if not self.url:
            return False
        try:
            response = requests.post(self.url, json={"text": text}, timeout=POST_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - an alert must never break what it reports on
            # The exception text can contain the URL, whose path is the secret: name only its type and host.
            self.log.warning(
                f"Slack alert not delivered: {type(exc).__name__} talking to {self._where()}; "
                "check SLACK_WEBHOOK_URL and outbound HTTPS"
            )
            return False
        if response.status_code >= 300:
            self.log.warning(
                f"Slack alert not delivered: {self._where()} answered HTTP {response.status_code} "
                f"({response.text[:100].strip()}); check that SLACK_WEBHOOK_URL is still active"
            )
            return False
        return True


# --- message builders: the same text whether a sensor or the container's one-off mode sends it -------------------

_DAGSTER_WRAPPERS = ("Dagster", "RetryRequested")  # execution-error and "Exceeded max_retries" wrappers


def _tenancy() -> str:
    return os.environ.get("TENANCY") or "default"


def _run_ref(run: dg.DagsterRun) -> str:
    base = (os.environ.get("DAGSTER_WEBSERVER_URL") or "").rstrip("/")
    short = run.run_id[:8]
    where = f"<{base}/runs/{run.run_id}|{short}>" if base else short
    trigger = run.tags.get("dagster/schedule_name") or run.tags.get("dagster/sensor_name")
    return f"run {where} ({run.job_name}{', ' + trigger if trigger else ''})"


def cause_text(error: Any, limit: int = 400) -> str:
    """The collector's own message, without Dagster's wrappers and the exception class prefix."""
    while error is not None and error.cause is not None and (error.cls_name or "").startswith(_DAGSTER_WRAPPERS):
        error = error.cause
    if error is None:
        return "unknown error"
    text = error.message.strip()
    if error.cls_name:
        text = re.sub(rf"^(?:[\w.]+\.)?{re.escape(error.cls_name)}: ", "", text)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def cause_text_plain(text: str, limit: int = 300) -> str:
    """Free text (a reason, a check description) on one line, bounded."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _events(instance: dg.DagsterInstance, run_id: str, *kinds: dg.DagsterEventType):
    return [e for e in instance.all_logs(run_id, of_type=set(kinds)) if e.dagster_event is not None]


def _materializations(instance: dg.DagsterInstance, run_id: str) -> dict[str, dict]:
    """Latest materialization metadata per asset in the run (a backup restatement replaces its first record)."""
    found: dict[str, dict] = {}
    for entry in _events(instance, run_id, dg.DagsterEventType.ASSET_MATERIALIZATION):
        mat = entry.dagster_event.step_materialization_data.materialization
        found[mat.asset_key.to_user_string()] = {k: v.value for k, v in mat.metadata.items()}
    return found


def _duration(instance: dg.DagsterInstance, run: dg.DagsterRun) -> str:
    record = instance.get_run_record_by_id(run.run_id)
    if record and record.start_time and record.end_time:
        return f" in {record.end_time - record.start_time:.0f} s"
    return ""


def _planned(instance: dg.DagsterInstance, run: dg.DagsterRun) -> str:
    keys = set(run.asset_selection or ())
    if not keys:
        keys = {
            e.dagster_event.asset_key
            for e in _events(instance, run.run_id, dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED)
        }
    if not keys:
        return "no assets planned"  # an op job such as the restore, which names its assets in its config
    names = sorted(k.to_user_string() for k in keys)
    return f"{len(names)} asset(s): " + ", ".join(names[:12]) + (" …" if len(names) > 12 else "")


def started_text(instance: dg.DagsterInstance, run: dg.DagsterRun) -> str:
    if run.tags.get("secmetrics/kind") == "restore":
        return f":arrow_forward: secmetrics [{_tenancy()}]: restore from backup started, {_run_ref(run)}"
    if run.tags.get("secmetrics/kind") == "metrics":
        return f":arrow_forward: secmetrics [{_tenancy()}]: metrics started, {_run_ref(run)}, {_planned(instance, run)}"
    return f":arrow_forward: secmetrics [{_tenancy()}]: collection started, {_run_ref(run)}, {_planned(instance, run)}"


def _backup_lines(served: dict[str, dict]) -> list[str]:
    lines = []
    for tag, md in sorted(served.items()):
        why = md.get("fallback_reason") or ""
        lines.append(
            f"• {tag}: {md.get('records')} records collected {md.get('backup_collected_at')} "
            f"({md.get('backup_age_hours')} h old){': ' + cause_text_plain(why) if why else ''}"
        )
    return lines


def backup_text(run: dg.DagsterRun, served: dict[str, dict]) -> str:
    head = (
        f":warning: secmetrics [{_tenancy()}]: served from the S3 backup in {_run_ref(run)}; downstream "
        "metrics run on older data until the next good collection:"
    )
    return "\n".join([head, *_backup_lines(served)])


def completed_texts(instance: dg.DagsterInstance, run: dg.DagsterRun) -> list[str]:
    """The completion message, plus a 'served from backup' warning when any asset was."""
    mats = _materializations(instance, run.run_id)
    records = sum(int(md.get("records") or 0) for md in mats.values())
    served = {tag: md for tag, md in mats.items() if md.get("source") == "backup"}
    restore = run.tags.get("secmetrics/kind") == "restore"
    head = (
        f":white_check_mark: secmetrics [{_tenancy()}]: {'restore' if restore else 'collection'} completed, "
        f"{_run_ref(run)}{_duration(instance, run)}: {len(mats)} asset(s), {records} records"
    )
    if served and not restore:
        head += f", {len(served)} from backup"
    problems = []
    for entry in _events(instance, run.run_id, dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = entry.dagster_event.event_specific_data
        if not evaluation.passed:
            level = "ERROR" if evaluation.severity == dg.AssetCheckSeverity.ERROR else "WARN"
            desc = evaluation.description or ""
            problems.append(
                f"• check {evaluation.asset_key.to_user_string()}.{evaluation.check_name} {level}: "
                f"{cause_text_plain(desc)}"
            )
    if restore:  # everything a restore writes comes from a backup: one message says what and how old
        reasons = sorted({str(md["restore_reason"]) for md in mats.values() if md.get("restore_reason")})
        return ["\n".join([head + (f" ({'; '.join(reasons)})" if reasons else ""), *_backup_lines(served)])]
    text = head + ("\n" + "\n".join(problems) if problems else "")
    return [text, backup_text(run, served)] if served else [text]


def failed_text(instance: dg.DagsterInstance, run: dg.DagsterRun) -> str:
    """Each failing collector (step) with its cause; skipped steps; the run's own error when no step failed."""
    restore = run.tags.get("secmetrics/kind") == "restore"
    lines = [
        f":x: secmetrics [{_tenancy()}]: {'restore' if restore else 'collection'} FAILED, {_run_ref(run)}"
        f"{_duration(instance, run)}"
    ]
    failures = _events(instance, run.run_id, dg.DagsterEventType.STEP_FAILURE)
    for entry in failures:
        lines.append(f"• {entry.step_key}: {cause_text(entry.dagster_event.step_failure_data.error)}")
    from .restore import assets_left_out  # the sources' tags; imported late, the sources import this package

    failed_steps = {entry.step_key for entry in failures}
    not_run = [tag for tag in assets_left_out(instance, run.run_id) if tag not in failed_steps]
    if not_run:
        why = " because an upstream asset failed" if failures else ""
        lines.append(f"• not collected{why}: {', '.join(not_run)}")
    if not failures:
        for entry in _events(instance, run.run_id, dg.DagsterEventType.RUN_FAILURE):
            data = entry.dagster_event.event_specific_data
            error = getattr(data, "error", None)
            lines.append(f"• run: {cause_text(error) if error else entry.dagster_event.message or 'failed'}")
    mats = _materializations(instance, run.run_id)
    if mats:
        lines.append(f"• written anyway: {', '.join(sorted(mats))}")
    return "\n".join(lines)


def failed_texts(instance: dg.DagsterInstance, run: dg.DagsterRun) -> list[str]:
    """The failure message, plus the 'served from backup' warning when the run also served backups."""
    served = {tag: md for tag, md in _materializations(instance, run.run_id).items() if md.get("source") == "backup"}
    restore = run.tags.get("secmetrics/kind") == "restore"
    text = failed_text(instance, run)
    return [text, backup_text(run, served)] if served and not restore else [text]


def stale_text(asset: str, state: str, last: Optional[dict], collected_at: Optional[datetime]) -> str:
    level = "stale (freshness FAIL)" if state == "FAIL" else "getting stale (freshness WARN)"
    when = ""
    if collected_at is not None:
        age = (datetime.now(UTC) - collected_at).total_seconds() / 3600
        when = f": newest data collected {collected_at.strftime('%Y-%m-%dT%H:%M:%SZ')} ({age:.1f} h ago"
        when += ", served from backup)" if last and last.get("source") == "backup" else ")"
    return (
        f":hourglass: secmetrics [{_tenancy()}]: {asset} is {level}{when}. Check the last collection runs "
        "and the vendor's credentials."
    )


def post_all(webhook: SlackWebhook, texts: Iterable[str]) -> int:
    return sum(webhook.post(text) for text in texts)
