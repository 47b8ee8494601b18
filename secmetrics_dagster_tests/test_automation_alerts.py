"""Slack alerts through the webhook: what each message says, the sensors that send them, and that a broken
webhook never breaks anything or leaks its URL. Slack is a local HTTP server that records every post."""

import json
import logging
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest
from dagster._core.definitions.freshness import FreshnessState, FreshnessStateChange

from secmetrics_dagster.automation import alerts, sensors
from secmetrics_dagster.automation.checks import checks_for
from secmetrics_dagster.sandbox import Fault
from secmetrics_dagster.sources import snyk as snyk_source
from secmetrics_dagster.stores import SnapshotIOManager

from .harness import source_assets
from .helpers import failure_text, materialization_metadata, materialized_tags, replace


class SlackCapture:
    """A stand-in for Slack's incoming-webhook endpoint: records each JSON body, answers `status`."""

    def __init__(self, status: int = 200):
        self.posts: list[dict] = []
        self.status = status
        capture = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                capture.posts.append(json.loads(body))
                self.send_response(capture.status)
                self.end_headers()
                self.wfile.write(b"ok" if capture.status < 300 else b"no_service")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.secret = uuid.uuid4().hex
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/T0/B0/{self.secret}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def texts(self) -> list[str]:
        return [post["text"] for post in self.posts]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def slack(monkeypatch):
    capture = SlackCapture()
    monkeypatch.setenv("SLACK_WEBHOOK_URL", capture.url)
    monkeypatch.setenv("TENANCY", "acme")
    yield capture
    capture.close()


def _resources(snyk, collection, stores):
    return {
        "collection": collection,
        "stores": stores,
        "snapshot_io_manager": SnapshotIOManager(stores=stores),
        "snyk": snyk,
    }


def _collect(instance, snyk, collection, stores, selection=None):
    return dg.materialize(
        [*source_assets(snyk_source.SOURCE), *checks_for([snyk_source.SOURCE])],
        instance=instance,
        selection=selection,
        resources=_resources(snyk, collection, stores),
        raise_on_error=False,
    )


def test_a_post_is_one_json_message_to_the_webhook(slack):
    assert alerts.SlackWebhook.from_env().post("hello *world*")
    assert slack.posts == [{"text": "hello *world*"}]


def test_without_a_webhook_url_nothing_is_sent(monkeypatch):
    monkeypatch.delenv("SLACK_WEBHOOK_URL", raising=False)
    webhook = alerts.SlackWebhook.from_env()
    assert not webhook.configured and webhook.post("x") is False


@pytest.mark.parametrize("failure", ["http_500", "refused", "timeout"])
def test_a_failing_webhook_never_raises_and_never_logs_its_url(monkeypatch, caplog, failure):
    capture = SlackCapture(status=500)
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)  # accepts the connection, never answers: the read times out
    try:
        url = {
            "http_500": capture.url,
            "refused": f"http://127.0.0.1:{_closed_port()}/services/T0/B0/{capture.secret}",
            "timeout": f"http://127.0.0.1:{silent.getsockname()[1]}/services/T0/B0/{capture.secret}",
        }[failure]
        monkeypatch.setattr(alerts, "POST_TIMEOUT", (0.5, 0.5))
        with caplog.at_level(logging.WARNING):
            assert alerts.SlackWebhook(url).post("collection completed") is False
    finally:
        capture.close()
        silent.close()
    assert "Slack alert not delivered" in caplog.text
    assert capture.secret not in caplog.text and "/services/" not in caplog.text


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_completed_run_reports_its_assets_and_records(slack, snyk, collection, all_stores):
    instance = dg.DagsterInstance.ephemeral()
    result = _collect(instance, snyk, collection, all_stores)
    assert result.success, failure_text(result)
    run = instance.get_run_by_id(result.run_id)
    texts = alerts.completed_texts(instance, run)
    assert len(texts) == 1  # nothing came from a backup
    assert "secmetrics [acme]: collection completed" in texts[0]
    records = sum(materialization_metadata(result, tag)["records"] for tag in materialized_tags(result))
    assert f"4 asset(s), {records} records" in texts[0]
    assert result.run_id[:8] in texts[0] and "• check" not in texts[0]


def test_a_completed_run_lists_its_failed_checks(slack):
    @dg.asset
    def snyk_projects():
        return 1

    @dg.asset_check(asset=snyk_projects)
    def record_count_stable():
        return dg.AssetCheckResult(
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            description="20 records against 46 in the previous upload (-57%; limit -50%)",
        )

    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([snyk_projects, record_count_stable], instance=instance)
    [text] = alerts.completed_texts(instance, instance.get_run_by_id(result.run_id))
    assert "• check snyk_projects.record_count_stable WARN: 20 records against 46" in text


