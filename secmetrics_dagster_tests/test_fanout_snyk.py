"""Snyk's per-organization pulls (members, projects, issues): several organizations at once, the serial order, one
pace for the API key, and a 429 that pauses every worker."""

import logging
import re

import pytest

from secmetrics_dagster.collection import RunContext, Spool
from secmetrics_dagster.collection.errors import CollectionError, ConfigError
from secmetrics_dagster.collection.http import HttpSettings
from secmetrics_dagster.sandbox import Fault, Sandbox, SnykVolume
from secmetrics_dagster.sources import snyk as snyk_source
from secmetrics_dagster.sources.base import Pull
from secmetrics_dagster.sources.snyk import SnykResource

from .conftest import SANDBOX_TOKEN
from .harness import materialize_source, pull_records
from .helpers import failure_text

ISSUES = 30  # per organization: three pages of 10
FAST = HttpSettings(max_retries=2, backoff_base=0.01, read_timeout=5)
LOG = logging.getLogger("snyk-fanout-test")


@pytest.fixture
def box():
    volume = SnykVolume(orgs=8, projects_per_org=12, issues_per_org=ISSUES, members_per_org=4)
    with Sandbox(seed=5, token=SANDBOX_TOKEN, latency_ms=30, snyk=volume) as sandbox:
        yield sandbox


def resource(box, workers, **changes) -> SnykResource:
    # Paced far above what the tests send, unless a test is about the pace.
    settings = {"requests_per_minute": 100_000, **changes}
    return SnykResource(token=SANDBOX_TOKEN, endpoint=box.url, page_limit=10, fanout_workers=workers, **settings)


def collect(snyk, pull_fn, tag, inputs, tmp_path, settings=FAST) -> list[dict]:
    return pull_records(snyk, pull_fn, tag, inputs, tmp_path / f"spool-{tag}-{snyk.fanout_workers}", settings, LOG)


@pytest.fixture
def orgs(box, tmp_path):
    found = collect(resource(box, 1), snyk_source.pull_organizations, "snyk_organizations", {}, tmp_path)
    box.reset_stats()
    return found


def test_issues_of_several_organizations_are_read_at_once(box, orgs, tmp_path):
    collect(resource(box, 4), snyk_source.pull_issues, "snyk_issues", {"snyk_organizations": orgs}, tmp_path)
    assert 3 <= box.peak_in_flight()["snyk.issues"] <= 4


@pytest.mark.parametrize(
    "tag, pull_fn",
    [
        ("snyk_issues", snyk_source.pull_issues),
        ("snyk_projects", snyk_source.pull_projects),
        ("snyk_members", snyk_source.pull_members),
    ],
)
def test_per_organization_records_are_spooled_in_the_order_of_the_serial_pull(box, orgs, tmp_path, tag, pull_fn):
    inputs = {"snyk_organizations": orgs}
    serial = collect(resource(box, 1), pull_fn, tag, inputs, tmp_path)
    parallel = collect(resource(box, 6), pull_fn, tag, inputs, tmp_path)
    assert len(serial) >= len(orgs) * 4
    assert parallel == serial


def test_a_429_in_one_worker_pauses_every_worker_for_its_retry_after(tmp_path):
    # 20 pages an organization: the other workers have pages left to ask for while the told one waits.
    with Sandbox(seed=5, token=SANDBOX_TOKEN, latency_ms=30, snyk=SnykVolume(orgs=5, issues_per_org=200)) as box:
        snyk = resource(box, 4)
        orgs = collect(snyk, snyk_source.pull_organizations, "snyk_organizations", {}, tmp_path)
        box.add_fault(Fault(route="snyk.issues", kind="429", times=1, after=25, retry_after=1))
        spool = Spool(RunContext("snyk_issues", "acme"), tmp_path / "spool-429", stamp=False)
        with snyk.client(FAST) as http:
            snyk_source.pull_issues(Pull(snyk, http, spool, {"snyk_organizations": orgs}, LOG))
            assert http.limiter.holds == 1 and http.stats.throttled == 1
        assert spool.close().records == len(orgs) * 200
        arrivals = box.arrivals("snyk.issues")
    [told] = [answered for _, answered, status in arrivals if status == 429]
    # Requests already on their way when the 429 was answered still arrive (a loaded machine may take a while to
    # hand them over); after that, none until Retry-After. Unpaused, three workers send a dozen in this time.
    during = [arrived - told for arrived, _, _ in arrivals if told + 0.3 < arrived < told + 0.9]
    assert during == []
    assert any(arrived >= told + 0.9 for arrived, _, _ in arrivals)


