"""File store: the envelope lands at STORE_FILE's expansion, renamed into place, never half-written."""

import subprocess

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


def test_on_the_spools_filesystem_the_rendered_envelope_becomes_the_file_without_a_copy(tmp_path):
    snapshot = make_snapshot(tmp_path, [{"id": i} for i in range(3)])
    rendered = render_envelope(snapshot)
    expected = rendered.read_bytes()
    target = tmp_path / "snyk_issues/acme.json"
    FileStore(str(tmp_path / "%TAG/%TENANCY.json")).write(snapshot, rendered)
    assert target.samefile(rendered)  # a hard link: the same bytes on disk, nothing copied
    rendered.unlink()  # what the fan-out does once every store is written
    assert target.read_bytes() == expected and target.stat().st_nlink == 1


def test_on_another_filesystem_the_envelope_is_copied(tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(other)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"a tmpfs cannot be mounted here ({done.stderr.strip() or done.returncode}): run as root")
    try:
        snapshot = make_snapshot(tmp_path, [{"id": i} for i in range(3)])
        rendered = render_envelope(snapshot)
        FileStore(str(other / "%TAG/%TENANCY.json")).write(snapshot, rendered)
        target = other / "snyk_issues/acme.json"
        assert target.read_bytes() == rendered.read_bytes() and not target.samefile(rendered)
        assert [p.name for p in target.parent.iterdir()] == ["acme.json"]
    finally:
        subprocess.run(["umount", "-l", str(other)], check=False)
