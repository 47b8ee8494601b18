"""Every vendor's sandbox volume refuses a bad size or clock when it is built (sandbox.records.check_volume), naming
the field: a typo in a benchmark's or a test's volume fails there, not as a strange page much later."""

import dataclasses

import pytest

from secmetrics_dagster.sandbox.server import registered_vendors

VENDORS = registered_vendors()


def _int_fields(volume_type):
    return [f.name for f in dataclasses.fields(volume_type) if f.type in ("int", int)]


def test_every_vendor_has_a_volume_with_sizes():
    assert len(VENDORS) == 8
    for vendor in VENDORS.values():
        assert _int_fields(vendor.volume_type), vendor.name
        vendor.volume_type()  # the defaults are valid


@pytest.mark.parametrize("vendor", sorted(VENDORS))
@pytest.mark.parametrize("bad", [True, -1, 1.5, "10"])
def test_every_size_field_refuses_a_bool_a_negative_a_float_and_a_string(vendor, bad):
    volume_type = VENDORS[vendor].volume_type
    for name in _int_fields(volume_type):
        with pytest.raises(ValueError, match=rf"^{volume_type.__name__}\.{name} must be an int .*got {bad!r}$"):
            volume_type(**{name: bad})


CLOCKED = sorted(v for v in VENDORS if "now" in {f.name for f in dataclasses.fields(VENDORS[v].volume_type)})


def test_every_vendor_but_aws_has_a_clock():
    # The AWS sandbox dates what it seeds into moto from the wall clock: its volume has no clock field.
    assert set(VENDORS) - set(CLOCKED) == {"aws"}


@pytest.mark.parametrize("vendor", CLOCKED)
def test_the_clock_is_epoch_seconds_or_none(vendor):
    volume_type = VENDORS[vendor].volume_type
    assert volume_type(now=1_700_000_000).now == 1_700_000_000
    with pytest.raises(ValueError, match=rf"^{volume_type.__name__}\.now must be epoch seconds or None, got 'today'"):
        volume_type(now="today")
    with pytest.raises(ValueError, match="now must be epoch seconds"):
        volume_type(now=True)


@pytest.mark.parametrize(
    "vendor, field, value, message",
    [
        ("okta", "rate_window", 0, "OktaVolume.rate_window must be an int of at least 1, got 0"),
        ("okta", "rate_limit", 0, "OktaVolume.rate_limit must be an int of at least 1, got 0"),
        ("snyk", "rate_window", 0, "SnykVolume.rate_window must be an int of at least 1, got 0"),
        ("microsoft365", "page_size", 0, "Microsoft365Volume.page_size must be an int of at least 1, got 0"),
        ("crowdstrike", "token_ttl", 0, "CrowdStrikeVolume.token_ttl must be an int of at least 1, got 0"),
        (
            "aws",
            "buckets",
            501,
            "AwsVolume.buckets must be an int from 0 to 500 (moto holds it all in memory), got 501",
        ),
        ("domains", "count", 10_001, "DomainsVolume.count must be an int from 0 to 10000, got 10001"),
    ],
)
def test_a_vendors_own_bounds_are_named_in_the_error(vendor, field, value, message):
    with pytest.raises(ValueError) as caught:
        VENDORS[vendor].volume_type(**{field: value})
    assert str(caught.value) == message
    VENDORS[vendor].volume_type(**{field: value - 1 if value > 1 else 1})  # the bound itself is allowed
