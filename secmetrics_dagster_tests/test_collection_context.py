"""Path templating and identifier validation: the seed's path variables, and hostile values refused."""

from datetime import datetime, timezone

import pytest

from secmetrics_dagster.collection import InvalidIdentifierError, RunContext, expand_path

HOSTILE = ["../../etc", "x; DROP TABLE y", "", "a" * 300, "a/b", "a\\b", ".hidden", "tab\tname", "ünïcode", "a..b"]
WHEN = datetime(2024, 7, 5, 4, 3, 2, tzinfo=timezone.utc)
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
