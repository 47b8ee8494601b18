"""Progress of a long pull in the run log: at most one line per COLLECTION_PROGRESS_SECONDS with the records so
far, requests, throttled answers and, where the API reported a total, percent and time left."""

import re

import dagster as dg

from secmetrics_dagster.collection.progress import Progress
from secmetrics_dagster.sandbox import CrowdStrikeVolume, Fault, Sandbox
from secmetrics_dagster.sources import crowdstrike as falcon_source
from secmetrics_dagster.sources.crowdstrike import CrowdStrikeResource

from .conftest import SANDBOX_TOKEN
from .harness import materialize_source
from .helpers import failure_text, log_text, replace


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Lines:
    def __init__(self):
        self.lines = []

    def info(self, text):
        self.lines.append(text)


def progress(clock, log, records, total=None, stats=None):
    return Progress(
        "snyk_issues", log, 15, records=lambda: records[0], total=lambda: total, stats=lambda: stats or {}, clock=clock
    )


def test_a_progress_line_is_logged_at_most_once_per_interval():
    clock, log, records = Clock(), Lines(), [0]
    p = progress(clock, log, records)
    clock.now += 14.9
    assert not p.tick() and log.lines == []
    clock.now += 0.1
    assert p.tick() and len(log.lines) == 1
    clock.now += 10
    assert not p.tick()
    clock.now += 5
    assert p.tick() and len(log.lines) == 2


def test_the_line_gives_records_requests_throttled_waits_percent_and_time_left():
    clock, log, records = Clock(), Lines(), [250]
    stats = {"http_requests": 26, "http_throttled": 3, "http_waited_seconds": 4.0, "http_paced_seconds": 2.0}
    p = progress(clock, log, records, total=1000, stats=stats)
    clock.now += 30  # 250 records in 30 s: 750 more take about 90 s
    assert p.line() == (
        "snyk_issues: 250 records so far (25% of 1,000, about 90 s left), 26 requests, 3 throttled (6 s waited), 30 s in"
    )


def test_without_a_reported_total_the_line_has_no_percent_or_time_left():
    clock, log, records = Clock(), Lines(), [12_345]
    p = progress(clock, log, records, stats={"http_requests": 124})
    clock.now += 600
    assert p.line() == "snyk_issues: 12,345 records so far, 124 requests, 0 throttled, 10 min 00 s in"


def test_a_pull_spanning_several_intervals_logs_its_progress_in_the_run_log(collection, file_stores):
    # Spotlight reports its total on the first page (meta.pagination.total) and pages on with a cursor: the kind
    # of long single listing progress is for. (A fan-out's records reach the spool a parent at a time.)
    volume = CrowdStrikeVolume(hosts=5, vulnerabilities=80)
    with Sandbox(seed=3, token=SANDBOX_TOKEN, latency_ms=60, crowdstrike=volume) as box:
        box.add_fault(Fault(route="crowdstrike.spotlight", kind="429", times=1, after=2, retry_after=0))
        falcon = CrowdStrikeResource(  # 8 pages of 60 ms and more
            client_id="sandbox-client", client_secret=SANDBOX_TOKEN, base_url=box.url, spotlight_limit=10
        )
        instance = dg.DagsterInstance.ephemeral()
        result = materialize_source(
            falcon_source.SOURCE,
            falcon,
            replace(collection, progress_seconds=0.1),
            file_stores,
            selection=["crowdstrike_vulnerabilities"],
            instance=instance,
        )
    assert result.success, failure_text(result)
    lines = [
        line for line in log_text(instance, result).splitlines() if line.startswith("crowdstrike_vulnerabilities: ")
    ]
    progress_lines = [line for line in lines if "records so far" in line]
    assert len(progress_lines) >= 2, lines
    last = progress_lines[-1]
    assert re.search(r"records so far \(\d+% of 80(, about \d+ s left)?\), \d+ requests, 1 throttled", last), last
