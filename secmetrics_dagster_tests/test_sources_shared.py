"""Pieces the vendors share instead of writing them again: the fan-out workers setting."""

import pytest

from secmetrics_dagster.collection.errors import ConfigError
from secmetrics_dagster.sources.base import MAX_FANOUT_WORKERS, VendorResource, fanout_setting
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
