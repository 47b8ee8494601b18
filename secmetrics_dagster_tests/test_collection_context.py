"""Path templating and identifier validation: the seed's path variables, and hostile values refused."""

from datetime import UTC, datetime

import pytest

from secmetrics_dagster.collection import InvalidIdentifierError, RunContext, expand_path

HOSTILE = ["../../etc", "x; DROP TABLE y", "", "a" * 300, "a/b", "a\\b", ".hidden", "tab\tname", "ünïcode", "a..b"]
WHEN = datetime(2024, 7, 5, 4, 3, 2, tzinfo=UTC)
UPLOAD = "0b7d5a0e-3c56-4f0e-9d0c-2f8a1d7e6b11"


def test_every_seed_path_variable_expands_from_the_run_context():
    ctx = RunContext("crowdstrike_hosts", "company", UPLOAD, WHEN)
    assert expand_path("%TAG/%TENANCY/%UUID/%YYYY-%MM-%DD %hh:%mm:%ss.json", ctx) == (
        f"crowdstrike_hosts/company/{UPLOAD}/2024-07-05 04:03:02.json"
    )


def test_expansion_is_single_pass_so_values_are_never_expanded_again():
    ctx = RunContext("snyk_issues", "acme", UPLOAD, WHEN)
    assert expand_path("%TENANCY%TAG", ctx) == "acmesnyk_issues"


def test_run_context_gives_a_fresh_uuid4_and_one_utc_second():
    a, b = RunContext("snyk_issues", "acme"), RunContext("snyk_issues", "acme")
    assert a.upload_id != b.upload_id
    assert a.timestamp.tzinfo is not None and a.timestamp.microsecond == 0
    assert a.timestamp_text.endswith("Z") and len(a.timestamp_text) == 20


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_tenancy_is_rejected_with_a_clear_error(value):
    with pytest.raises(InvalidIdentifierError, match="invalid tenancy"):
        RunContext("snyk_issues", value)


@pytest.mark.parametrize("value", HOSTILE + ["Upper", "1starts_with_digit", "has-dash"])
def test_hostile_tag_is_rejected_with_a_clear_error(value):
    with pytest.raises(InvalidIdentifierError, match="invalid tag"):
        RunContext(value, "acme")


def test_error_message_does_not_echo_a_300_character_value_in_full():
    with pytest.raises(InvalidIdentifierError) as info:
        RunContext("snyk_issues", "a" * 300)
    assert len(str(info.value)) < 300


@pytest.mark.parametrize("value", ["acme", "acme-prod", "acme.com", "tenant_01", "A1"])
def test_ordinary_tenancies_are_accepted(value):
    assert RunContext("snyk_issues", value).tenancy == value


# ------------------------------------------------------------------------------------- settings from the environment


def test_env_number_parses_checks_bounds_and_names_the_variable(monkeypatch):
    from secmetrics_dagster.collection.env import env_number
    from secmetrics_dagster.collection.errors import ConfigError

    monkeypatch.delenv("SECMETRICS_T_N", raising=False)
    assert env_number("SECMETRICS_T_N", 7) == 7
    monkeypatch.setenv("SECMETRICS_T_N", "  ")
    assert env_number("SECMETRICS_T_N", 7) == 7
    monkeypatch.setenv("SECMETRICS_T_N", " 42 ")
    assert env_number("SECMETRICS_T_N", 7, low=1, high=100) == 42
    monkeypatch.setenv("SECMETRICS_T_N", "2.5")
    assert env_number("SECMETRICS_T_N", 1.0, cast=float) == 2.5
    for raw, kwargs, message in (
        ("2.5", {}, "SECMETRICS_T_N must be a whole number, got '2.5'"),
        ("ten", {"low": 1, "high": 5}, "SECMETRICS_T_N must be a whole number from 1 to 5"),
        ("nan", {"cast": float}, "SECMETRICS_T_N must be a number, got 'nan'"),
        ("0", {"low": 1, "high": 5}, "SECMETRICS_T_N must be from 1 to 5, got 0"),
        ("-1", {"cast": float, "low": 0}, "SECMETRICS_T_N must be at least 0, got -1"),
    ):
        monkeypatch.setenv("SECMETRICS_T_N", raw)
        with pytest.raises(ConfigError) as caught:
            env_number("SECMETRICS_T_N", 1, **kwargs)
        assert str(caught.value).startswith(message), str(caught.value)


def test_secret_env_is_a_reference_never_the_value(monkeypatch):
    import dagster as dg

    from secmetrics_dagster.collection.env import env_flag, secret_env
    from secmetrics_dagster.collection.errors import ConfigError

    monkeypatch.setenv("SECMETRICS_T_SECRET", "hunter2")
    ref = secret_env("SECMETRICS_T_SECRET")
    assert isinstance(ref, dg.EnvVar) and ref.env_var_name == "SECMETRICS_T_SECRET" and "hunter2" not in repr(ref)
    monkeypatch.setenv("SECMETRICS_T_SECRET", "")
    assert secret_env("SECMETRICS_T_SECRET") is None
    monkeypatch.setenv("SECMETRICS_T_FLAG", "Off")
    assert env_flag("SECMETRICS_T_FLAG", True) is False
    monkeypatch.setenv("SECMETRICS_T_FLAG", "maybe")
    with pytest.raises(ConfigError, match="SECMETRICS_T_FLAG must be true or false"):
        env_flag("SECMETRICS_T_FLAG", True)


def test_a_malformed_number_in_a_source_variable_is_a_config_error_naming_it(monkeypatch):
    from secmetrics_dagster.collection.errors import ConfigError
    from secmetrics_dagster.sources.snyk import SnykResource

    monkeypatch.setenv("SNYK_PAGE_LIMIT", "lots")
    with pytest.raises(ConfigError, match="SNYK_PAGE_LIMIT must be a whole number from 10 to 100, got 'lots'"):
        SnykResource.from_env()