def test_the_workers_keep_to_one_pace_for_the_api_key_and_are_never_throttled(tmp_path):
    # The sandbox allows 20 requests a second per key; the workers together keep to 18.
    volume = SnykVolume(orgs=8, issues_per_org=ISSUES, rate_limit=20, rate_window=1)
    with Sandbox(seed=5, token=SANDBOX_TOKEN, latency_ms=30, snyk=volume) as box:
        snyk = resource(box, 8, requests_per_minute=18 * 60)
        orgs = collect(snyk, snyk_source.pull_organizations, "snyk_organizations", {}, tmp_path)
        issues = collect(snyk, snyk_source.pull_issues, "snyk_issues", {"snyk_organizations": orgs}, tmp_path)
        statuses = [status for _, _, status in box.arrivals("snyk.issues")]
    assert len(issues) == 8 * ISSUES
    assert len(statuses) == 8 * 3 and 429 not in statuses


def test_the_sandbox_answers_429_with_retry_after_once_a_keys_window_is_spent(tmp_path):
    with Sandbox(seed=5, token=SANDBOX_TOKEN, snyk=SnykVolume(orgs=1, rate_limit=3, rate_window=60)) as box:
        snyk = resource(box, 1)
        with snyk.client(HttpSettings(max_retries=0)) as http:
            for _ in range(3):
                http.get_json("rest/orgs", {"version": snyk.api_version})
            with pytest.raises(CollectionError, match="HTTP 429") as refused:
                http.get_json("rest/orgs", {"version": snyk.api_version})
    assert "SNYK-0001" in str(refused.value)
    [(_, _, status)] = box.arrivals("snyk.orgs")[3:]
    assert status == 429


def test_an_organization_whose_issues_fail_fails_the_pull_naming_it_and_spools_only_the_ones_before(
    box, orgs, tmp_path
):
    box.add_fault(Fault(route="snyk.issues", kind="500", times=0, after=10))
    snyk = resource(box, 4)
    spool = Spool(RunContext("snyk_issues", "acme"), tmp_path / "spool-fail", stamp=False)
    with snyk.client(HttpSettings(max_retries=0)) as http, pytest.raises(CollectionError) as failure:
        snyk_source.pull_issues(Pull(snyk, http, spool, {"snyk_organizations": orgs}, LOG))
    named = re.search(r"Snyk: issues of organization ([0-9a-f-]+): .*HTTP 500", str(failure.value))
    assert named, str(failure.value)
    order = [org["id"] for org in orgs]
    # Every organization before the failed one is spooled whole, nothing of it or after it.
    assert spool.count == order.index(named.group(1)) * ISSUES
    spool.discard()


@pytest.mark.parametrize("workers", [0, 33])
def test_fanout_workers_outside_1_to_32_are_refused_naming_the_variable(workers):
    with pytest.raises(ConfigError, match="SNYK_FANOUT_WORKERS"):
        SnykResource(token="t", fanout_workers=workers).check_settings()


def test_an_out_of_bounds_fanout_fails_the_run_before_any_request(box, collection, file_stores):
    result = materialize_source(
        snyk_source.SOURCE, resource(box, 99), collection, file_stores, selection=["snyk_organizations"]
    )
    assert not result.success
    assert "SNYK_FANOUT_WORKERS" in failure_text(result)
    assert box.stats() == {}
