"""The spool on a full disk and after kill -9: a write error names the file and COLLECTION_SPOOL_DIR, discarding
never raises, a backup is still served, and files of processes that no longer exist are removed at the next
spool while a running process's files are never touched.

The full disk is a real 64 KiB tmpfs mounted for the test (root only; skipped with the reason otherwise), filled
to the last block. The dead process is a real child killed with SIGKILL.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import dagster as dg
import pytest

from secmetrics_dagster.collection import CollectionError, RunContext, Spool
from secmetrics_dagster.sources import snyk as snyk_source
from secmetrics_dagster.stores import S3Store, SnapshotIOManager, StoresResource
from secmetrics_dagster.stores.backup import FALLBACK_DIR_NAME, load_backup
from secmetrics_dagster.stores.envelope import render_envelope

from .harness import source_assets
from .helpers import failure_text, make_snapshot, materialization_metadata, replace

PAD = "x" * 1000


def _mount_tmpfs(path: Path) -> None:
    path.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k,mode=0777", "tmpfs", str(path)], capture_output=True, text=True
    )
    if done.returncode != 0:
        path.rmdir()
        pytest.skip(f"a 64 KiB tmpfs cannot be mounted here ({done.stderr.strip() or done.returncode}): run as root")


def _fill(directory: Path) -> None:
    """Write a filler file until the filesystem refuses another byte."""
    with open(directory / "filler", "wb", buffering=0) as handle:
        while True:
            try:
                handle.write(b"\0" * 4096)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                break
        while True:
            try:
                handle.write(b"\0")
            except OSError:
                return


@pytest.fixture
def full_disk(tmp_path):
    mount = tmp_path / "tiny"
    _mount_tmpfs(mount)
    try:
        _fill(mount)
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _ours(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name != "filler")


# ---------------------------------------------------------------------------------------------- #6 disk full


def test_a_full_spool_disk_fails_the_write_naming_the_file_and_COLLECTION_SPOOL_DIR(full_disk):
    spool = Spool(RunContext("snyk_issues", "acme"), full_disk)
    with pytest.raises(CollectionError) as info:
        spool.extend({"id": i, "pad": PAD} for i in range(100))
        spool.close()
    message = str(info.value)
    assert str(spool.path) in message and "COLLECTION_SPOOL_DIR" in message
    assert "is full" in message and "No space left on device" in message and "free space there" in message
    assert _ours(full_disk) == []  # the partial file is gone, its room free for the fallback


def test_discarding_a_spool_on_a_full_disk_does_not_raise_and_removes_the_file(full_disk):
    spool = Spool(RunContext("snyk_issues", "acme"), full_disk)
    spool.write({"id": 1, "pad": PAD})  # still in the write buffer: the flush at close is what fails
    spool.discard()
    assert _ours(full_disk) == []


def test_discarding_a_snapshot_never_raises_even_when_the_file_cannot_be_removed(tmp_path):
    mount = tmp_path / "ro"
    _mount_tmpfs(mount)
    try:
        snapshot = make_snapshot(mount, [{"id": 1}])
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        snapshot.discard()  # EROFS: logged, not raised (it runs while another error is being handled)
        assert snapshot.spool_path.exists()
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_an_envelope_that_does_not_fit_is_removed_and_the_error_names_COLLECTION_SPOOL_DIR(tmp_path):
    mount = tmp_path / "tiny"
    _mount_tmpfs(mount)
    try:
        snapshot = make_snapshot(mount, [{"id": i, "pad": PAD} for i in range(20)])  # ~20 KiB of 64
        _fill(mount / "spool")
        with pytest.raises(CollectionError, match="COLLECTION_SPOOL_DIR") as info:
            render_envelope(snapshot)
        assert ".envelope.json" in str(info.value)
        assert sorted(p.name for p in (mount / "spool").iterdir()) == sorted(["filler", snapshot.spool_path.name])
        snapshot.discard()
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_an_envelope_that_does_not_fit_fails_the_stores_that_ship_it_and_the_databases_are_still_loaded(tmp_path):
    from secmetrics_dagster.stores import DuckDBStore, FileStore
    from secmetrics_dagster.stores.io_manager import fan_out

    mount = tmp_path / "tiny"
    _mount_tmpfs(mount)
    try:
        snapshot = make_snapshot(mount, [{"id": i, "pad": PAD} for i in range(20)])
        _fill(mount / "spool")
        duck = DuckDBStore(str(tmp_path / "warehouse.duckdb"))
        outcome = fan_out(snapshot, [FileStore(str(tmp_path / "data/%TAG.json")), duck])
        assert [r.store for r in outcome.results] == ["duckdb"] and outcome.results[0].records == 20
        assert list(outcome.failures) == ["file"] and "COLLECTION_SPOOL_DIR" in outcome.failures["file"]
        assert not (tmp_path / "data").exists()
        assert sorted(p.name for p in (mount / "spool").iterdir()) == sorted(["filler", snapshot.spool_path.name])
        snapshot.discard()
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture
def backup_stores(tmp_path, bucket, s3_endpoint) -> StoresResource:
    return StoresResource(
        file_template=str(tmp_path / "data/source/%TAG/%TENANCY.json"),
        s3_bucket=bucket,
        s3_backup="backup/%TAG/%TENANCY.json",
        s3_endpoint_url=s3_endpoint,
    )


def test_a_backup_is_served_when_the_spool_disk_is_full(full_disk, backup_stores, tmp_path):
    good = make_snapshot(tmp_path, [{"id": i, "pad": PAD} for i in range(200)])
    S3Store(backup_stores.s3_bucket, None, backup_stores.s3_backup, endpoint_url=backup_stores.s3_endpoint_url).write(
        good, render_envelope(good)
    )
    snapshot = load_backup(backup_stores, "snyk_issues", "acme", full_disk)
    try:
        assert snapshot.source == "backup" and snapshot.records == 200 and snapshot.upload_id == good.upload_id
        assert snapshot.spool_path.parent == Path(tempfile.gettempdir()) / FALLBACK_DIR_NAME
        assert [r["id"] for r in snapshot.iter_records()] == list(range(200))
        assert _ours(full_disk) == []
    finally:
        snapshot.discard()
    assert not snapshot.spool_path.exists()


def test_a_pull_on_a_full_spool_disk_falls_back_to_the_backup_and_leaves_no_file(
    snyk, collection, all_stores, full_disk
):
    def run(collection_resource):
        return dg.materialize(
            source_assets(snyk_source.SOURCE),
            selection="key:snyk_organizations",
            instance=dg.DagsterInstance.ephemeral(),
            raise_on_error=False,
            resources={
                "collection": collection_resource,
                "stores": all_stores,
                "snyk": snyk,
                "snapshot_io_manager": SnapshotIOManager(stores=all_stores),
            },
        )

    first = run(collection)
    assert first.success, failure_text(first)
    second = run(replace(collection, spool_dir=str(full_disk)))
    assert second.success, failure_text(second)
    md = materialization_metadata(second, "snyk_organizations")
    assert md["source"] == "backup" and md["records"] == 2
    assert "COLLECTION_SPOOL_DIR" in md["fallback_reason"] and str(full_disk) in md["fallback_reason"]
    assert _ours(full_disk) == []
    fallback = Path(tempfile.gettempdir()) / FALLBACK_DIR_NAME
    assert not [p for p in fallback.glob("snyk_organizations.acme.*")]


# ---------------------------------------------------------------------------------------------- #7 kill -9

_HOLDER = """
import json, sys
from pathlib import Path
from secmetrics_dagster.collection import RunContext, Spool
from secmetrics_dagster.stores.envelope import render_envelope

