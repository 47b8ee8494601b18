"""KnowBe4's recipients per phishing test: several tests at once, the serial order, one pace for the account."""

import logging
import re

import pytest

from secmetrics_dagster.collection import RunContext, Spool
from secmetrics_dagster.collection.errors import CollectionError, ConfigError
from secmetrics_dagster.collection.http import HttpSettings
from secmetrics_dagster.sandbox import Fault, KnowBe4Volume, Sandbox
from secmetrics_dagster.sources import knowbe4 as kb4_source
from secmetrics_dagster.sources.base import Pull
from secmetrics_dagster.sources.knowbe4 import KnowBe4Resource

from .conftest import SANDBOX_TOKEN
from .harness import pull_records

FAST = HttpSettings(max_retries=0, read_timeout=5)
LOG = logging.getLogger("knowbe4-fanout-test")


@pytest.fixture
def box():
    volume = KnowBe4Volume(users=30, phishing_tests=10, burst_limit=0)
    with Sandbox(seed=3, token=SANDBOX_TOKEN, latency_ms=40, knowbe4=volume) as sandbox:
        yield sandbox


def resource(box, workers, page_size=500) -> KnowBe4Resource:
    # Paced above what the latency allows one worker (25 a second), so only more workers go faster.
    return KnowBe4Resource(
        token=SANDBOX_TOKEN, endpoint=box.url, requests_per_second=200, fanout_workers=workers, page_size=page_size
    )


def collect(kb4, pull_fn, tag, inputs, tmp_path) -> list[dict]:
    return pull_records(kb4, pull_fn, tag, inputs, tmp_path / f"spool-{tag}-{kb4.fanout_workers}", FAST, LOG)


@pytest.fixture
def tests(box, tmp_path):
    found = collect(resource(box, 1), kb4_source.pull_phishing_tests, "knowbe4_phishing_tests", {}, tmp_path)
    box.reset_stats()
    return found


def recipients_route(box) -> str:
    return next(name for name in box.route_names() if name.startswith("knowbe4.") and "recipient" in name)


def test_recipients_of_several_phishing_tests_are_read_at_once(box, tests, tmp_path):
    inputs = {"knowbe4_phishing_tests": tests}
    collect(resource(box, 4), kb4_source.pull_phishing_recipients, "knowbe4_phishing_recipients", inputs, tmp_path)
    assert 3 <= box.peak_in_flight()[recipients_route(box)] <= 4


def test_recipients_are_spooled_in_the_order_of_the_serial_pull(box, tests, tmp_path):
    inputs = {"knowbe4_phishing_tests": tests}
    tag = "knowbe4_phishing_recipients"
    serial = collect(resource(box, 1), kb4_source.pull_phishing_recipients, tag, inputs, tmp_path)
    parallel = collect(resource(box, 6), kb4_source.pull_phishing_recipients, tag, inputs, tmp_path)
    assert len(serial) > len(tests)
    assert parallel == serial


def test_a_test_whose_recipients_fail_fails_the_pull_naming_the_test(box, tests, tmp_path):
    box.add_fault(Fault(route=recipients_route(box), kind="500", times=0, after=4))
    kb4 = resource(box, 4)
    spool = Spool(RunContext("knowbe4_phishing_recipients", "acme"), tmp_path / "spool-fail", stamp=False)
    with kb4.client(FAST) as http, pytest.raises(CollectionError) as failure:
        kb4_source.pull_phishing_recipients(Pull(kb4, http, spool, {"knowbe4_phishing_tests": tests}, LOG))
    assert re.search(r"KnowBe4: recipients of phishing test (\d+): .*HTTP 500", str(failure.value)), str(failure.value)
    spool.discard()


@pytest.mark.parametrize("persistent", [False, True])
def test_a_short_page_of_one_tests_recipients_is_asked_again_while_other_tests_are_read(
    box, tests, tmp_path, persistent
):
    inputs = {"knowbe4_phishing_tests": tests}
    tag = "knowbe4_phishing_recipients"
    serial = collect(resource(box, 1, page_size=10), kb4_source.pull_phishing_recipients, tag, inputs, tmp_path)
    box.reset_stats()
    # The first test is read alone: its first page loses a record, and (persistent) again when asked again, after
    # its second page has shown the listing goes on.
    box.add_fault(Fault(route=recipients_route(box), kind="short", times=1, after=0))
    if persistent:
        box.add_fault(Fault(route=recipients_route(box), kind="short", times=1, after=2))
    kb4 = resource(box, 4, page_size=10)
    spool = Spool(RunContext(tag, "acme"), tmp_path / f"spool-short-{persistent}", stamp=False)
    with kb4.client(FAST) as http:
        kb4_source.pull_phishing_recipients(Pull(kb4, http, spool, inputs, LOG))
    snapshot = spool.close()
    parallel = list(snapshot.iter_records())
    snapshot.discard()
    if persistent:
        assert http.stats.short_pages == 1 and len(parallel) == len(serial) - 1
        assert parallel == serial[:9] + serial[10:]  # the first test's tenth recipient is the one left out
    else:
        assert http.stats.short_pages == 0 and parallel == serial


@pytest.mark.parametrize("workers", [0, 33])
def test_fanout_workers_outside_1_to_32_are_refused_naming_the_variable(workers):
    with pytest.raises(ConfigError, match="KNOWBE4_FANOUT_WORKERS"):
        KnowBe4Resource(token="t", fanout_workers=workers).check_settings()
