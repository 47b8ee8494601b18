"""A fan-out parent's records parked on disk while earlier parents are spooled: same records, same order, no file."""

import json
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


def _records(n: int) -> list[dict]:
    return [{"id": i, "name": f"naïve {i}", "lone": "\ud800" if i == 3 else "", "n": [i] * (i % 7)} for i in range(n)]


def test_lines_spilled_by_a_spools_encoder_are_copied_in_byte_for_byte_as_if_written_directly(tmp_path):
    from secmetrics_dagster.collection import RunContext, Spool

    ctx = RunContext("snyk_issues", "acme")
    direct = Spool(ctx, tmp_path / "direct")
    direct.extend(_records(500))
    expected = direct.close()

    spool = Spool(ctx, tmp_path / "spilled")
    spool.write({"id": "first"})  # the parked lines follow what the spool already holds
    spilled = SpilledRecords(iter(_records(500)), str(tmp_path), encode=spool.line_encoder())
    assert spilled.lines_of is spool and len(spilled) == 500
    assert spool.extend(spilled) == 500
    snapshot = spool.close()
    first, *rest = snapshot.spool_path.read_bytes().splitlines(keepends=True)
    assert json.loads(first)["id"] == "first"
    assert b"".join(rest) == expected.spool_path.read_bytes()  # stamped, surrogate replaced, as written directly
    assert (snapshot.records, snapshot.bytes) == (501, snapshot.spool_path.stat().st_size)
    assert snapshot.longest_line == max(expected.longest_line, len(first))
    with pytest.raises(RuntimeError, match="read once"):
        spilled.copy_to(open(os.devnull, "wb"))


def test_lines_another_spool_encoded_are_decoded_and_written_again_not_copied(tmp_path):
    from secmetrics_dagster.collection import RunContext, Spool

    other = Spool(RunContext("snyk_issues", "acme"), tmp_path / "other")
    spool = Spool(RunContext("snyk_issues", "acme"), tmp_path / "mine")
    spool.extend(SpilledRecords(iter(_records(20)), str(tmp_path), encode=other.line_encoder()))
    records = list(spool.close().iter_records())
    assert [r["id"] for r in records] == list(range(20))
    assert {r["_upload_id"] for r in records} == {spool.ctx.upload_id}  # this spool's stamps, not the other's
    other.discard()


def test_a_record_that_is_not_an_object_fails_the_spill_naming_the_dataset_and_leaves_no_file(tmp_path):
    from secmetrics_dagster.collection import CollectionError, RunContext, Spool

    spool = Spool(RunContext("snyk_issues", "acme"), tmp_path / "spool")
    with pytest.raises(CollectionError, match="snyk_issues: the API returned a list where a JSON object"):
        SpilledRecords(iter([{"id": 1}, ["not", "an", "object"]]), str(tmp_path), encode=spool.line_encoder())
    assert [p.name for p in tmp_path.iterdir()] == ["spool"]
    spool.discard()
