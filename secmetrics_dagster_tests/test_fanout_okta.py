"""Okta's fan-out pulls (factors, roles, group members): several users at once, the serial order, one shared pace."""

import logging
import re

import pytest

from secmetrics_dagster.collection import RunContext, Spool
from secmetrics_dagster.collection.errors import CollectionError, ConfigError
from secmetrics_dagster.collection.http import HttpSettings
from secmetrics_dagster.sandbox import Fault, OktaVolume, Sandbox
from secmetrics_dagster.sources import okta as okta_source
from secmetrics_dagster.sources.base import Pull
from secmetrics_dagster.sources.okta import OktaResource

from .conftest import SANDBOX_TOKEN
from .harness import materialize_source, pull_records
from .helpers import failure_text

SEED = 11
FAST = HttpSettings(max_retries=0, backoff_base=0.01, read_timeout=5)


def collect(resource, pull_fn, tag, inputs, tmp_path, settings=FAST) -> list[dict]:
    """The records one pull spools, in spool order (unstamped, so two runs compare equal)."""
    spool_dir = tmp_path / f"spool-{tag}-{resource.fanout_workers}"
    return pull_records(resource, pull_fn, tag, inputs, spool_dir, settings)


def resource(box, workers, **changes) -> OktaResource:
    return OktaResource(domain=box.url, token=SANDBOX_TOKEN, page_limit=10, fanout_workers=workers, **changes)


@pytest.fixture
def slow_box():
    # 30 ms on every answer: long enough that requests of several workers overlap in the sandbox.
    with Sandbox(seed=SEED, token=SANDBOX_TOKEN, latency_ms=30, okta=OktaVolume(users=40, groups=6)) as box:
        yield box


@pytest.fixture
def users(slow_box, tmp_path):
    found = collect(resource(slow_box, 1), okta_source.pull_users, "okta_users", {}, tmp_path)
    slow_box.reset_stats()
    return found


def test_factors_of_several_users_are_read_at_once(slow_box, users, tmp_path):
    collect(resource(slow_box, 4), okta_source.pull_user_factors, "okta_user_factors", {"okta_users": users}, tmp_path)
    assert 3 <= slow_box.peak_in_flight()["okta.factors"] <= 4


def test_one_worker_reads_one_user_at_a_time(slow_box, users, tmp_path):
    collect(resource(slow_box, 1), okta_source.pull_user_factors, "okta_user_factors", {"okta_users": users}, tmp_path)
    assert slow_box.peak_in_flight()["okta.factors"] == 1


def test_factors_are_spooled_in_the_order_of_the_serial_pull(slow_box, users, tmp_path):
    inputs = {"okta_users": users}
    serial = collect(resource(slow_box, 1), okta_source.pull_user_factors, "okta_user_factors", inputs, tmp_path)
    parallel = collect(resource(slow_box, 8), okta_source.pull_user_factors, "okta_user_factors", inputs, tmp_path)
    assert len(serial) > len(users) // 2
    assert parallel == serial


def test_roles_are_spooled_in_the_order_of_the_serial_pull(slow_box, users, tmp_path):
    inputs = {"okta_users": users}
    serial = collect(resource(slow_box, 1), okta_source.pull_user_roles, "okta_user_roles", inputs, tmp_path)
    parallel = collect(resource(slow_box, 8), okta_source.pull_user_roles, "okta_user_roles", inputs, tmp_path)
    assert serial and parallel == serial


def test_group_members_are_read_at_once_and_spooled_in_the_serial_order(slow_box, tmp_path):
    groups = collect(resource(slow_box, 1), okta_source.pull_groups, "okta_groups", {}, tmp_path)
    inputs = {"okta_groups": groups}
    serial = collect(resource(slow_box, 1), okta_source.pull_group_members, "okta_group_members", inputs, tmp_path)
    slow_box.reset_stats()
    parallel = collect(resource(slow_box, 4), okta_source.pull_group_members, "okta_group_members", inputs, tmp_path)
    assert slow_box.peak_in_flight()["okta.group_members"] >= 2
    assert serial and parallel == serial


def test_the_workers_keep_the_rate_limit_reserve_together(tmp_path):
    # 10 a window, 2 kept in reserve: 8 workers that each kept their own count would send 8 past the last answer's
    # remaining and run into 429s; counted down together, none is sent beyond the reserve.
    volume = OktaVolume(users=24, groups=1, rate_limit=10, rate_window=1)
    with Sandbox(seed=SEED, token=SANDBOX_TOKEN, latency_ms=20, okta=volume) as box:
        okta = resource(box, 8, rate_limit_reserve=20)
        users = collect(okta, okta_source.pull_users, "okta_users", {}, tmp_path)
        box.reset_stats()
        with okta.client(FAST) as http:
            spool = Spool(RunContext("okta_user_factors", "acme"), tmp_path / "spool-limit", stamp=False)
            okta_source.pull_user_factors(
                Pull(okta, http, spool, {"okta_users": users}, logging.getLogger("okta-fanout-test"))
            )
            spool.close().discard()
            statuses = [status for _, _, status in box.arrivals("okta.factors")]
            assert http.limiter.pauses >= 1 and http.stats.throttled == 0
    assert 429 not in statuses and len(statuses) == len([u for u in users if u["status"] != "DEPROVISIONED"])


def test_a_user_whose_factors_fail_fails_the_pull_naming_the_user_and_spools_only_the_users_before(
    slow_box, users, tmp_path
):
    inputs = {"okta_users": users}
    serial = collect(resource(slow_box, 1), okta_source.pull_user_factors, "okta_user_factors", inputs, tmp_path)
    slow_box.add_fault(Fault(route="okta.factors", kind="500", times=0, after=9))
    spool = Spool(RunContext("okta_user_factors", "acme"), tmp_path / "spool-fail", stamp=False)
    okta = resource(slow_box, 4)
    with okta.client(FAST) as http, pytest.raises(CollectionError) as failure:
        okta_source.pull_user_factors(Pull(okta, http, spool, inputs, logging.getLogger("okta-fanout-test")))
    named = re.search(r"Okta: factors of user (\w+): .*HTTP 500", str(failure.value))
    assert named, str(failure.value)
    failed = named.group(1)
    order = [u["id"] for u in users if u["status"] != "DEPROVISIONED"]
    before = set(order[: order.index(failed)])
    # Every user before the failed one is spooled, in order, and nothing of it or after it.
    assert spool.count == len([f for f in serial if f["_user_id"] in before])
    spool.discard()


@pytest.mark.parametrize("workers", [0, 33])
def test_fanout_workers_outside_1_to_32_are_refused_naming_the_variable(workers):
    with pytest.raises(ConfigError, match="OKTA_FANOUT_WORKERS"):
        OktaResource(domain="acme.okta.com", token="t", fanout_workers=workers).check_settings()


def test_fanout_workers_from_the_environment_are_checked_when_read(monkeypatch):
    monkeypatch.setenv("OKTA_FANOUT_WORKERS", "64")
    with pytest.raises(ConfigError, match="OKTA_FANOUT_WORKERS"):
        OktaResource.from_env()


def test_an_out_of_bounds_fanout_fails_the_run_before_any_request(slow_box, collection, file_stores):
    bad = resource(slow_box, 40)
    result = materialize_source(okta_source.SOURCE, bad, collection, file_stores, selection=["okta_users"])
    assert not result.success
    assert "OKTA_FANOUT_WORKERS" in failure_text(result)
    assert slow_box.stats() == {}