def test_assets_served_from_backup_get_their_own_warning(slack, sandbox, snyk, collection, all_stores):
    instance = dg.DagsterInstance.ephemeral()
    assert _collect(instance, snyk, collection, all_stores).success
    sandbox.add_fault(Fault(route="snyk.issues", kind="500", times=0))
    result = _collect(instance, snyk, collection, all_stores)
    assert result.success, failure_text(result)
    completed, backup = alerts.completed_texts(instance, instance.get_run_by_id(result.run_id))
    assert "1 from backup" in completed
    assert backup.startswith(":warning: secmetrics [acme]: served from the S3 backup")
    assert "snyk_issues: 114 records collected" in backup and "HTTP 500" in backup


def test_a_failed_run_names_each_failing_collector_with_its_cause(slack, sandbox, collection, all_stores):
    from secmetrics_dagster.sources.snyk import SnykResource

    instance = dg.DagsterInstance.ephemeral()
    expired = SnykResource(token="expired-token", endpoint=sandbox.url, page_limit=10)
    result = _collect(instance, expired, collection, all_stores)
    assert not result.success
    text = alerts.failed_text(instance, instance.get_run_by_id(result.run_id))
    assert text.startswith(":x: secmetrics [acme]: collection FAILED")
    assert "• snyk_organizations: Snyk: GET " in text and "HTTP 401" in text and "Check SNYK_TOKEN" in text
    assert "Failure:" not in text and "dagster._core" not in text  # the collector's words, not Dagster's wrapper
    assert "not collected because an upstream asset failed: snyk_issues, snyk_members, snyk_projects" in text
    assert "expired-token" not in text


def test_the_run_sensors_post_start_success_and_failure(slack, sandbox, snyk, collection, all_stores):
    instance = dg.DagsterInstance.ephemeral()
    good = _collect(instance, snyk, collection, all_stores, selection="snyk_organizations")
    sandbox.add_fault(Fault(route="snyk.orgs", kind="503", times=0))
    bad = _collect(
        instance, snyk, replace(collection, fallback_to_backup=False), all_stores, selection="snyk_organizations"
    )
    for sensor, result, status in (
        (sensors.slack_on_run_started, good, "STARTED"),
        (sensors.slack_on_run_success, good, "SUCCESS"),
        (sensors.slack_on_run_failure, bad, "FAILURE"),
    ):
        run = instance.get_run_by_id(result.run_id)
        event = next(
            e
            for e in instance.all_logs(run.run_id)
            if e.dagster_event
            and e.dagster_event.event_type_value
            in {"STARTED": "PIPELINE_START", "SUCCESS": "PIPELINE_SUCCESS", "FAILURE": "PIPELINE_FAILURE"}[status]
        )
        context = dg.build_run_status_sensor_context(
            sensor_name=sensor.name, dagster_instance=instance, dagster_run=run, dagster_event=event.dagster_event
        )
        sensor(context.for_run_failure() if status == "FAILURE" else context)
    started, completed, failed = slack.texts
    assert "collection started" in started and "snyk_organizations" in started
    assert "collection completed" in completed and "2 records" in completed
    assert "collection FAILED" in failed and "HTTP 503" in failed


def test_a_stale_asset_is_announced_once_per_state_change(slack):
    instance = dg.DagsterInstance.ephemeral()
    key = dg.AssetKey("snyk_issues")

    def change(new, old):
        instance.report_runless_asset_event(
            FreshnessStateChange(key=key, new_state=new, previous_state=old, state_change_timestamp=time.time())
        )

    change(FreshnessState.WARN, FreshnessState.PASS)
    texts, cursor = sensors.stale_alerts(instance, {})
    assert len(texts) == 1 and "snyk_issues is getting stale (freshness WARN)" in texts[0]
    assert sensors.stale_alerts(instance, cursor)[0] == []  # already said
    change(FreshnessState.FAIL, FreshnessState.WARN)
    texts, cursor = sensors.stale_alerts(instance, cursor)
    assert len(texts) == 1 and "snyk_issues is stale (freshness FAIL)" in texts[0]


def test_the_stale_sensor_posts_its_alerts(slack):
    instance = dg.DagsterInstance.ephemeral()
    instance.report_runless_asset_event(
        FreshnessStateChange(
            key=dg.AssetKey("snyk_projects"),
            new_state=FreshnessState.FAIL,
            previous_state=FreshnessState.PASS,
            state_change_timestamp=time.time(),
        )
    )
    context = dg.build_sensor_context(instance=instance)
    sensors.slack_on_stale_data(context)
    assert len(slack.texts) == 1 and "snyk_projects is stale" in slack.texts[0]
    assert json.loads(context.cursor)["snyk_projects"] == "FAIL"


def test_a_metrics_run_is_announced_as_metrics_not_as_a_collection():
    from dagster._core.storage.dagster_run import DagsterRun

    instance = dg.DagsterInstance.ephemeral()
    run = DagsterRun(job_name="__ASSET_JOB", run_id="0123abcd-metrics", tags={"secmetrics/kind": "metrics"})
    text = alerts.started_text(instance, run)
    assert "metrics started" in text and "collection started" not in text
