"""Pieces the vendors share instead of writing them again: the fan-out workers setting, the check of parent ids
that go into a URL, a vendor pace under the global one."""

import re

import pytest

from secmetrics_dagster.collection.errors import CollectionError, ConfigError
from secmetrics_dagster.collection.http import HttpSettings
from secmetrics_dagster.sources.base import MAX_FANOUT_WORKERS, Pull, VendorResource, fanout_setting
from secmetrics_dagster.sources.knowbe4 import KnowBe4Resource
from secmetrics_dagster.sources.microsoft365.client import Microsoft365Resource
from secmetrics_dagster.sources.okta import OktaResource
from secmetrics_dagster.sources.snyk import SnykResource


class _FannedOut(VendorResource):
    fanout_workers: int = fanout_setting("THING_FANOUT_WORKERS", 3, "Things read at once", "They share one pace.")


def _setting(resource, name="fanout_workers"):
    return dict(resource.declared_settings())[name]


def test_the_fanout_setting_documents_its_bounds_between_what_is_fanned_out_and_how_the_workers_share_the_pace():
    setting = _setting(_FannedOut)
    assert (setting.env, setting.default, setting.low, setting.high) == ("THING_FANOUT_WORKERS", 3, 1, 32)
    assert setting.doc == "Things read at once (1-32; 1: one after another). They share one pace."
    assert _FannedOut().fanout_workers == 3


def test_the_fanout_setting_is_read_from_its_variable_and_refused_outside_1_to_32(monkeypatch):
    monkeypatch.setenv("THING_FANOUT_WORKERS", "7")
    assert _FannedOut.from_env().fanout_workers == 7
    for bad in ("0", "33"):
        monkeypatch.setenv("THING_FANOUT_WORKERS", bad)
        with pytest.raises(ConfigError, match="THING_FANOUT_WORKERS"):
            _FannedOut.from_env()
    for bad in (0, MAX_FANOUT_WORKERS + 1):
        with pytest.raises(ConfigError, match="THING_FANOUT_WORKERS"):
            _FannedOut(fanout_workers=bad).check_settings()


@pytest.mark.parametrize(
    "resource, env, default",
    [
        (SnykResource, "SNYK_FANOUT_WORKERS", 10),
        (OktaResource, "OKTA_FANOUT_WORKERS", 4),
        (KnowBe4Resource, "KNOWBE4_FANOUT_WORKERS", 2),
        (Microsoft365Resource, "MICROSOFT365_FANOUT_WORKERS", 4),
    ],
)
def test_every_fanned_out_vendor_keeps_its_variable_default_and_bounds(resource, env, default):
    setting = _setting(resource)
    assert (setting.env, setting.default, setting.low, setting.high) == (env, default, 1, 32)
    assert " read at once (1-32; 1: one after another). " in setting.doc


_ID = re.compile(r"[A-Za-z0-9]{1,8}")


def _pull(records):
    return Pull(resource=SnykResource(token="t"), client=None, spool=None, inputs={"things": records}, log=None)


def test_checked_ids_yields_each_id_with_its_record_in_order_integers_included():
    records = [{"id": "a1"}, {"id": 42, "name": "n"}, {"id": "Z"}]
    assert list(_pull(records).checked_ids("things", "id", _ID, "thing", "a thing id")) == [
        ("a1", records[0]),
        ("42", records[1]),
        ("Z", records[2]),
    ]


@pytest.mark.parametrize(
    "record, shown",
    [
        ({"id": "a1/../admin"}, "a1/../admin"),  # a partial match is not one: it would change the URL's path
        ({"id": "a1\n"}, "a1\n"),
        ({"id": ""}, ""),
        ({"id": "x" * 60}, "x" * 40),  # cut to 40 characters in the message
        ({"id": True}, "True"),  # a bool is not an id, though str(True) would match
        ({"id": None}, ""),  # str(None) would match too
        ({}, ""),
        ("not a record", ""),
    ],
)
def test_checked_ids_refuses_anything_but_a_whole_match_naming_the_vendor_the_dataset_and_the_value(record, shown):
    checked = _pull([{"id": "ok"}, record, {"id": "never"}]).checked_ids("things", "id", _ID, "thing", "a thing id")
    assert next(checked) == ("ok", {"id": "ok"})  # lazy: what comes before a bad id is handed out first
    with pytest.raises(CollectionError) as failure:
        next(checked)
    assert str(failure.value) == f"Snyk: thing id {shown!r} in things is not a thing id"


def test_checked_ids_reads_a_listing_when_given_one_and_names_it():
    pull = _pull([])
    assert list(pull.checked_ids("v1/list", "key", _ID, "item", "an item id", [{"key": 7}])) == [("7", {"key": 7})]
    with pytest.raises(CollectionError, match=r"^Snyk: item id '-' in v1/list is not an item id$"):
        list(pull.checked_ids("v1/list", "key", _ID, "item", "an item id", [{"key": "-"}]))


@pytest.mark.parametrize(
    "ceiling, pace, expected",
    [(None, 27.0, 27.0), (5.0, 27.0, 5.0), (30.0, 2.0, 2.0), (4.0, None, 4.0), (None, None, None)],
)
def test_http_settings_paced_keeps_the_lower_of_the_vendor_pace_and_the_global_ceiling(ceiling, pace, expected):
    settings = HttpSettings(max_requests_per_second=ceiling, read_timeout=7)
    paced = settings.paced(pace)
    assert paced.max_requests_per_second == expected and paced.read_timeout == 7
    assert settings.max_requests_per_second == ceiling  # a copy


def test_snyk_and_knowbe4_sessions_are_paced_by_their_own_setting_under_the_global_ceiling():
    with SnykResource(token="t", requests_per_minute=1200).client(HttpSettings()) as snyk:
        assert snyk.settings.max_requests_per_second == 20
    knowbe4 = KnowBe4Resource(token="t", requests_per_second=3)
    with knowbe4.client(HttpSettings(max_requests_per_second=1.5)) as session:
        assert session.settings.max_requests_per_second == 1.5
