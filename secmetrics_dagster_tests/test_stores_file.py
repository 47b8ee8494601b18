"""File store: the envelope lands at STORE_FILE's expansion, renamed into place, never half-written."""

import pytest

from secmetrics_dagster.stores import FileStore, UploadRef
from secmetrics_dagster.stores.envelope import render_envelope

from .helpers import envelope, make_snapshot


def test_envelope_is_written_at_the_expanded_path(tmp_path):
    snapshot = make_snapshot(tmp_path, [{"id": 1}, {"id": 2}])
    store = FileStore(str(tmp_path / "data/source/%TAG/%TENANCY.json"))
    result = store.write(snapshot, render_envelope(snapshot))
    target = tmp_path / "data/source/snyk_issues/acme.json"
    assert result.location == str(target) and result.records == 2
    assert envelope(target)["metadata"]["upload_id"] == snapshot.upload_id
    assert [p.name for p in target.parent.iterdir()] == ["acme.json"]  # no temporary file left behind


def test_a_failed_write_leaves_the_previous_file_whole(tmp_path):
    store = FileStore(str(tmp_path / "%TAG/%TENANCY.json"))
    first = make_snapshot(tmp_path, [{"id": 1}])
    store.write(first, render_envelope(first))
    second = make_snapshot(tmp_path, [{"id": 2}])
    with pytest.raises(FileNotFoundError):
        store.write(second, tmp_path / "missing-envelope.json")
    target = tmp_path / "snyk_issues/acme.json"
    assert envelope(target)["metadata"]["upload_id"] == first.upload_id
    assert [p.name for p in target.parent.iterdir()] == ["acme.json"]


def test_records_stream_back_from_the_file(tmp_path):
    snapshot = make_snapshot(tmp_path, [{"id": i} for i in range(5)])
    store = FileStore(str(tmp_path / "%TAG.json"))
    result = store.write(snapshot, render_envelope(snapshot))
    ref = UploadRef("snyk_issues", "acme", snapshot.upload_id, {"file": result.location})
    assert [r["id"] for r in store.read(ref)] == [0, 1, 2, 3, 4]
