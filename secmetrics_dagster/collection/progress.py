"""Progress of a long pull in the run log: at most every COLLECTION_PROGRESS_SECONDS, one line with the records
spooled so far, the requests made, the throttled answers and the time spent waiting on them and, where the API
reported a total, the percentage and an estimate of the time left.

One mechanism for every source: it reads the spool's counters, the client's stats (`as_metadata()`: the
`http_*` names every client shares) and the total the pull was told about, from a daemon thread that wakes once
per interval, so a pull that is only waiting (a Tenable export being prepared, a throttled Okta loop) is
reported too. A pull that ends within the first interval logs nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Optional


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 120:
        return f"{seconds} s"
    minutes, rest = divmod(seconds, 60)
    if minutes < 120:
        return f"{minutes} min {rest:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class Progress:
    """What one pull has done so far, as one log line; `tick()` logs it when an interval has passed.

    `records()` and `total()` are read at each tick (the spool's count, the total the API reported, or None);
    `stats()` is the client's `as_metadata()`. `clock` is injectable so the tests need no sleeps.
    """

    def __init__(
        self,
        tag: str,
        log: Any,
        interval: float,
        records: Callable[[], int],
        total: Callable[[], Optional[int]] = lambda: None,
        stats: Callable[[], dict[str, Any]] = dict,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.tag, self.log, self.interval = tag, log, float(interval)
        self._records, self._total, self._stats, self._clock = records, total, stats, clock
        self.started = clock()
        self._last = self.started
        self.lines = 0

    def line(self) -> str:
        """The progress line as of now."""
        elapsed = self._clock() - self.started
        records = int(self._records())
        total = self._total()
        stats = self._stats() or {}
        text = f"{self.tag}: {records:,} records so far"
        if total:
            text += f" ({min(100.0, 100.0 * records / total):.0f}% of {total:,}"
            if 0 < records < total and elapsed > 0:
                text += f", about {_duration((total - records) * elapsed / records)} left"
            text += ")"
        text += f", {stats.get('http_requests', 0):,} requests"
        throttled = stats.get("http_throttled", 0)
        waited = float(stats.get("http_waited_seconds", 0) or 0) + float(stats.get("http_paced_seconds", 0) or 0)
        text += f", {throttled:,} throttled"
        if waited:
            text += f" ({_duration(waited)} waited)"
        return text + f", {_duration(elapsed)} in"

    def tick(self) -> bool:
        """Log the line if at least one interval passed since the last one (or the start); True if it did."""
        now = self._clock()
        if now - self._last < self.interval:
            return False
        self._last = now
        self.lines += 1
        self.log.info(self.line())
        return True


@contextmanager
def reporting(progress: Progress) -> Iterator[Progress]:
    """Tick `progress` from a daemon thread while the block runs; the thread is stopped (and joined) on exit."""
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(progress.interval):
            try:
                progress.tick()
            except Exception:  # noqa: BLE001 - a progress line must never fail or stop the pull it reports on
                return

    thread = threading.Thread(target=run, name=f"progress-{progress.tag}", daemon=True)
    thread.start()
    try:
        yield progress
    finally:
        stop.set()
        thread.join()
