"""A fan-out parent's records parked on disk while earlier parents are spooled: same records, same order, no file."""

import os

import pytest

from secmetrics_dagster.collection.spill import SpilledRecords


def test_spilled_records_come_back_once_in_order_and_leave_no_file(tmp_path):
    records = [{"id": i, "name": f"naïve {i}", "nested": {"n": [i, None, True]}} for i in range(1000)]
    spilled = SpilledRecords(iter(records), str(tmp_path))
    assert len(spilled) == 1000
    assert os.listdir(tmp_path) == []  # anonymous: nothing a crash could leave behind
    assert list(spilled) == records
    with pytest.raises(RuntimeError, match="read once"):
        list(spilled)


def test_a_fetch_that_fails_midway_closes_its_file_and_raises(tmp_path):
    def pages():
        yield {"id": 1}
        raise ConnectionError("the vendor went away")

    with pytest.raises(ConnectionError, match="went away"):
        SpilledRecords(pages(), str(tmp_path))
    assert os.listdir(tmp_path) == []
