"""The spool: one NDJSON file per materialization, written as records arrive, and the Snapshot it becomes.

A spool file is locked (flock) by the process that writes it for as long as the file is in use, through the
Snapshot to its discard. A process killed with SIGKILL cannot discard, but the kernel drops its locks: every
new Spool removes the files in its directory whose lock nobody holds, and never a file a live process holds.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

from .context import RunContext, format_timestamp
from .errors import CollectionError, IncompleteCollectionError
from .spill import SpilledRecords

try:
    import fcntl
except ImportError:  # not POSIX: no locks, so nothing is ever taken for abandoned
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

STAMP_FIELDS = ("_tenancy", "_upload_timestamp", "_upload_id")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # json.loads pairs the valid ones, so any left are alone
# <tag>.<tenancy>.<upload id>.p<pid>[-n] then .ndjson (the spool) or .envelope.json (rendered beside it).
# Only names of this form are ever removed; the pid is for the operator, the lock decides.
_SPOOL_NAME = re.compile(
    r"(?P<stem>[a-z][a-z0-9_]{0,55}\.[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\."
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.p[0-9]+(?:-[0-9]+)?)"
    r"\.(?P<kind>ndjson|envelope\.json)"
)
_NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def default_spool_dir() -> Path:
    return Path(os.environ.get("COLLECTION_SPOOL_DIR") or Path(tempfile.gettempdir()) / "secmetrics-spool")


class SpoolWriteError(CollectionError):
    """The spool file could not be written (a full or read-only COLLECTION_SPOOL_DIR); `no_room` says it was full."""

    def __init__(self, message: str, *, path: Path, no_room: bool):
        super().__init__(message)
        self.path = path
        self.no_room = no_room


def spool_write_error(tag: str, path: Path, exc: OSError) -> SpoolWriteError:
    """The error for a spool file that could not be written: which file, why, and what to change."""
    cause = exc.strerror or type(exc).__name__
    no_room = exc.errno in _NO_ROOM
    problem = "is full" if no_room else "cannot be written to"
    return SpoolWriteError(
        f"{tag}: could not write the spool file {path}: {cause} (errno {errno.errorcode.get(exc.errno or 0, '?')}). "
        f"The spool directory {path.parent} (COLLECTION_SPOOL_DIR) {problem}: free space there, or set "
        "COLLECTION_SPOOL_DIR to a filesystem with room for the largest collection (see the README's sizing), "
        "then run again. The partial spool file was removed; stored data was not touched.",
        path=path,
        no_room=no_room,
    )


class SpoolLock:
    """The flock that marks a spool file as in use; held from the Spool's creation to the Snapshot's discard."""

    def __init__(self, fd: Optional[int]):
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.close(fd)  # closing the descriptor drops the lock
            except OSError:
                pass

    def __del__(self) -> None:
        self.release()


def _unlink_quietly(path: Path, what: str) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:  # discarding must never raise: it runs while another error is being handled
        log.warning(f"could not remove {what} {path}: {exc}; remove it by hand")


def remove_abandoned(directory: Path) -> list[tuple[Path, int]]:
    """Remove spool files (and their envelopes) whose writer no longer exists; returns (path, bytes) removed.

    A file whose lock can be taken has no living owner. Files of any other name, and every locked file, stay.
    """
    if fcntl is None:
        return []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return []
    spools: dict[str, Path] = {}
    envelopes: dict[str, Path] = {}
    for entry in entries:
        found = _SPOOL_NAME.fullmatch(entry.name)
        if found is None or not entry.is_file(follow_symlinks=False):
            continue
        (spools if found["kind"] == "ndjson" else envelopes)[found["stem"]] = Path(entry.path)
    removed: list[tuple[Path, int]] = []

    def remove(path: Path) -> None:
        try:
            size = path.stat().st_size
            path.unlink()
        except OSError:
            return
        removed.append((path, size))

    for stem, path in spools.items():
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # a live process holds it
            if not _same_file(fd, path):
                continue
            if stem in envelopes:
                remove(envelopes.pop(stem))
            remove(path)
        finally:
            os.close(fd)
    for stem, path in envelopes.items():
        # An envelope is rendered from its spool file and removed before it: without one, it is abandoned.
        if stem not in spools and not path.with_name(stem + ".ndjson").exists():
            remove(path)
    return removed


def _same_file(fd: int, path: Path) -> bool:
    try:
        held, named = os.fstat(fd), os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    return (held.st_dev, held.st_ino) == (named.st_dev, named.st_ino)


def _create_locked(directory: Path, stem: str) -> tuple[Path, int, SpoolLock]:
    """A new spool file, open for writing, with its lock taken before anyone can see it unlocked for long."""
    for attempt in range(100):
        path = directory / f"{stem}.p{os.getpid()}{'' if attempt == 0 else f'-{attempt}'}.ndjson"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            continue
        if fcntl is None:
            return path, fd, SpoolLock(None)
        # The lock lives on a second descriptor that outlives the writing one (Spool.close closes that).
        try:
            lock_fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:  # another Spool took it for abandoned in the instant after it was created
            os.close(fd)
            continue
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            locked = True
        except OSError:
            locked = False  # another Spool took it for abandoned in the instant between open and flock
        if locked and _same_file(lock_fd, path):
            return path, fd, SpoolLock(lock_fd)
        os.close(lock_fd)
        os.close(fd)
    raise CollectionError(f"could not create a spool file for {stem} in {directory}")


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
    # The dataset's typed columns (collection.columns.Column): the stores build their views from them.
    columns: tuple = ()
    lock: Optional[SpoolLock] = field(default=None, repr=False, compare=False)

    @property
    def context(self) -> RunContext:
        return RunContext(self.tag, self.tenancy, self.upload_id, self.timestamp)

    @property
    def timestamp_text(self) -> str:
        return format_timestamp(self.timestamp)

    def ledger_row(self) -> tuple:
        """This upload's row of the databases' uploads ledger: tag, tenancy, upload_id, upload_timestamp, records,
        source (each store adds its own loaded_at)."""
        return (self.tag, self.tenancy, self.upload_id, self.timestamp, self.records, self.source)

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
        """Remove the spool file and release its lock. Never raises: it runs while other errors are handled."""
        _unlink_quietly(self.spool_path, "the spool file")
        if self.lock is not None:
            self.lock.release()


_BATCH_BYTES = 256 * 1024  # Spool.extend writes its lines in calls of about this size


def _compact_encoder() -> Callable[[Any, int], Any]:
    """What `json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode` runs for an object, built once:
    the encode method builds a new C encoder (and a float formatter) on every call. The same text, chunk for chunk;
    "".join(encoder(record, 0)) is the line."""
    encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
    make = json.encoder.c_make_encoder
    if make is None:  # no C accelerator: the encoder's own method
        return lambda value, _level: (encoder.encode(value),)
    return make(
        {},  # circular-reference marks, as check_circular=True keeps them
        encoder.default,
        json.encoder.encode_basestring,
        encoder.indent,
        encoder.key_separator,
        encoder.item_separator,
        encoder.sort_keys,
        encoder.skipkeys,
        encoder.allow_nan,
    )


class LineEncoder:
    """A record checked, stamped and encoded as one compact JSON line (UTF-8, with its newline), as a spool writes
    it; `owner` is that spool."""

    def __init__(self, tag: str, stamps: Optional[dict[str, str]], owner: Any = None):
        self.tag = tag
        self.stamps = stamps
        self.owner = owner
        self._encode = _compact_encoder()

    def __call__(self, record: Any) -> bytes:
        if not isinstance(record, dict):
            raise CollectionError(
                f"{self.tag}: the API returned a {type(record).__name__} where a JSON object was expected"
            )
        if self.stamps is not None:
            record.update(self.stamps)
        try:
            text = "".join(self._encode(record, 0)) + "\n"
        except BaseException:
            self._encode = _compact_encoder()  # a failed encoding can leave its circular-reference marks behind
            raise
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError:
            # A lone surrogate ("\\ud800" in the vendor's JSON: valid JSON, not encodable Unicode) becomes U+FFFD,
            # as no store could hold it; the rest of the record is kept as it came.
            return _LONE_SURROGATE.sub("\ufffd", text).encode("utf-8")


class Spool:
    """Writes records to disk as they arrive, stamps them, counts them and checks the API's reported total."""

    def __init__(self, ctx: RunContext, directory: Optional[Path] = None, *, stamp: bool = True, logger: Any = None):
        self.ctx = ctx
        self.directory = Path(directory) if directory else default_spool_dir()
        stem = f"{ctx.tag}.{ctx.tenancy}.{ctx.upload_id}"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self.abandoned = remove_abandoned(self.directory)
            self.path, fd, self._lock = _create_locked(self.directory, stem)
        except OSError as exc:
            raise spool_write_error(ctx.tag, self.directory / f"{stem}.ndjson", exc) from None
        if self.abandoned:
            total = sum(size for _path, size in self.abandoned)
            (logger or log).info(
                f"{ctx.tag}: removed {len(self.abandoned)} spool file(s) ({total / 1e6:.1f} MB) in {self.directory} "
                "left by processes that no longer exist"
            )
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
        self._handle = open(fd, "wb")
        self._encode_line = self.line_encoder()

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.discard()

    def _failed(self, exc: OSError) -> SpoolWriteError:
        # The partial file is removed at once: on a full disk, that is the room the backup fallback needs.
        self.discard()
        return spool_write_error(self.ctx.tag, self.path, exc)

    def _require_open(self) -> None:
        if self._handle.closed:
            raise CollectionError(f"{self.ctx.tag}: the spool file {self.path} was already closed or discarded")

    def _line(self, record: Any) -> bytes:
        """The record checked, stamped and encoded as one compact JSON line (UTF-8, with its newline)."""
        self._require_open()
        return self._encode_line(record)

    def line_encoder(self) -> LineEncoder:
        """What `write` does to a record before writing it (check, stamp, encode), for another thread to run: a
        fan-out parent's records wait on disk as the very lines this spool writes (collection/spill.py), and
        `extend` copies them in without decoding and encoding them again. A new encoder each call: one a thread."""
        return LineEncoder(self.ctx.tag, self._stamps if self._stamp else None, owner=self)

    def _append(self, lines: list[bytes]) -> None:
        """Write encoded lines in one call and count them."""
        if not lines:
            return
        data = b"".join(lines) if len(lines) > 1 else lines[0]
        try:
            self._handle.write(data)
        except OSError as exc:
            raise self._failed(exc) from None
        self.count += len(lines)
        self.bytes += len(data)
        longest = max(map(len, lines))
        if longest > self.longest_line:
            self.longest_line = longest

    def write(self, record: Any) -> None:
        self._append([self._line(record)])

    def extend(self, records: Iterable[Any]) -> int:
        """Write every record; they go to the file in batches of about _BATCH_BYTES, each in one write call.

        A record that fails (not an object, not encodable) or an iterable that raises leaves the records before it
        written and counted, as writing them one by one would.
        """
        before = self.count
        if isinstance(records, SpilledRecords) and records.lines_of is self:
            self._copy_spilled(records)
            return self.count - before
        lines: list[bytes] = []
        size = 0
        try:
            for record in records:
                line = self._line(record)
                lines.append(line)
                size += len(line)
                if size >= _BATCH_BYTES:
                    batch, lines, size = lines, [], 0
                    self._append(batch)
        except BaseException:
            if lines and not self._handle.closed:
                self._append(lines)
            raise
        self._append(lines)
        return self.count - before

    def _copy_spilled(self, spilled: SpilledRecords) -> None:
        """Lines this spool's encoder parked on disk, copied in as they are (they are counted as `_append` does)."""
        self._require_open()
        try:
            spilled.copy_to(self._handle)
        except OSError as exc:
            raise self._failed(exc) from None
        self.count += spilled.count
        self.bytes += spilled.bytes
        self.longest_line = max(self.longest_line, spilled.longest_line)

    def expect(self, total: int) -> None:
        """Add to the number of records the API says exist (sources with several collections add each)."""
        self.expected_total = (self.expected_total or 0) + int(total)

    def close(self, **metadata: Any) -> Snapshot:
        try:
            self._handle.close()  # the last buffered records reach the disk here
        except OSError as exc:
            raise self._failed(exc) from None
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
            lock=self._lock,
        )

    def discard(self) -> None:
        """Close and remove the spool file. Never raises: a full disk fails the close, the file goes anyway."""
        if not self._handle.closed:
            try:
                self._handle.close()
            except OSError:
                pass  # the buffered records could not be flushed; they are being thrown away
        _unlink_quietly(self.path, "the spool file")
        self._lock.release()
