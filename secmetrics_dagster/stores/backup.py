"""Fallback: turn the last S3 backup of a tag and tenancy into a Snapshot labelled source=backup."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Optional

from ..collection.context import RunContext, parse_timestamp
from ..collection.errors import CollectionError
from ..collection.spool import Snapshot, Spool
from .envelope import iter_envelope_records
from .io_manager import StoresResource


def load_backup(stores: StoresResource, tag: str, tenancy: str, spool_dir: Path) -> Optional[Snapshot]:
    """The backup as a Snapshot with its original upload id and collection time; None if there is no backup."""
    s3 = stores.s3_store()
    if s3 is None:
        return None
    with tempfile.TemporaryDirectory(prefix="secmetrics-backup-") as tmp:
        backup = s3.fetch_backup(tag, tenancy, Path(tmp))
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
        # Records keep the stamps of the collection that produced them.
        with Spool(ctx, spool_dir, stamp=False) as spool:
            with open(backup.path, "rb") as handle:
                spool.extend(iter_envelope_records(handle))
            if isinstance(md.get("records"), (int, float)):
                spool.expect(int(md["records"]))
            snapshot = spool.close()
    snapshot.source = "backup"
    snapshot.backup_location = backup.uri
    return snapshot


def backup_age_hours(snapshot: Snapshot, now: Optional[datetime] = None) -> float:
    now = now or datetime.now(UTC)
    return round((now - snapshot.timestamp).total_seconds() / 3600, 2)
