"""Settings declared once: from_env, missing_env, bounds and the README rows all come from one env_setting."""

from typing import ClassVar, Optional

import dagster as dg
import pytest

from secmetrics_dagster.collection.errors import ConfigError
from secmetrics_dagster.collection.settings import SettingsResource, env_setting, settings_table_rows
from secmetrics_dagster.sources import SOURCES
from secmetrics_dagster.sources.snyk import SnykResource
from secmetrics_dagster.stores import StoresResource


class ToolResource(SettingsResource):
    settings_title: ClassVar[str] = "Tool"

    token: Optional[str] = env_setting("SECMETRICS_T_TOKEN", "API token.", secret=True, required=True)
    url: str = env_setting("SECMETRICS_T_URL", "API host.", "https://tool.example")
    page: int = env_setting("SECMETRICS_T_PAGE", "Page size (1-50).", 20, low=1, high=50)
    ratio: float = env_setting("SECMETRICS_T_RATIO", "A share.", 0.5, low=0, high=1)
    enabled: bool = env_setting("SECMETRICS_T_ENABLED", "On or off.", True)
    name: str = env_setting("SECMETRICS_T_NAME", "A name.", "acme", pattern=r"[a-z]+")
    path: Optional[str] = env_setting("SECMETRICS_T_PATH", "A path; empty turns it off.", "x/%TAG", blank_disables=True)
    not_from_env: int = 3


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for _name, setting in ToolResource.declared_settings():
        monkeypatch.delenv(setting.env, raising=False)


def test_unset_variables_give_the_declared_defaults_and_the_required_ones_are_missing():
    tool = ToolResource.from_env()
    assert (tool.token, tool.url, tool.page, tool.ratio, tool.enabled, tool.name, tool.path) == (
        None, "https://tool.example", 20, 0.5, True, "acme", "x/%TAG",
    )  # fmt: skip
    assert tool.missing_env() == ["SECMETRICS_T_TOKEN"]


def test_values_are_read_as_the_field_type(monkeypatch):
    monkeypatch.setenv("SECMETRICS_T_PAGE", " 7 ")
    monkeypatch.setenv("SECMETRICS_T_RATIO", "0.25")
    monkeypatch.setenv("SECMETRICS_T_ENABLED", "off")
    monkeypatch.setenv("SECMETRICS_T_PATH", "")
    tool = ToolResource.from_env()
    assert (tool.page, tool.ratio, tool.enabled, tool.path) == (7, 0.25, False, None)


def test_a_secret_becomes_an_envvar_reference_never_its_value(monkeypatch):
    monkeypatch.setenv("SECMETRICS_T_TOKEN", "s3cr3t-value")
    tool = ToolResource.from_env()
    assert isinstance(tool.token, dg.EnvVar) and tool.token.env_var_name == "SECMETRICS_T_TOKEN"
    assert tool.missing_env() == []


@pytest.mark.parametrize("value", ["s3cr3t-value\n", " s3cr3t-value", "s3cr3t-value\t"])
def test_a_secret_with_surrounding_whitespace_is_refused_naming_the_variable_not_the_value(monkeypatch, value):
    monkeypatch.setenv("SECMETRICS_T_TOKEN", value)
    with pytest.raises(ConfigError, match="SECMETRICS_T_TOKEN has leading or trailing whitespace") as caught:
        ToolResource.from_env()
    assert "s3cr3t" not in str(caught.value)


def test_the_snyk_token_with_a_copied_newline_is_refused_before_any_request(monkeypatch):
    monkeypatch.setenv("SNYK_TOKEN", "sandbox-token\n")
    with pytest.raises(ConfigError, match="SNYK_TOKEN has leading or trailing whitespace"):
        SnykResource.from_env()


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("SECMETRICS_T_PAGE", "0", "SECMETRICS_T_PAGE must be from 1 to 50, got 0"),
        ("SECMETRICS_T_PAGE", "lots", "SECMETRICS_T_PAGE must be a whole number from 1 to 50, got 'lots'"),
        ("SECMETRICS_T_RATIO", "1.5", "SECMETRICS_T_RATIO must be from 0 to 1, got 1.5"),
        ("SECMETRICS_T_ENABLED", "maybe", "SECMETRICS_T_ENABLED must be true or false, got 'maybe'"),
        ("SECMETRICS_T_NAME", "acme\n", "SECMETRICS_T_NAME='acme\\\\n' is not valid"),
    ],
)
def test_a_bad_value_is_refused_when_read_naming_the_variable(monkeypatch, variable, value, message):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=message):
        ToolResource.from_env()


def test_bounds_are_checked_on_a_resource_built_without_the_environment():
    with pytest.raises(ConfigError, match="SECMETRICS_T_PAGE must be between 1 and 50, got 99"):
        ToolResource(page=99).check_settings()
    ToolResource(page=50).check_settings()


