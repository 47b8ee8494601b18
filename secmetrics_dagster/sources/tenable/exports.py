"""Tenable export jobs consumed chunk by chunk into the spool, concurrently, and resumed by a retried run.

pyTenable's `tio.exports.<type>(iterator=..., uuid=...)` starts the job (adopting the active one on a 409) or
re-attaches to a known one, and `ExportsIterator.run_threaded` downloads chunks on a thread pool as they become
available. Our iterator subclass changes three things: a status poll interval we choose (pyTenable sleeps 2..30 s),
ERROR / CANCELLED / failed chunks end the pull with the job's uuid (pyTenable waits forever on CANCELLED and ignores
`chunks_failed`), and a chunk that will not parse fails the pull (pyTenable would return it as an empty chunk).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

from tenable import errors as tenable_errors
from tenable.io.exports.api import EXPORTS_MAP
from tenable.io.exports.iterator import ExportsIterator
from tenable.utils import scrub

from ...collection.errors import CollectionError, IncompleteCollectionError
from .client import VENDOR, connect, tenable_errors_as_collection_errors

STATE_DIR = "tenable-exports"


class ExportJobFailed(CollectionError):
    """The export job itself is lost on Tenable's side (ERROR, CANCELLED, failed chunks): a new one is needed."""


class SpoolingExport(ExportsIterator):
    """pyTenable's export iterator with our poll interval and no silent losses (see the module docstring)."""

    poll_seconds: float = 10.0
    parse_retries: int = 3
    note_retry: Callable[[], None] = staticmethod(lambda: None)
    log: Any = None
    failure: Optional[BaseException] = None
    last_status: Any = None

    def _fail(self, exc: BaseException) -> BaseException:
        # The first failure wins: chunks still queued on the thread pool see it and stop without downloading.
        if self.failure is None:
            self.failure = exc
        return exc

    def _get_status_resp(self) -> Any:
        for attempt in range(self.parse_retries + 1):
            try:
                status = super()._get_status_resp()
                break
            except ValueError as exc:  # a status answer that is not JSON; polling again is harmless
                if attempt == self.parse_retries:
                    raise CollectionError(
                        f"{VENDOR}: the status of {self.type} export {self.uuid} was not JSON "
                        f"in {attempt + 1} attempts ({exc})"
                    ) from exc
                self.note_retry()
                time.sleep(self.poll_seconds)
        state = status.get("status")
        failed = list(status.get("chunks_failed") or [])
        if state in ("ERROR", "CANCELLED"):
            raise ExportJobFailed(
                f"{VENDOR}: {self.type} export job {self.uuid} ended with status {state} on Tenable's side, "
                f"after {len(self.processed)} chunk(s) had been downloaded; nothing was stored. Run again: a new export "
                "job will be started."
            )
        if failed:
            raise ExportJobFailed(
                f"{VENDOR}: {self.type} export job {self.uuid} reports failed chunk(s) {failed} (status {state}); "
                "their records cannot be downloaded, so this export is incomplete and nothing was stored. Run again: "
                "a new export job will be started."
            )
        if self.log is not None and (self.last_status is None or state != self.last_status.get("status")):
            self.log.info(
                f"{VENDOR}: {self.type} export {self.uuid} is {state}, "
                f"{len(status.get('chunks_available') or [])} chunk(s) ready"
            )
        self.last_status = status
        return status

    def _get_status(self) -> Any:
        try:
            while True:
                if self.failure is not None:
                    raise self.failure
                status = super()._get_status()
                if status.chunks_unfinished or status.status == "FINISHED":
                    return status
                time.sleep(self.poll_seconds)
        except BaseException as exc:
            raise self._fail(exc)  # noqa: B904 - re-raises exc itself

    def _get_chunk_data(self, type: str, uuid: str, chunk_id: int) -> list:
        if self.failure is not None:
            raise self.failure
        path = f"{EXPORTS_MAP[type][self.version]['job_path']}/{scrub(uuid)}/chunks/{scrub(chunk_id)}"
        try:
            for attempt in range(self.parse_retries + 1):
                response = self._api.get(path)  # pyTenable retries 429/5xx/timeouts/cut-short bodies itself
                try:
                    data = response.json()
                except ValueError:
                    data = None
                if isinstance(data, list):
                    return data
                if attempt < self.parse_retries:
                    self.note_retry()
            raise CollectionError(
                f"{VENDOR}: chunk {chunk_id} of {type} export {uuid} was not a JSON array in {self.parse_retries + 1} "
                "attempts; nothing was stored. Run again: the same export job is resumed."
            )
        except BaseException as exc:
            raise self._fail(exc)  # noqa: B904 - re-raises exc itself


