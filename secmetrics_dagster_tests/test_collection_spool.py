"""The spool: stamped NDJSON written as records arrive, and the reported-total check."""

import json

import pytest

from secmetrics_dagster.collection import CollectionError, IncompleteCollectionError, RunContext, Spool


def test_records_are_stamped_with_tenancy_upload_time_and_id(tmp_path):
    ctx = RunContext("snyk_issues", "acme")
    spool = Spool(ctx, tmp_path)
    spool.extend([{"id": 1}, {"id": 2}])
    snapshot = spool.close()
    records = list(snapshot.iter_records())
    assert snapshot.records == 2 and len(records) == 2
    for record in records:
        assert record["_tenancy"] == "acme"
        assert record["_upload_id"] == ctx.upload_id
        assert record["_upload_timestamp"] == ctx.timestamp_text


def test_spool_is_ndjson_on_disk_one_record_per_line(tmp_path):
    spool = Spool(RunContext("snyk_issues", "acme"), tmp_path)
    spool.write({"text": "line\nbreak", "tab": "\t"})
    snapshot = spool.close()
    lines = snapshot.spool_path.read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["text"] == "line\nbreak"
    assert snapshot.bytes == snapshot.spool_path.stat().st_size


def test_bytes_and_the_longest_line_are_counted_in_utf8_bytes(tmp_path):
    spool = Spool(RunContext("snyk_issues", "acme"), tmp_path)
    spool.write({"name": "日本語😀" * 100})
    spool.write({"name": "a"})
    snapshot = spool.close()
    lines = snapshot.spool_path.read_bytes().splitlines(keepends=True)
    assert snapshot.bytes == snapshot.spool_path.stat().st_size == sum(map(len, lines))
    assert snapshot.longest_line == max(map(len, lines)) > len(lines[0].decode())


def test_count_differing_from_the_reported_total_fails_and_discards_the_spool(tmp_path):
    spool = Spool(RunContext("snyk_projects", "acme"), tmp_path)
    spool.expect(3)
    spool.extend([{"id": 1}, {"id": 2}])
    with pytest.raises(IncompleteCollectionError, match="reported 3 records but 2 arrived"):
        spool.close()
    assert not spool.path.exists()


def test_totals_from_several_collections_add_up(tmp_path):
    spool = Spool(RunContext("snyk_projects", "acme"), tmp_path)
    spool.expect(1)
    spool.expect(2)
    spool.extend([{"id": i} for i in range(3)])
    assert spool.close().expected_total == 3


def test_a_non_object_record_is_refused_by_name(tmp_path):
    spool = Spool(RunContext("snyk_issues", "acme"), tmp_path)
    with pytest.raises(CollectionError, match="returned a str where a JSON object was expected"):
        spool.write("nope")


def test_a_lone_surrogate_from_the_vendor_becomes_a_replacement_character_and_the_record_is_kept(tmp_path):
    record = json.loads('{"name": "a\\ud800b", "emoji": "\\ud83d\\ude00", "id": 1}')  # valid JSON, invalid Unicode
    spool = Spool(RunContext("snyk_issues", "acme"), tmp_path)
    spool.write(record)
    spool.write({"id": 2})
    snapshot = spool.close()
    first = json.loads(snapshot.spool_path.read_bytes().decode("utf-8").splitlines()[0])
    assert (first["name"], first["emoji"], first["id"]) == ("a\ufffdb", "\U0001f600", 1) and snapshot.records == 2
    assert snapshot.bytes == snapshot.spool_path.stat().st_size


def _records(n: int) -> list[dict]:
    return [
        {"id": i, "name": f"ünï {i}", "score": i / 3, "tags": ["a", None, True], "pad": "x" * 500} for i in range(n)
    ]


def test_a_batch_written_with_extend_is_the_same_bytes_as_each_record_written_alone(tmp_path):
    ctx = RunContext("snyk_issues", "acme")
    batched, single = Spool(ctx, tmp_path / "batched"), Spool(ctx, tmp_path / "single")
    assert batched.extend(_records(2000)) == 2000  # ~1.1 MB: several write calls
    for record in _records(2000):
        single.write(record)
    a, b = batched.close(), single.close()
    assert a.spool_path.read_bytes() == b.spool_path.read_bytes()
    expected = b"".join(
        (
            json.dumps(
                r
                | dict(
                    zip(("_tenancy", "_upload_timestamp", "_upload_id"), ("acme", ctx.timestamp_text, ctx.upload_id))
                ),
                ensure_ascii=False,
                separators=(",", ":"),
            )
            + "\n"
        ).encode()
        for r in _records(2000)
    )
    assert a.spool_path.read_bytes() == expected
    assert (
        (a.records, a.bytes, a.longest_line)
        == (b.records, b.bytes, b.longest_line)
        == (2000, len(expected), max(map(len, expected.splitlines(keepends=True))))
    )


def test_records_before_a_refused_one_in_a_batch_are_written_and_counted(tmp_path):
    spool = Spool(RunContext("snyk_issues", "acme"), tmp_path)
    with pytest.raises(CollectionError, match="returned a list where a JSON object was expected"):
        spool.extend([{"id": 1}, {"id": 2}, ["not", "an", "object"], {"id": 3}])
    with pytest.raises(TypeError, match="not JSON serializable"):
        spool.extend([{"id": 4}, {"id": 5, "when": object()}])
    spool.write({"id": 6})  # a failed encoding leaves nothing behind in the encoder
    snapshot = spool.close()
    assert [r["id"] for r in snapshot.iter_records()] == [1, 2, 4, 6] and snapshot.records == 4


def test_a_record_refused_as_circular_is_written_once_the_loop_is_gone(tmp_path):
    spool = Spool(RunContext("snyk_issues", "acme"), tmp_path)
    looped: dict = {"id": 1}
    looped["self"] = looped
    with pytest.raises(ValueError, match="Circular reference"):
        spool.write(looped)
    del looped["self"]
    spool.write(looped)  # the failed encoding's marks were dropped with it
    shared = {"k": 1}
    spool.write({"id": 2, "a": shared, "b": shared})  # the same object twice is not a cycle
    assert [r["id"] for r in spool.close().iter_records()] == [1, 2]
