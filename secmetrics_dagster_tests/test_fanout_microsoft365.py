"""Graph's directory role members: several roles at once, the serial order, and the identity service's throttling."""

import logging
import re

import pytest

from secmetrics_dagster.collection.errors import CollectionError, ConfigError
from secmetrics_dagster.collection.http import HttpSettings
from secmetrics_dagster.sandbox import Fault, Microsoft365Volume, Sandbox
from secmetrics_dagster.sources.microsoft365 import Microsoft365Resource
from secmetrics_dagster.sources.microsoft365.pulls import pull_directory_roles

from .conftest import SANDBOX_TOKEN
from .harness import pull_records

TENANT = "contoso.onmicrosoft.com"
FAST = HttpSettings(max_retries=0, read_timeout=5)
LOG = logging.getLogger("graph-fanout-test")
ROUTE = "microsoft365.directory_role_members"


@pytest.fixture
def box():
    with Sandbox(seed=5, token=SANDBOX_TOKEN, latency_ms=40, microsoft365=Microsoft365Volume(users=120)) as sandbox:
        yield sandbox


def graph(box, workers) -> Microsoft365Resource:
    return Microsoft365Resource(
        tenant_id=TENANT,
        client_id="3f2e1d0c-9b8a-4765-8432-10fedcba9876",
        client_secret=SANDBOX_TOKEN,
        login_endpoint=box.url,
        graph_endpoint=box.url,
        fanout_workers=workers,
    )


def collect(resource, tmp_path, settings=FAST) -> list[dict]:
    spool_dir = tmp_path / f"spool-{resource.fanout_workers}"
    return pull_records(resource, pull_directory_roles, "m365", {}, spool_dir, settings, LOG)


def test_members_of_several_directory_roles_are_read_at_once(box, tmp_path):
    collect(graph(box, 4), tmp_path)
    assert 2 <= box.peak_in_flight()[ROUTE] <= 4


def test_role_members_are_spooled_in_the_order_of_the_serial_pull(box, tmp_path):
    serial = collect(graph(box, 1), tmp_path)
    box.reset_stats()
    parallel = collect(graph(box, 8), tmp_path)
    assert box.peak_in_flight()[ROUTE] >= 2
    assert len({m["_role_id"] for m in serial}) >= 3
    assert parallel == serial


def test_a_role_whose_members_fail_fails_the_pull_naming_the_role(box, tmp_path):
    box.add_fault(Fault(route=ROUTE, kind="500", times=0, after=2))
    with pytest.raises(CollectionError) as failure:
        collect(graph(box, 4), tmp_path)
    text = str(failure.value)
    assert re.search(r"Microsoft 365: members of directory role [0-9a-f-]{36}: .*HTTP 500", text), text


def test_the_identity_service_answers_429_with_retry_after_once_the_apps_window_is_spent(tmp_path):
    volume = Microsoft365Volume(users=10, rate_limit=2, rate_window=60)
    with Sandbox(seed=5, token=SANDBOX_TOKEN, microsoft365=volume) as box:
        with graph(box, 1).client(FAST) as http:
            http.authorize()
            for _ in range(2):
                http.get_json("v1.0/directoryRoles")
            with pytest.raises(CollectionError, match="HTTP 429") as throttled:
                http.get_json("v1.0/directoryRoles")
            assert http.limiter.holds == 1
    assert "TooManyRequests" in str(throttled.value)


@pytest.mark.parametrize("workers", [0, 33])
def test_fanout_workers_outside_1_to_32_are_refused_naming_the_variable(workers, box):
    with pytest.raises(ConfigError, match="MICROSOFT365_FANOUT_WORKERS"):
        graph(box, workers).check_settings()