class ExportState:
    """The export job a pull is consuming, remembered in the spool directory so a retried run re-attaches to it.

    Keyed by asset tag and tenancy; only reused for the same export settings and URL, and within `max_age_hours`.
    Tenable keeps a finished job's chunks downloadable for a while, and a queued job can take hours to be processed.
    """

    def __init__(self, directory: Path, tag: str, tenancy: str, settings: dict[str, Any], max_age_hours: float):
        self.path = Path(directory) / STATE_DIR / f"{tag}.{tenancy}.json"
        self.fingerprint = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()
        self.max_age_seconds = max_age_hours * 3600

    def load(self) -> Optional[str]:
        try:
            saved = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        if (
            not isinstance(saved, dict)
            or saved.get("fingerprint") != self.fingerprint
            or time.time() - float(saved.get("started_at", 0)) > self.max_age_seconds
        ):
            return None
        return str(saved.get("export_uuid") or "") or None

    def save(self, export_uuid: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"export_uuid": str(export_uuid), "fingerprint": self.fingerprint, "started_at": time.time()}
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        with os.fdopen(fd, "w") as handle:
            json.dump(payload, handle)
        os.replace(tmp, self.path)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


Starter = Callable[..., ExportsIterator]  # (tio, iterator=..., uuid=...) -> an export iterator


def _still_valid(tio: Any, kind: str, export_uuid: str, log: Any) -> bool:
    try:
        status = tio.exports.status(kind, export_uuid)
    except tenable_errors.NotFoundError:
        log.info(f"{VENDOR}: the {kind} export {export_uuid} of an earlier run has expired; starting a new one")
        return False
    if status.get("status") in ("ERROR", "CANCELLED") or status.get("chunks_failed"):
        log.info(
            f"{VENDOR}: the {kind} export {export_uuid} of an earlier run ended {status.get('status')}; "
            "starting a new one"
        )
        return False
    log.info(
        f"{VENDOR}: resuming the {kind} export {export_uuid} of an earlier run ({status.get('status')}) "
        "instead of starting a new one"
    )
    return True


def pull_export(pull: Any, kind: str, start: Starter, settings: dict[str, Any]) -> None:
    """Run (or resume) one export job and write every chunk to the spool as it arrives."""
    resource = pull.resource
    what = f"{kind} export"
    state = ExportState(
        pull.spool.directory,
        pull.spool.ctx.tag,
        pull.spool.ctx.tenancy,
        {"kind": kind, "url": pull.client.base_url, **settings},
        resource.export_resume_hours,
    )
    tio, adapter = connect(resource, pull.client)
    iterator = functools.partial(
        SpoolingExport,
        poll_seconds=resource.export_poll_seconds,
        parse_retries=pull.client.settings.max_retries,
        note_retry=adapter.note_retry,
        log=pull.log,
    )
    lock = threading.Lock()
    written: list[int] = []

    def write_chunk(data: list, export_chunk_id: int, **_: Any) -> None:
        with lock:  # one spool file, many downloading threads
            pull.spool.extend(data)
            written.append(export_chunk_id)

    with tenable_errors_as_collection_errors(what, (resource.access_key or "", resource.secret_key or "")):
        resumed = state.load()
        if resumed and not _still_valid(tio, kind, resumed, pull.log):
            state.clear()
            resumed = None
        export = start(tio, iterator=iterator, uuid=resumed)
        if not resumed:
            state.save(export.uuid)
            pull.log.info(f"{VENDOR}: {kind} export job {export.uuid} started")
        try:
            futures = export.run_threaded(write_chunk, num_threads=resource.export_threads)
            for future in futures:
                future.result()
        except ExportJobFailed:
            state.clear()
            raise
    total = (export.last_status or {}).get("total_chunks")
    if isinstance(total, int) and total != len(written):
        state.clear()
        raise IncompleteCollectionError(
            f"{VENDOR}: {kind} export job {export.uuid} reported {total} chunks but {len(written)} were downloaded; "
            "nothing was stored. Run again: a new export job will be started."
        )
    state.clear()
    pull.log.info(f"{VENDOR}: {kind} export {export.uuid} done: {len(written)} chunk(s), {pull.spool.count} records")
