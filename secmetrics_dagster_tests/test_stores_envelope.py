"""The seed's envelope, exactly: data, then metadata with tenancy, upload_id, timestamp, tag, records."""

import io
import json

from secmetrics_dagster.collection import RunContext, Spool
from secmetrics_dagster.stores.envelope import iter_envelope_records, read_envelope_metadata, write_envelope


def _snapshot(tmp_path, records):
    spool = Spool(RunContext("crowdstrike_hosts", "company"), tmp_path)
    spool.extend(records)
    return spool.close()


def test_envelope_has_exactly_the_seed_keys_in_the_seed_order(tmp_path):
    snapshot = _snapshot(tmp_path, [{"id": "a"}, {"id": "b"}])
    buffer = io.BytesIO()
    write_envelope(snapshot, buffer)
    doc = json.loads(buffer.getvalue())
    assert list(doc) == ["data", "metadata"]
    assert list(doc["metadata"]) == ["tenancy", "upload_id", "timestamp", "tag", "records"]
    assert doc["metadata"] == {
        "tenancy": "company",
        "upload_id": snapshot.upload_id,
        "timestamp": snapshot.timestamp_text,
        "tag": "crowdstrike_hosts",
        "records": 2,
    }
    assert [r["id"] for r in doc["data"]] == ["a", "b"]


def test_an_empty_collection_is_still_a_valid_envelope(tmp_path):
    snapshot = _snapshot(tmp_path, [])
    buffer = io.BytesIO()
    write_envelope(snapshot, buffer)
    doc = json.loads(buffer.getvalue())
    assert doc["data"] == [] and doc["metadata"]["records"] == 0


def test_envelopes_stream_back_including_the_original_collectors_single_line_files():
    original = json.dumps({"data": [{"a": 1.5}, {"b": [1, 2]}], "metadata": {"tag": "okta", "records": 2}}).encode()
    assert list(iter_envelope_records(io.BytesIO(original))) == [{"a": 1.5}, {"b": [1, 2]}]
    assert read_envelope_metadata(io.BytesIO(original)) == {"tag": "okta", "records": 2}
