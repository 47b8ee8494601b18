"""The spool: one NDJSON file per materialization, written as records arrive, and the Snapshot it becomes."""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

from .context import RunContext, format_timestamp
from .errors import CollectionError, IncompleteCollectionError

STAMP_FIELDS = ("_tenancy", "_upload_timestamp", "_upload_id")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # json.loads pairs the valid ones, so any left are alone


def default_spool_dir() -> Path:
    return Path(os.environ.get("COLLECTION_SPOOL_DIR") or Path(tempfile.gettempdir()) / "secmetrics-spool")


@dataclass
class Snapshot:
    """What an asset returns: one upload of one tag for one tenancy, its records waiting in a spool file."""

    tag: str
    tenancy: str
    upload_id: str
    timestamp: datetime
    records: int
    spool_path: Path
    bytes: int
    source: str = "api"  # "api" or "backup"
    expected_total: Optional[int] = None
    longest_line: int = 0  # bytes of the longest NDJSON line, newline included (sizes the DuckDB reader's buffer)
    backup_location: Optional[str] = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def context(self) -> RunContext:
        return RunContext(self.tag, self.tenancy, self.upload_id, self.timestamp)

    @property
    def timestamp_text(self) -> str:
        return format_timestamp(self.timestamp)

    def envelope_metadata(self) -> dict[str, Any]:
        """The seed's envelope metadata, exactly these keys in this order."""
        return {
            "tenancy": self.tenancy,
            "upload_id": self.upload_id,
            "timestamp": self.timestamp_text,
            "tag": self.tag,
            "records": self.records,
        }

    def iter_lines(self) -> Iterator[str]:
        """Each record as one compact JSON line, without the newline."""
        with open(self.spool_path, encoding="utf-8") as handle:
            for line in handle:
                yield line.rstrip("\n")

    def iter_records(self) -> Iterator[dict]:
        for line in self.iter_lines():
            yield json.loads(line)

    def discard(self) -> None:
        try:
            self.spool_path.unlink()
        except FileNotFoundError:
            pass


class Spool:
    """Writes records to disk as they arrive, stamps them, counts them and checks the API's reported total."""

    def __init__(self, ctx: RunContext, directory: Optional[Path] = None, *, stamp: bool = True):
        self.ctx = ctx
        self.directory = Path(directory) if directory else default_spool_dir()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / f"{ctx.tag}.{ctx.tenancy}.{ctx.upload_id}.ndjson"
        self.count = 0
        self.bytes = 0
        self.longest_line = 0
        self.expected_total: Optional[int] = None
        self._stamp = stamp
        self._stamps = {
            "_tenancy": ctx.tenancy,
            "_upload_timestamp": ctx.timestamp_text,
            "_upload_id": ctx.upload_id,
        }
        self._handle = open(self.path, "wb")
        self._dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.discard()

    def write(self, record: Any) -> None:
        if not isinstance(record, dict):
            raise CollectionError(
                f"{self.ctx.tag}: the API returned a {type(record).__name__} where a JSON object was expected"
            )
        if self._stamp:
            record.update(self._stamps)
        text = self._dumps(record) + "\n"
        try:
            line = text.encode("utf-8")
        except UnicodeEncodeError:
            # A lone surrogate ("\\ud800" in the vendor's JSON: valid JSON, not encodable Unicode) becomes U+FFFD,
            # as no store could hold it; the rest of the record is kept as it came.
            line = _LONE_SURROGATE.sub("\ufffd", text).encode("utf-8")
        self._handle.write(line)
        self.count += 1
        self.bytes += len(line)
        if len(line) > self.longest_line:
            self.longest_line = len(line)

    def extend(self, records: Iterable[Any]) -> int:
        before = self.count
        for record in records:
            self.write(record)
        return self.count - before

    def expect(self, total: int) -> None:
        """Add to the number of records the API says exist (sources with several collections add each)."""
        self.expected_total = (self.expected_total or 0) + int(total)

    def close(self, **metadata: Any) -> Snapshot:
        self._handle.close()
        if self.expected_total is not None and self.expected_total != self.count:
            self.discard()
            raise IncompleteCollectionError(
                f"{self.ctx.tag}: the API reported {self.expected_total} records but {self.count} arrived; "
                "this incomplete pull was not stored, the previous data stays in place. Run it again; "
                "if it keeps happening the vendor's pagination is inconsistent."
            )
        return Snapshot(
            tag=self.ctx.tag,
            tenancy=self.ctx.tenancy,
            upload_id=self.ctx.upload_id,
            timestamp=self.ctx.timestamp,
            records=self.count,
            spool_path=self.path,
            bytes=self.bytes,
            expected_total=self.expected_total,
            longest_line=self.longest_line,
            metadata=dict(metadata),
        )

    def discard(self) -> None:
        if not self._handle.closed:
            self._handle.close()
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
