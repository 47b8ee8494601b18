"""The interface every store implements, the results it reports, and the checks of the settings it is built from."""

from __future__ import annotations

import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..collection.errors import ConfigError
from ..collection.spool import Snapshot

# Printable text only: a value with a control character (most often the newline a copied value brings along)
# would become part of a file name, an S3 key or a connection parameter. fullmatch, as `$` allows a final newline.
_PRINTABLE = re.compile(r"[^\x00-\x1f\x7f]+")


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "...'"


def check_text(variable: str, value: object, *, what: str = "a value", secret: bool = False) -> str:
    """`value` if it is non-blank printable text without surrounding whitespace; ConfigError naming `variable`."""
    shown = "its value" if secret else _shown(value)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{variable} is empty: set it to {what}")
    if not _PRINTABLE.fullmatch(value):
        raise ConfigError(
            f"{variable}={shown} contains a line break or another control character (often a newline copied "
            f"with the value): remove it; {variable} must be {what}"
        )
    if value != value.strip():
        raise ConfigError(f"{variable}={shown} has surrounding whitespace: remove it; {variable} must be {what}")
    return value


def check_number(variable: str, value: object, low: float, high: float) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{variable} must be a whole number from {low:g} to {high:g}, got {_shown(value)}")
    return value


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

    @abstractmethod
    def count(self, ref: UploadRef) -> int:
        """How many records of this upload the store holds, read from the data itself (so a damaged store fails
        here instead of later in a metric). Raises StoreError when the upload is not there at all."""

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
