"""File store: the envelope at STORE_FILE, renamed into place so readers never see half a file."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

from ..collection.context import expand_path
from ..collection.spool import Snapshot
from .base import Store, StoreError, StoreResult, Timer, UploadRef
from .envelope import iter_envelope_records


class FileStore(Store):
    name = "file"

    def __init__(self, template: str):
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
                shutil.copyfile(envelope, tmp)
                with open(tmp, "rb") as handle:
                    os.fsync(handle.fileno())
                os.replace(tmp, target)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
        return StoreResult(self.name, str(target), snapshot.records, target.stat().st_size, timer.seconds)

    def read(self, ref: UploadRef) -> Iterator[dict]:
        location = ref.locations.get(self.name)
        if not location or not Path(location).exists():
            raise StoreError(f"file store: {location or 'no file'} for upload {ref.upload_id} is not there")
        with open(location, "rb") as handle:
            yield from iter_envelope_records(handle)
