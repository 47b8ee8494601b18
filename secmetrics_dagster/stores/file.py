"""File store: the envelope at STORE_FILE, renamed into place so readers never see half a file."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

from ..collection.context import expand_path
from ..collection.errors import ConfigError
from ..collection.spool import Snapshot
from .base import Store, StoreError, StoreResult, Timer, UploadRef, check_text
from .envelope import iter_envelope_records, scan_envelope


class FileStore(Store):
    name = "file"

    def __init__(self, template: str):
        check_text("STORE_FILE", template, what="a file path template such as data/source/%TAG/%TENANCY.json")
        if "%TAG" not in template:
            raise ConfigError(
                f"STORE_FILE={template!r} does not use %TAG: every asset would overwrite the same file. "
                "Use a template such as data/source/%TAG/%TENANCY.json"
            )
        self.template = template

    def describe(self) -> str:
        return f"files at {self.template}"

    @property
    def needs_envelope(self) -> bool:
        return True

    def path_for(self, snapshot: Snapshot) -> Path:
        return Path(expand_path(self.template, snapshot.context))

    def write(self, snapshot: Snapshot, envelope: Optional[Path]) -> StoreResult:
        assert envelope is not None
        target = self.path_for(snapshot)
        with Timer() as timer:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.{snapshot.upload_id}.tmp")
            try:
                try:
                    # On the spool's filesystem the rendered envelope (already on disk) becomes the file: no copy.
                    os.link(envelope, tmp)
                except OSError:  # another filesystem (EXDEV), or one without hard links: copied
                    shutil.copyfile(envelope, tmp)
                    with open(tmp, "rb") as handle:
                        os.fsync(handle.fileno())
                os.replace(tmp, target)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
        return StoreResult(self.name, str(target), snapshot.records, target.stat().st_size, timer.seconds)

    def _location(self, ref: UploadRef) -> Path:
        location = ref.locations.get(self.name)
        if not location or not Path(location).exists():
            raise StoreError(f"file store: {location or 'no file'} for upload {ref.upload_id} is not there")
        return Path(location)

    def read(self, ref: UploadRef) -> Iterator[dict]:
        with open(self._location(ref), "rb") as handle:
            yield from iter_envelope_records(handle)

    def count(self, ref: UploadRef) -> int:
        location = self._location(ref)
        try:
            with open(location, "rb") as handle:
                records, metadata = scan_envelope(handle)
        except (OSError, ValueError) as exc:
            raise StoreError(f"file store: {location} cannot be read back: {exc}") from None
        upload = str(metadata.get("upload_id"))
        if upload != ref.upload_id:
            # The path holds one upload per tag and tenancy: a later collection replaced this one.
            raise StoreError(f"file store: {location} now holds upload {upload}, not {ref.upload_id}")
        return records
