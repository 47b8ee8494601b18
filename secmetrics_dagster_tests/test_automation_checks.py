"""Asset checks on every collection asset: records present, no large drop against the previous upload, the
fields metrics rely on present. Evaluated in the run, on the upload read back from a store."""

import dagster as dg
import pytest

from secmetrics_dagster.automation import checks
from secmetrics_dagster.automation.checks import checks_for
from secmetrics_dagster.sources import snyk as snyk_source
from secmetrics_dagster.sources.base import DatasetSpec
from secmetrics_dagster.stores import SnapshotIOManager

from .harness import source_assets
from .helpers import failure_text

USERS = DatasetSpec("okta_users", "Users", "Users.", "GET /api/v1/users", required_fields=("id", "profile.login"))
EMPTY_OK = DatasetSpec("okta_user_factors", "Factors", "Factors.", "GET /factors", allow_empty=True)


def _results(dataset, records, previous=None, sample=(), **kw):
    return {r.check_name: r for r in checks.evaluate(dataset, records, "u-1", "api", previous, list(sample), **kw)}


def _evaluations(instance, result) -> dict:
    return {
        (
            e.dagster_event.event_specific_data.asset_key.path[-1],
            e.dagster_event.event_specific_data.check_name,
        ): e.dagster_event.event_specific_data
        for e in instance.all_logs(result.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    }


def test_every_check_passes_on_a_complete_collection_from_the_sandbox(snyk, collection, all_stores):
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [*source_assets(snyk_source.SOURCE), *checks_for([snyk_source.SOURCE])],
        instance=instance,
        raise_on_error=False,
        resources={
            "collection": collection,
            "stores": all_stores,
            "snyk": snyk,
            "snapshot_io_manager": SnapshotIOManager(stores=all_stores),
        },
    )
    assert result.success, failure_text(result)
    evaluations = _evaluations(instance, result)
    # four assets: records, count, required fields, provenance each, and columns_parsed where columns are typed
    typed = sum(1 for d in snyk_source.SOURCE.datasets if checks.typed_columns(d))
    assert len(evaluations) == 4 * 4 + typed
    assert all(e.passed for e in evaluations.values()), {
        k: e.description for k, e in evaluations.items() if not e.passed
    }
    assert evaluations[("snyk_issues", checks.FIELDS_PRESENT)].metadata["sampled"].value == 114


def test_zero_records_is_an_error(monkeypatch):
    result = _results(USERS, 0)[checks.RECORDS_PRESENT]
    assert not result.passed and result.severity == dg.AssetCheckSeverity.ERROR
    assert "no records in api upload u-1" in result.description


def test_zero_records_passes_where_the_dataset_allows_empty():
    result = _results(EMPTY_OK, 0)[checks.RECORDS_PRESENT]
    assert result.passed and "empty is normal" in result.description


@pytest.mark.parametrize("records,passed", [(51, True), (50, True), (49, False), (200, True)])
def test_a_drop_of_more_than_half_against_the_previous_upload_warns(monkeypatch, records, passed):
    monkeypatch.delenv("COLLECTION_MAX_DROP", raising=False)
    result = _results(USERS, records, previous=100)[checks.COUNT_STABLE]
    assert result.passed is passed and result.severity == dg.AssetCheckSeverity.WARN
    assert "against 100 in the previous upload" in result.description


def test_the_allowed_drop_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("COLLECTION_MAX_DROP", "0.1")
    assert not _results(USERS, 85, previous=100)[checks.COUNT_STABLE].passed
    monkeypatch.setenv("COLLECTION_MAX_DROP", "half")
    with pytest.raises(Exception, match="COLLECTION_MAX_DROP"):
        _results(USERS, 85, previous=100)


def test_missing_or_null_required_fields_fail_naming_the_field_and_an_example():
    sample = [
        {"id": "u1", "profile": {"login": "a@x"}},
        {"id": "u2", "profile": {}},
        {"id": "u3", "profile": {"login": None}},
    ]
    result = _results(USERS, 3, sample=sample)[checks.FIELDS_PRESENT]
    assert not result.passed and result.severity == dg.AssetCheckSeverity.ERROR
    assert "profile.login (2 of 3, e.g. u2)" in result.description
    assert result.metadata["missing profile.login"].value == 2 and result.metadata["missing id"].value == 0


def test_dotted_paths_reach_into_lists():
    assert checks.lookup({"tags": [{"key": "env"}]}, "tags.0.key") == "env"
    assert checks.lookup({"tags": []}, "tags.0.key") is checks._MISSING


def test_the_previous_upload_is_the_newest_with_another_upload_id():
    instance = dg.DagsterInstance.ephemeral()
    for upload, records in (("u-1", 100), ("u-2", 80), ("u-2", 80)):  # u-2 twice: a backup reload of it
        instance.report_runless_asset_event(
            dg.AssetMaterialization("okta_users", metadata={"upload_id": upload, "records": records})
        )
    assert checks.previous_record_count(instance, dg.AssetKey("okta_users"), "u-2") == 100
    assert checks.previous_record_count(instance, dg.AssetKey("okta_users"), "u-3") == 80


def test_fields_are_checked_on_a_bounded_sample_read_back_from_the_store(monkeypatch, snyk, collection, all_stores):
    monkeypatch.setenv("COLLECTION_CHECK_SAMPLE", "25")
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [*source_assets(snyk_source.SOURCE), *checks_for([snyk_source.SOURCE])],
        instance=instance,
        selection="key:snyk_organizations or key:snyk_issues",
        resources={
            "collection": collection,
            "stores": all_stores,
            "snyk": snyk,
            "snapshot_io_manager": SnapshotIOManager(stores=all_stores),
        },
    )
    assert result.success
    assert _evaluations(instance, result)[("snyk_issues", checks.FIELDS_PRESENT)].metadata["sampled"].value == 25