def test_fields_without_a_declaration_are_plain_config():
    assert "not_from_env" not in {name for name, _ in ToolResource.declared_settings()}


def test_the_readme_rows_come_from_the_declaration():
    rows = settings_table_rows(ToolResource)
    assert (
        rows[0]
        == "| `SECMETRICS_T_TOKEN` | required | Tool: API token. Secret: read from the environment at run time, never shown. |"
    )
    assert "| `SECMETRICS_T_RATIO` | `0.5` | Tool: A share. |" in rows
    assert "| `SECMETRICS_T_ENABLED` | `true` | Tool: On or off. |" in rows


def test_the_ui_describes_each_field_with_its_variable():
    assert ToolResource.model_fields["page"].description == "Page size (1-50). (from SECMETRICS_T_PAGE)"


def test_every_source_declares_its_required_variables_once_on_its_resource():
    for source in SOURCES:
        declared = [s.env for s in source.env_vars]
        assert len(declared) == len(set(declared)), source.group
        assert source.required_env, source.group
        assert set(source.resource().missing_env()) <= set(declared), source.group


def test_store_settings_come_from_the_seed_variables(monkeypatch):
    monkeypatch.setenv("STORE_FILE", "")
    monkeypatch.setenv("STORE_POSTGRES_PORT", "6543")
    monkeypatch.setenv("STORE_POSTGRES_PASSWORD", "pw-secret")
    stores = StoresResource.from_env()
    assert stores.file_template is None and stores.postgres_port == 6543
    assert isinstance(stores.postgres_password, dg.EnvVar)


def test_with_report_problems_an_unreadable_value_is_recorded_and_the_resource_refused_when_used(monkeypatch):
    monkeypatch.setenv("SECMETRICS_T_PAGE", "lots")
    monkeypatch.setenv("SECMETRICS_T_TOKEN", "s3cr3t-value\n")
    tool = ToolResource.from_env(report_problems=True)  # what the definitions do: loading does not fail
    assert tool.page == 20 and tool.token is None  # the defaults stand in, and are never used:
    assert tool.settings_problems == [
        "SECMETRICS_T_TOKEN has leading or trailing whitespace (often a newline copied with the secret): remove it "
        "and set SECMETRICS_T_TOKEN again",
        "SECMETRICS_T_PAGE must be a whole number from 1 to 50, got 'lots'",
    ]
    with pytest.raises(ConfigError, match="SECMETRICS_T_TOKEN has leading.*; SECMETRICS_T_PAGE must be") as caught:
        tool.check_settings()
    assert "s3cr3t" not in str(caught.value)
    assert len(ToolResource.from_env(report_problems=True, page=5).settings_problems) == 1  # an override wins


def test_the_settings_report_lists_every_problem_not_only_the_first():
    tool = ToolResource(page=99, ratio=2.0)
    assert tool.settings_report() == [
        "SECMETRICS_T_PAGE must be between 1 and 50, got 99",
        "SECMETRICS_T_RATIO must be between 0 and 1, got 2",
    ]
    with pytest.raises(ConfigError, match="SECMETRICS_T_PAGE") as caught:
        tool.check_settings()
    assert "SECMETRICS_T_RATIO" not in str(caught.value)  # at step start the first is enough


def test_every_bad_store_setting_is_reported_and_the_stores_refuse_to_build(monkeypatch):
    for name, value in {
        "STORE_FILE": "data/%TAG/%TENANCY.json",
        "STORE_POSTGRES_HOST": "127.0.0.1",
        "STORE_POSTGRES_PORT": "lots",
        "STORE_POSTGRES_SCHEMA": "public; drop",
        "STORE_AWS_S3_BUCKET": "b",
        "STORE_AWS_S3_BACKUP": "backup/%UUID.json",
        "STORE_DUCKDB": "x.duckdb",
        "STORE_DUCKDB_MEMORY_LIMIT": "lots",
    }.items():
        monkeypatch.setenv(name, value)
    stores = StoresResource.from_env(report_problems=True)
    report = stores.settings_report()
    # Read first (the port), then each store's own check: S3, PostgreSQL, DuckDB.
    named = ["STORE_POSTGRES_PORT", "STORE_AWS_S3_BACKUP", "STORE_POSTGRES_SCHEMA", "STORE_DUCKDB_MEMORY_LIMIT"]
    assert len(report) == len(named) and all(variable in problem for variable, problem in zip(named, report))
    for use in (stores.build, stores.s3_store, stores.check_settings):
        with pytest.raises(ConfigError, match="STORE_POSTGRES_PORT must be a whole number"):
            use()
    monkeypatch.setenv("STORE_POSTGRES_PORT", "5432")
    with pytest.raises(ConfigError, match="STORE_AWS_S3_BACKUP"):
        StoresResource.from_env(report_problems=True).build()
