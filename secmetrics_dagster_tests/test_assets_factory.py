"""The asset factory: settings checked before any vendor request, secrets masked in everything that leaves a
collection, and a vendor known to be down in a run sends its dependents to their backups without waiting."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from secmetrics_dagster.assets import build_assets
from secmetrics_dagster.collection import CollectionError, HttpSession
from secmetrics_dagster.collection.resource import CollectionResource
from secmetrics_dagster.sources import snyk as snyk_source
from secmetrics_dagster.sources.base import DatasetSpec, Source, VendorResource
from secmetrics_dagster.sources.snyk import SnykResource
from secmetrics_dagster.stores import StoresResource

from .harness import materialize_source, source_assets
from .helpers import failure_text, log_text, materialization_metadata, replace

SECRET = "s3cr3t-snyk-token-0123456789"


def everything_said(instance, result) -> str:
    """Failure messages, every log line and every materialization's metadata of a run, as one string."""
    metadata = [
        str(v.value)
        for e in result.get_asset_materialization_events()
        for v in e.step_materialization_data.materialization.metadata.values()
    ]
    return "\n".join([failure_text(result), log_text(instance, result), *metadata])


def test_a_token_with_a_copied_newline_never_appears_in_errors_logs_or_metadata(sandbox, collection, tmp_path):
    # Built directly (as launchpad config would be), so the settings-time refusal is bypassed: requests itself
    # refuses the header and quotes its value; the factory must mask it.
    instance = dg.DagsterInstance.ephemeral()
    stores = StoresResource(file_template=str(tmp_path / "data/%TAG/%TENANCY.json"))
    snyk = SnykResource(token=SECRET + "\n", endpoint=sandbox.url)
    result = materialize_source(snyk_source.SOURCE, snyk, collection, stores, instance=instance,
                                selection="snyk_organizations")  # fmt: skip
    assert not result.success
    said = everything_said(instance, result)
    assert "header" in said.lower()  # the cause is still named
    assert SECRET not in said
    assert not list(tmp_path.rglob("*.json"))


@pytest.mark.parametrize(
    ("change", "variable"),
    [
        ({"postgres_host": "127.0.0.1", "postgres_schema": "public; drop"}, "STORE_POSTGRES_SCHEMA"),
        ({"s3_bucket": "b", "s3_backup": "backup/%UUID.json"}, "STORE_AWS_S3_BACKUP"),
        ({"duckdb_path": "x.duckdb", "duckdb_memory_limit": "lots"}, "STORE_DUCKDB_MEMORY_LIMIT"),
    ],
)
def test_bad_store_settings_fail_before_any_vendor_request_naming_the_variable(
    sandbox, snyk, collection, tmp_path, change, variable
):
    stores = StoresResource(file_template=str(tmp_path / "data/%TAG/%TENANCY.json"), **change)
    instance = dg.DagsterInstance.ephemeral()
    result = materialize_source(
        snyk_source.SOURCE, snyk, collection, stores, instance=instance, selection="snyk_organizations"
    )
    assert not result.success and variable in failure_text(result)
    # No step retries, no HTTP retries: the step itself failed within a second, nothing asked of the vendor.
    assert step_seconds(instance, result, "snyk_organizations") < 1
    assert sandbox.stats() == {}
    assert not list(Path(collection.spool_dir).glob("*")) if Path(collection.spool_dir).exists() else True


def step_seconds(instance, result, step_key: str) -> float:
    """From the step's STEP_START to its STEP_FAILURE (its only attempt), as the instance recorded them."""
    events = {
        entry.dagster_event.event_type: entry.timestamp
        for entry in instance.all_logs(result.run_id)
        if entry.dagster_event and entry.dagster_event.step_key == step_key
    }
    assert dg.DagsterEventType.STEP_UP_FOR_RETRY not in events
    return events[dg.DagsterEventType.STEP_FAILURE] - events[dg.DagsterEventType.STEP_START]


