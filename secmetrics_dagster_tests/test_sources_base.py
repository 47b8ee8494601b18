"""The source framework: descriptions in the UI, and sources without credentials skipped or refused."""

import dagster as dg

from secmetrics_dagster import defs
from secmetrics_dagster.assets import build_assets
from secmetrics_dagster.collection import HttpSession
from secmetrics_dagster.sources import snyk as snyk_source
from secmetrics_dagster.sources.base import DatasetSpec, Source, VendorResource
from secmetrics_dagster.sources.snyk import SnykResource
from secmetrics_dagster.stores import SnapshotIOManager

from .helpers import failure_text, log_text, materialization_metadata, materialized_tags


class OtherResource(VendorResource):
    def missing_env(self):
        return []

    def client(self, settings, logger=None):
        return HttpSession("Other", "http://127.0.0.1:9/", settings=settings, logger=logger)


def _three_things(pull):
    pull.spool.extend({"id": i} for i in range(3))


OTHER = Source(
    group="other",
    title="Other tool",
    docs_url="https://example.invalid/docs",
    resource=OtherResource,
    datasets=(DatasetSpec("other_things", "Things", "Three things.", "GET /things", pull=_three_things),),
    sandbox_env=lambda url, token: {},
)
# Built together, as the definitions build every source: the factory knows "every collection asset".
both_assets = build_assets([snyk_source.SOURCE, OTHER])


def _run(collection, stores, selection=None):
    """Run through a Definitions' global asset job, as the CLI and the UI do."""
    instance = dg.DagsterInstance.ephemeral()
    job = dg.Definitions(
        assets=both_assets,
        resources={
            "collection": collection,
            "stores": stores,
            "snapshot_io_manager": SnapshotIOManager(stores=stores),
            "snyk": SnykResource(token=None),
            "other": OtherResource(),
        },
    ).resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(
        instance=instance,
        raise_on_error=False,
        asset_selection=[dg.AssetKey(k) for k in selection] if selection else None,
    )
    return instance, result


def test_a_whole_run_skips_an_unconfigured_source_with_a_warning_and_stays_green(collection, all_stores):
    instance, result = _run(collection, all_stores)
    assert result.success, failure_text(result)
    assert materialized_tags(result) == {"other_things"}
    assert materialization_metadata(result, "other_things")["records"] == 3
    assert "Snyk: snyk_organizations skipped, missing environment variable(s) SNYK_TOKEN" in log_text(instance, result)


def test_asking_only_for_an_unconfigured_source_fails_naming_the_variable(collection, all_stores):
    _instance, result = _run(collection, all_stores, selection=["snyk_organizations", "snyk_issues"])
    assert not result.success
    assert "Snyk: not configured, missing environment variable(s) SNYK_TOKEN" in failure_text(result)


def test_every_asset_describes_itself_from_its_source():
    specs = {spec.key.to_user_string(): spec for spec in defs.resolve_all_asset_specs()}
    issues = specs["snyk_issues"]
    assert issues.group_name == "snyk"
    assert "GET /rest/orgs/{org_id}/issues" in issues.description and "SNYK_TOKEN" in issues.description
    assert issues.metadata["credentials"] == "SNYK_TOKEN"
    assert {dep.asset_key.to_user_string() for dep in issues.deps} == {"snyk_organizations"}
    for spec in specs.values():
        assert spec.freshness_policy is not None, spec.key


def test_definitions_load_and_secrets_enter_config_only_as_env_var_references(monkeypatch):
    monkeypatch.setenv("SNYK_TOKEN", "very-secret-token-value")
    monkeypatch.setenv("STORE_POSTGRES_PASSWORD", "very-secret-pg-password")
    from secmetrics_dagster.definitions import build_resources

    resources = build_resources()
    assert isinstance(resources["snyk"].token, dg.EnvVar) and resources["snyk"].token.env_var_name == "SNYK_TOKEN"
    assert isinstance(resources["stores"].postgres_password, dg.EnvVar)
    dg.Definitions.validate_loadable(defs)
