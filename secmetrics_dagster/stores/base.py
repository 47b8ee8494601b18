"""The interface every store implements, and the results it reports."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..collection.spool import Snapshot


class StoreError(Exception):
    """A store could not take (or give back) an upload; the message names the store and the cause."""


@dataclass
class StoreResult:
    store: str
    location: str
    records: int
    bytes: int
    seconds: float
    skipped: Optional[str] = None  # why nothing was written, when nothing was
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class UploadRef:
    """Where one earlier upload can be found: enough for any store to stream it back."""

    tag: str
    tenancy: str
    upload_id: str
    locations: dict[str, str] = field(default_factory=dict)


class Store(ABC):
    name: str = "store"

    @abstractmethod
    def describe(self) -> str:
        """Where this store writes, for the UI and logs (never credentials)."""

    @abstractmethod
    def write(self, snapshot: Snapshot, envelope: Optional[Path]) -> StoreResult:
        """Write one upload so that it appears whole or not at all."""

    @abstractmethod
    def read(self, ref: UploadRef) -> Iterator[dict]:
        """Stream an upload's records back."""

    @property
    def needs_envelope(self) -> bool:
        return False


class Timer:
    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = round(time.perf_counter() - self.start, 3)


def retry_locked(
    action: Callable[[], Any],
    is_locked: Callable[[BaseException], bool],
    timeout: float,
    sleep: Callable[[float], None] = time.sleep,
) -> Any:
    """Run action, retrying while another process holds a lock (DuckDB files allow one writer process)."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        try:
            return action()
        except Exception as exc:  # noqa: BLE001 - filtered by is_locked
            if not is_locked(exc) or time.monotonic() + delay > deadline:
                raise
        sleep(delay)
        delay = min(delay * 2, 1.0)