directory = Path(sys.argv[1])
writing = Spool(RunContext("snyk_issues", "acme"), directory)  # a pull in progress
writing.extend({"id": i} for i in range(100))
done = Spool(RunContext("snyk_projects", "acme"), directory)  # a snapshot being fanned out
done.extend({"id": i} for i in range(10))
snapshot = done.close()
envelope = render_envelope(snapshot)
print(json.dumps([str(writing.path), str(snapshot.spool_path), str(envelope)]), flush=True)
sys.stdin.read()  # hold the files until the test closes stdin (or kills this process)
"""


@pytest.fixture
def holder(tmp_path):
    """Start a process that holds spool files in a directory; yields (process, its file paths)."""
    started = []

    def start(directory: Path):
        proc = subprocess.Popen(
            [sys.executable, "-c", _HOLDER, str(directory)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        started.append(proc)
        line = proc.stdout.readline()  # blocks until the files exist
        assert line, f"the holder process failed (exit {proc.wait()})"
        return proc, [Path(p) for p in json.loads(line)]

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()
        proc.stdin.close()


def _kill_9(proc) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL


def test_spool_files_of_a_process_killed_with_sigkill_are_removed_when_the_next_spool_starts(tmp_path, holder):
    directory = tmp_path / "spool"
    proc, files = holder(directory)
    _kill_9(proc)
    assert all(f.exists() for f in files)  # nothing cleans up after kill -9 by itself
    Spool(RunContext("okta_users", "acme"), directory).discard()
    assert [f.name for f in files if f.exists()] == []
    assert list(directory.iterdir()) == []


def test_spool_files_of_a_running_process_are_never_touched(tmp_path, holder):
    directory = tmp_path / "spool"
    proc, files = holder(directory)
    sizes = {f: f.stat().st_size for f in files}
    spool = Spool(RunContext("okta_users", "acme"), directory)
    spool.discard()
    assert {f: f.stat().st_size for f in files} == sizes
    _kill_9(proc)  # once it is gone, its files are fair game
    Spool(RunContext("okta_users", "acme"), directory).discard()
    assert not any(f.exists() for f in files)


def test_only_spool_files_are_ever_removed(tmp_path, holder):
    directory = tmp_path / "spool"
    proc, _files = holder(directory)
    _kill_9(proc)
    foreign = [directory / "notes.ndjson", directory / "snyk_issues.acme.json", directory / "readme.envelope.json"]
    for path in foreign:
        path.write_text("{}")
    (directory / "tenable-exports").mkdir()
    (directory / "tenable-exports" / "tenable_assets.acme.json").write_text("{}")
    Spool(RunContext("okta_users", "acme"), directory).discard()
    assert sorted(p.name for p in directory.iterdir()) == sorted([*(p.name for p in foreign), "tenable-exports"])
    assert (directory / "tenable-exports" / "tenable_assets.acme.json").exists()
