"""A parent's records parked on disk while a fan-out waits to spool them in order, so memory stays one page deep.

A fan-out reads several parents at once (collection/threads.py ordered_map) but spools them in the serial order;
a parent that finishes early waits for those before it. Held as lists, that is up to workers + 1 parents' records
in memory (11 Snyk organizations of 100,000 issues each); parked here, it is one page per worker. The file is an
anonymous temporary file (unlinked as it is made, so nothing is left behind, whatever ends the process) in the
collection's spool directory.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any, Optional


class SpilledRecords:
    """Records written once to an anonymous file, read back once, in order; `len()` is how many.

    With `encode` (a spool's `line_encoder()`), the file holds the lines that spool would write, stamped and
    encoded: `Spool.extend` copies them in as bytes (`copy_to`), so a parked record is encoded once, as one that
    went straight to the spool is. Without it, the records come back decoded (`iter`).
    """

    def __init__(
        self, records: Iterable[Any], directory: Optional[str] = None, encode: Optional[Callable[[Any], bytes]] = None
    ):
        self._file: Optional[IO[bytes]] = tempfile.TemporaryFile(dir=directory)
        self.count = self.bytes = self.longest_line = 0
        self.lines_of = getattr(encode, "owner", None)  # the spool whose lines these are, if any
        if encode is None:
            plain = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
            encode = lambda record: plain(record).encode() + b"\n"  # noqa: E731
        try:
            for record in records:
                line = encode(record)
                self._file.write(line)
                self.count += 1
                self.bytes += len(line)
                if len(line) > self.longest_line:
                    self.longest_line = len(line)
        except BaseException:
            self.close()
            raise

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[Any]:
        if self._file is None:
            raise RuntimeError("spilled records are read once")
        handle, self._file = self._file, None
        try:
            handle.seek(0)
            for line in handle:
                yield json.loads(line)
        finally:
            handle.close()

    def copy_to(self, handle: IO[bytes]) -> None:
        """The file's bytes, as written, to `handle` (once, instead of iterating)."""
        if self._file is None:
            raise RuntimeError("spilled records are read once")
        source, self._file = self._file, None
        try:
            source.seek(0)
            shutil.copyfileobj(source, handle, 1 << 20)
        finally:
            source.close()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __del__(self) -> None:  # a fan-out that failed drops the results it did not spool
        self.close()