@pytest.mark.parametrize(
    ("variables", "variable"),
    [
        ({"STORE_POSTGRES_HOST": "127.0.0.1", "STORE_POSTGRES_PORT": "lots"}, "STORE_POSTGRES_PORT"),
        ({"STORE_POSTGRES_HOST": "127.0.0.1", "STORE_POSTGRES_SCHEMA": "public; drop"}, "STORE_POSTGRES_SCHEMA"),
        ({"COLLECTION_HTTP_MAX_RETRIES": "lots"}, "COLLECTION_HTTP_MAX_RETRIES"),
        ({"TENANCY": "acme corp"}, "TENANCY"),
    ],
)
def test_a_bad_setting_found_when_the_code_loads_is_shown_on_the_assets_and_refused_at_step_start(
    sandbox, snyk, monkeypatch, tmp_path, caplog, variables, variable
):
    for name in ("STORE_AWS_S3_BUCKET", "STORE_DUCKDB", "STORE_POSTGRES_HOST", "TENANCY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("STORE_FILE", str(tmp_path / "data/%TAG/%TENANCY.json"))
    monkeypatch.setenv("COLLECTION_SPOOL_DIR", str(tmp_path / "spool"))
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    # What definitions.py does: read once, reporting instead of raising; the assets are built with them.
    stores = StoresResource.from_env(report_problems=True)
    collection = CollectionResource.from_env(report_problems=True)
    assets = build_assets([snyk_source.SOURCE], stores, collection=collection)
    [organizations] = [a for a in assets if a.key == dg.AssetKey("snyk_organizations")]
    description = organizations.specs_by_key[dg.AssetKey("snyk_organizations")].description
    assert "Not collected until a setting is fixed" in description and variable in description
    assert any(variable in r.getMessage() and r.levelname == "ERROR" for r in caplog.records)

    instance = dg.DagsterInstance.ephemeral()
    result = materialize_source(snyk_source.SOURCE, snyk, collection, stores, instance=instance, assets=assets,
                                selection="snyk_organizations")  # fmt: skip
    assert not result.success and variable in failure_text(result)
    assert step_seconds(instance, result, "snyk_organizations") < 1
    assert sandbox.stats() == {}


def test_a_bad_vendor_setting_found_when_the_code_loads_stops_that_vendor_only(
    sandbox, collection, monkeypatch, tmp_path, caplog
):
    from secmetrics_dagster.sources import okta as okta_source

    monkeypatch.setenv("SNYK_TOKEN", SECRET)
    monkeypatch.setenv("SNYK_ENDPOINT", sandbox.url)
    monkeypatch.setenv("SNYK_PAGE_LIMIT", "abc")
    # What definitions.py does: each vendor read once, reporting instead of raising; the assets built with them.
    snyk = SnykResource.from_env(report_problems=True)
    stores = StoresResource(file_template=str(tmp_path / "data/%TAG/%TENANCY.json"))
    assets = build_assets(
        [snyk_source.SOURCE, okta_source.SOURCE],
        stores,
        collection=collection,
        vendors={snyk_source.SOURCE.resource_key: snyk},
    )
    descriptions = {key.path[-1]: spec.description for a in assets for key, spec in a.specs_by_key.items()}
    problem = "SNYK_PAGE_LIMIT must be a whole number from 10 to 100, got 'abc'"
    assert all(problem in descriptions[tag] for tag in snyk_source.SOURCE.tags)
    assert not any("Not collected" in descriptions[tag] for tag in okta_source.SOURCE.tags)
    assert any(problem in r.getMessage() and r.levelname == "ERROR" for r in caplog.records)

    instance = dg.DagsterInstance.ephemeral()
    snyk_assets = [a for a in assets if a.key.path[-1] in snyk_source.SOURCE.tags]
    result = materialize_source(snyk_source.SOURCE, snyk, collection, stores, instance=instance, assets=snyk_assets,
                                selection="snyk_organizations")  # fmt: skip
    assert not result.success and problem in failure_text(result)
    assert step_seconds(instance, result, "snyk_organizations") < 1
    assert sandbox.stats() == {}
    assert SECRET not in everything_said(instance, result) + caplog.text


def test_the_code_location_loads_with_a_bad_vendor_setting():
    env = {**os.environ, "SNYK_TOKEN": SECRET, "SNYK_PAGE_LIMIT": "abc", "OKTA_FANOUT_WORKERS": "99"}
    probe = (
        "import dagster as dg, secmetrics_dagster.definitions as d; dg.Definitions.validate_loadable(d.defs); "
        "spec = d.defs.resolve_assets_def('snyk_issues').specs_by_key[dg.AssetKey('snyk_issues')]; "
        "print('SNYK_PAGE_LIMIT' in spec.description, len(d.defs.resolve_asset_graph().get_all_asset_keys()) > 30)"
    )
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["True", "True"]
    assert "OKTA_FANOUT_WORKERS" in done.stderr and SECRET not in done.stdout + done.stderr


def test_a_vendor_setting_out_of_bounds_fails_before_any_request(sandbox, snyk, collection, tmp_path):
    stores = StoresResource(file_template=str(tmp_path / "data/%TAG/%TENANCY.json"))
    result = materialize_source(
        snyk_source.SOURCE, replace(snyk, page_limit=500), collection, stores, selection="snyk_organizations"
    )
    assert not result.success and "SNYK_PAGE_LIMIT must be between 10 and 100, got 500" in failure_text(result)
    assert sandbox.stats() == {}


class DownVendor:
    """A vendor with a parent and a child dataset, and two more that need nothing; `down` makes every pull fail."""

    TAGS = ("down_parents", "down_children", "down_users", "down_groups")

    def __init__(self):
        self.down = False
        self.calls = dict.fromkeys(self.TAGS, 0)

    def pull(self, tag):
        def _pull(pull):
            self.calls[tag] += 1
            if self.down:
                raise CollectionError("Down: GET /things failed after 6 attempts: HTTP 503")
            if tag == "down_children":
                assert len(list(pull.inputs["down_parents"])) == 2
            pull.spool.extend({"id": i} for i in range(2))

        return _pull

    def went_down(self):
        self.down, self.calls = True, dict.fromkeys(self.TAGS, 0)


class DownResource(VendorResource):
    def client(self, settings, logger=None):
        return HttpSession("Down", "http://127.0.0.1:9/", settings=settings, logger=logger)


def down_source(vendor: DownVendor) -> Source:
    return Source(
        group="down",
        title="Down tool",
        docs_url="https://example.invalid/docs",
        resource=DownResource,
        datasets=(
            DatasetSpec("down_parents", "Parents", "Two parents.", "GET /parents", pull=vendor.pull("down_parents")),
            DatasetSpec(
                "down_children", "Children", "Two children.", "GET /children", pull=vendor.pull("down_children"),
                deps=("down_parents",),
            ),
            DatasetSpec("down_users", "Users", "Two users.", "GET /users", pull=vendor.pull("down_users")),
            DatasetSpec("down_groups", "Groups", "Two groups.", "GET /groups", pull=vendor.pull("down_groups")),
        ),
        sandbox_env=lambda url, token: {},
    )  # fmt: skip


@pytest.fixture
def retried(monkeypatch):
    """Assets built with two step retries and no delay between attempts."""
    monkeypatch.setenv("COLLECTION_STEP_RETRIES", "2")
    monkeypatch.setenv("COLLECTION_STEP_RETRY_DELAY", "0")


def backed_up(tmp_path, bucket, s3_endpoint) -> StoresResource:
    return StoresResource(
        file_template=str(tmp_path / "data/%TAG/%TENANCY.json"), s3_bucket=bucket, s3_endpoint_url=s3_endpoint
    )


def test_once_a_vendor_was_served_from_backup_its_dependents_do_not_wait_out_their_retries(
    retried, collection, tmp_path, bucket, s3_endpoint
):
    vendor = DownVendor()
    down = down_source(vendor)
    stores = backed_up(tmp_path, bucket, s3_endpoint)
    instance = dg.DagsterInstance.ephemeral()
    assets = source_assets(down)
    selection = "key:down_parents or key:down_children"
    assert materialize_source(down, DownResource(), collection, stores, instance=instance, assets=assets,
                              selection=selection).success  # fmt: skip
    vendor.went_down()

    result = materialize_source(down, DownResource(), collection, stores, instance=instance, assets=assets,
                                selection=selection)  # fmt: skip

    assert result.success, failure_text(result)
    assert vendor.calls == {"down_parents": 3, "down_children": 1, "down_users": 0, "down_groups": 0}
    for tag in ("down_parents", "down_children"):
        assert materialization_metadata(result, tag)["source"] == "backup"
    said = log_text(instance, result)
    assert "down_parents: attempt 1 of 3 failed (" in said
    assert "down_parents was served from its backup in this run" in said
    assert "down_children: attempt 1 of 3 failed (" in said and "instead of waiting for attempts 2-3" in said


def test_once_a_vendor_was_served_from_backup_its_other_assets_do_not_wait_out_their_retries(
    retried, collection, tmp_path, bucket, s3_endpoint
):
    # down_groups after down_users (okta_groups after okta_users): neither reads the other, one vendor. Users
    # go first, as the step that got the vendor's pool slot first would: its step has a higher priority.
    vendor = DownVendor()
    down = down_source(vendor)
    first = build_assets([down], op_tags={"down": {"dagster/priority": "1"}})
    assets = [a for a in first if a.key == dg.AssetKey("down_users")]
    assets += [a for a in source_assets(down) if a.key != dg.AssetKey("down_users")]
    stores = backed_up(tmp_path, bucket, s3_endpoint)
    instance = dg.DagsterInstance.ephemeral()
    selection = "key:down_users or key:down_groups"
    assert materialize_source(down, DownResource(), collection, stores, instance=instance, assets=assets,
                              selection=selection).success  # fmt: skip
    vendor.went_down()

    result = materialize_source(down, DownResource(), collection, stores, instance=instance, assets=assets,
                                selection=selection)  # fmt: skip

    assert result.success, failure_text(result)
    assert (vendor.calls["down_users"], vendor.calls["down_groups"]) == (3, 1)
    for tag in ("down_users", "down_groups"):
        assert materialization_metadata(result, tag)["source"] == "backup"
    said = log_text(instance, result)
    assert (
        "down_groups: attempt 1 of 3 failed (Down: GET /things failed after 6 attempts: HTTP 503). down_users was "
        "served from its backup in this run, so Down tool is known to be down: serving the S3 backup "
        f"s3://{bucket}/backup/down_groups/acme.json collected "
    ) in said


def test_a_failed_attempt_says_which_attempt_when_the_next_starts_and_which_backup_the_last_would_serve(
    retried, collection, tmp_path, bucket, s3_endpoint
):
    vendor = DownVendor()
    down = down_source(vendor)
    stores = backed_up(tmp_path, bucket, s3_endpoint)
    instance = dg.DagsterInstance.ephemeral()
    assets = source_assets(down)
    assert materialize_source(down, DownResource(), collection, stores, instance=instance, assets=assets,
                              selection="down_parents").success  # fmt: skip
    vendor.went_down()

    result = materialize_source(down, DownResource(), collection, stores, instance=instance, assets=assets,
                                selection="down_parents")  # fmt: skip

    assert result.success and vendor.calls["down_parents"] == 3
    said = log_text(instance, result)
    backup = f"the S3 backup s3://{bucket}/backup/down_parents/acme.json collected "
    for attempt in (1, 2):
        assert (
            f"down_parents: attempt {attempt} of 3 failed (Down: GET /things failed after 6 attempts: HTTP 503). "
            f"Dagster starts attempt {attempt + 1} of 3 in about 0 s. If attempt 3 fails too, {backup}"
        ) in said
    assert "is served then, about 0 s from now plus the time the attempts themselves take." in said


@pytest.mark.parametrize(
    ("settings", "why"),
    [
        ({}, "no S3 backup is configured (STORE_AWS_S3_BUCKET is not set)"),
        ({"s3": True, "s3_backup": None}, "STORE_AWS_S3_BACKUP is empty, so no backup copy is kept"),
        ({"s3": True}, "there is no backup at s3://{bucket}/backup/down_parents/acme.json yet"),
        ({"s3": True, "fallback": False}, "COLLECTION_FALLBACK=false turns the fallback off"),
    ],
)
def test_a_failed_attempt_says_why_no_backup_will_be_served(
    retried, collection, tmp_path, bucket, s3_endpoint, settings, why
):
    vendor = DownVendor()
    down = down_source(vendor)
    vendor.went_down()
    stores = StoresResource(file_template=str(tmp_path / "data/%TAG/%TENANCY.json"))
    if settings.get("s3"):
        stores = replace(
            backed_up(tmp_path, bucket, s3_endpoint), **{k: v for k, v in settings.items() if k == "s3_backup"}
        )
    if "fallback" in settings:
        collection = replace(collection, fallback_to_backup=settings["fallback"])
    instance = dg.DagsterInstance.ephemeral()
    result = materialize_source(down, DownResource(), collection, stores, instance=instance, selection="down_parents")
    assert not result.success and vendor.calls["down_parents"] == 3
    said = log_text(instance, result)
    assert (
        "down_parents: attempt 1 of 3 failed (Down: GET /things failed after 6 attempts: HTTP 503). Dagster starts "
        "attempt 2 of 3 in about 0 s. If attempt 3 fails too, the step fails and no backup will be served: "
        + why.format(bucket=bucket)
    ) in said


def test_a_trailing_newline_in_the_tenancy_is_refused_before_any_request(sandbox, snyk, collection, tmp_path):
    stores = StoresResource(file_template=str(tmp_path / "data/%TAG/%TENANCY.json"))
    result = materialize_source(
        snyk_source.SOURCE, snyk, replace(collection, tenancy="acme\n"), stores, selection="snyk_organizations"
    )
    assert not result.success and "TENANCY" in failure_text(result)
    assert sandbox.stats() == {} and not list(tmp_path.rglob("*.json"))
