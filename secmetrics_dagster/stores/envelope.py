"""The seed's JSON envelope, {"data": [...], "metadata": {...}}, written and read as a stream."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import ijson

from ..collection.spool import Snapshot, spool_write_error


def write_envelope(snapshot: Snapshot, handle: BinaryIO) -> int:
    """Stream the spool into the envelope, one record per line so the file stays greppable."""
    written = handle.write(b'{"data": [')
    separator = b"\n"
    with open(snapshot.spool_path, "rb") as spool:
        for line in spool:
            written += handle.write(separator)
            written += handle.write(line.rstrip(b"\n"))
            separator = b",\n"
    tail = '\n], "metadata": ' + json.dumps(snapshot.envelope_metadata()) + "}\n"
    written += handle.write(tail.encode("utf-8"))
    return written


def render_envelope(snapshot: Snapshot) -> Path:
    """Write the envelope once beside the spool; the file and S3 stores both ship this one file.

    A write that fails (a full spool disk) removes the partial file and names the spool directory.
    """
    path = snapshot.spool_path.with_suffix(".envelope.json")
    try:
        with open(path, "wb") as handle:
            write_envelope(snapshot, handle)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        try:
            path.unlink(missing_ok=True)
        except OSError:
            pass
        raise spool_write_error(snapshot.tag, path, exc) from None
    return path


def iter_envelope_records(handle: BinaryIO) -> Iterator[dict]:
    """Records of any envelope, ours or the original collectors' single-line files, in flat memory."""
    yield from ijson.items(handle, "data.item", use_float=True)


def count_envelope_records(handle: BinaryIO) -> int:
    """The number of records in an envelope, read through to its end (a cut or damaged file raises ValueError)."""
    return scan_envelope(handle)[0]


def scan_envelope(handle: BinaryIO) -> tuple[int, dict[str, Any]]:
    """(records, the metadata's plain values) in one pass over an envelope; ValueError when it is cut or damaged."""
    count = 0
    metadata: dict[str, Any] = {}
    try:
        for prefix, event, value in ijson.parse(handle, use_float=True):
            # Each item opens (a map or a list) or is a scalar at "data.item"; its keys are events there too.
            if prefix == "data.item":
                if event not in ("end_map", "end_array", "map_key"):
                    count += 1
            elif prefix.startswith("metadata.") and event in ("string", "number", "boolean", "null"):
                metadata[prefix[len("metadata.") :]] = value
    except ijson.JSONError as exc:  # not a ValueError
        raise ValueError(f"the envelope is cut short or is not JSON ({' '.join(str(exc).split())})") from None
    return count, metadata


def read_envelope_metadata(handle: BinaryIO) -> dict[str, Any]:
    for metadata in ijson.items(handle, "metadata", use_float=True):
        return metadata
    raise ValueError("no 'metadata' object in the envelope")
