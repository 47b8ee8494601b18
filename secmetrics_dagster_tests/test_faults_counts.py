"""Totals a vendor reports but documents as eventually consistent (Intune's @odata.count) are recorded with the
upload and compared by record_count_stable: a difference warns, it does not fail the pull."""

import dagster as dg

from secmetrics_dagster.automation import checks
from secmetrics_dagster.sandbox import Microsoft365Volume, Sandbox
from secmetrics_dagster.sources import MICROSOFT365
from secmetrics_dagster.sources.base import DatasetSpec
from secmetrics_dagster.sources.microsoft365 import Microsoft365Resource

from .conftest import SANDBOX_TOKEN
from .harness import materialize_source
from .helpers import failure_text, materialization_metadata

DEVICES = DatasetSpec("microsoft365_managed_devices", "Devices", "Devices.", "GET /devices")


def test_intunes_reported_device_count_is_recorded_with_the_upload(collection, file_stores):
    with Sandbox(seed=5, token=SANDBOX_TOKEN, microsoft365=Microsoft365Volume(devices=23, page_size=10)) as box:
        resource = Microsoft365Resource(
            tenant_id="contoso.onmicrosoft.com",
            client_id="3f2e1d0c-9b8a-4765-8432-10fedcba9876",
            client_secret=SANDBOX_TOKEN,
            login_endpoint=box.url,
            graph_endpoint=box.url,
        )
        result = materialize_source(
            MICROSOFT365, resource, collection, file_stores, selection="microsoft365_managed_devices"
        )
    assert result.success, failure_text(result)
    md = materialization_metadata(result, "microsoft365_managed_devices")
    assert md["reported_total"] == md["records"] == 23


def test_a_reported_total_the_upload_does_not_match_warns_naming_both_counts():
    result = {r.check_name: r for r in checks.evaluate(DEVICES, 948, "u-1", "api", None, [], reported_total=949)}[
        checks.COUNT_STABLE
    ]
    assert not result.passed and result.severity == dg.AssetCheckSeverity.WARN
    assert "reported 949 records but 948 arrived" in result.description


def test_a_matching_reported_total_passes():
    result = {r.check_name: r for r in checks.evaluate(DEVICES, 23, "u-1", "api", None, [], reported_total=23)}[
        checks.COUNT_STABLE
    ]
    assert result.passed
