"""Fallback: turn the last S3 backup of a tag and tenancy into a Snapshot labelled source=backup.

Reading a backup needs no disk space beyond the spool file the Snapshot is: the object is streamed from S3
straight into the spool (no downloaded copy). When the spool directory has no room for it (a full
COLLECTION_SPOOL_DIR is often why the pull failed), the backup is spooled in the system temporary directory
instead, provided that is another filesystem, so the fallback still serves the last good data.
"""

from __future__ import annotations

import logging
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Optional

from ..collection.context import RunContext, parse_timestamp
from ..collection.errors import CollectionError
from ..collection.spool import Snapshot, Spool, SpoolWriteError
from .io_manager import StoresResource
from .s3 import StreamedBackup

log = logging.getLogger(__name__)

FALLBACK_DIR_NAME = "secmetrics-spool-backup"


def fallback_spool_dir(spool_dir: Path) -> Optional[Path]:
    """A directory on another filesystem than `spool_dir` to spool a backup in, or None when there is none."""
    candidate = Path(tempfile.gettempdir()) / FALLBACK_DIR_NAME

    def device(path: Path) -> Optional[int]:
        for parent in (path, *path.parents):
            try:
                return os.stat(parent).st_dev
            except OSError:
                continue
        return None

    if device(candidate) == device(Path(spool_dir)):
        return None
    return candidate


def load_backup(
    stores: StoresResource, tag: str, tenancy: str, spool_dir: Path, *, logger: Any = None
) -> Optional[Snapshot]:
    """The backup as a Snapshot with its original upload id and collection time; None if there is no backup."""
    s3 = stores.s3_store()
    if s3 is None:
        return None
    backup = s3.open_backup(tag, tenancy)
    if backup is None:
        return None
    md = backup.metadata
    if md.get("tag") not in (None, tag) or md.get("tenancy") not in (None, tenancy):
        raise CollectionError(
            f"backup {backup.uri} belongs to tag {md.get('tag')!r}, tenancy {md.get('tenancy')!r}, not {tag!r}/{tenancy!r}"
        )
    try:
        ctx = RunContext(tag, tenancy, str(md["upload_id"]), parse_timestamp(str(md["timestamp"])))
    except (KeyError, ValueError) as exc:
        raise CollectionError(f"backup {backup.uri} has unusable metadata ({exc})") from None
    try:
        snapshot = _spool_backup(backup, ctx, Path(spool_dir))
    except SpoolWriteError as exc:
        if not exc.no_room:
            raise
        elsewhere = fallback_spool_dir(Path(spool_dir))
        if elsewhere is None:
            raise CollectionError(
                f"{exc} The backup {backup.uri} could not be spooled either, and the system temporary directory "
                f"{tempfile.gettempdir()} is on the same filesystem."
            ) from None
        (logger or log).warning(
            f"{tag}: the spool directory {spool_dir} (COLLECTION_SPOOL_DIR) is full; spooling the backup in "
            f"{elsewhere} instead. Free space in COLLECTION_SPOOL_DIR."
        )
        snapshot = _spool_backup(backup, ctx, elsewhere)
    snapshot.source = "backup"
    snapshot.backup_location = backup.uri
    return snapshot


def _spool_backup(backup: StreamedBackup, ctx: RunContext, directory: Path) -> Snapshot:
    md = backup.metadata
    # Records keep the stamps of the collection that produced them.
    with Spool(ctx, directory, stamp=False) as spool:
        spool.extend(backup.records())
        if isinstance(md.get("records"), (int, float)):
            spool.expect(int(md["records"]))
        return spool.close()


def backup_age_hours(snapshot: Snapshot, now: Optional[datetime] = None) -> float:
    now = now or datetime.now(UTC)
    return round((now - snapshot.timestamp).total_seconds() / 3600, 2)
