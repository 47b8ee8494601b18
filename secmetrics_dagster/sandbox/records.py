"""What the vendors' record makers share: a volume's checks, the clock their timestamps count back from, and stable
shares of a tenant's mix. Every generated record is a function of (seed, index, clock), so a test can recompute it."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Optional


def check_volume(
    volume: Any,
    counts: Iterable[str],
    least: Optional[Mapping[str, int]] = None,
    most: Optional[int] = None,
    why: str = "",
) -> None:
    """A vendor volume's fields, checked when it is built: each of `counts` an int (never a bool) of at least 0 (or
    `least[name]`) and at most `most`; `now`, if the volume has one, epoch seconds or None. ValueError names the field."""
    cls, least = type(volume).__name__, least or {}
    for name in counts:
        value, low = getattr(volume, name), least.get(name, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < low or (most is not None and value > most):
            bounds = f"from {low} to {most}{why}" if most is not None else f"of at least {low}"
            raise ValueError(f"{cls}.{name} must be an int {bounds}, got {value!r}")
    now = getattr(volume, "now", None)
    if now is not None and (isinstance(now, bool) or not isinstance(now, (int, float))):
        raise ValueError(f"{cls}.now must be epoch seconds or None, got {now!r}")


def sandbox_clock(now: Optional[float]) -> datetime:
    """The moment a vendor's generated timestamps count back from: `now` (epoch seconds) or the present, to the second.

    Every timestamp is an offset from it, so the data stays as old as it was meant to be (last sign-ins within days,
    dormant accounts months back) whenever the sandbox runs; the offsets come from the seed alone.
    """
    return datetime.fromtimestamp(int(time.time() if now is None else now), UTC)


def hash100(seed: int, vendor: str, *parts: Any) -> int:
    """A stable 0-99 for (seed, vendor, parts): a record's share of a tenant's mix, the same on every run."""
    text = f"{seed}:{vendor}:" + ":".join(str(p) for p in parts)
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=4).digest(), "big") % 100


class VendorApi:
    """What every vendor's request handlers start from: the sandbox's seed and token (`secret`: `token` is the name of
    the OAuth vendors' token endpoint), the volume, and its clock."""

    def __init__(self, context: Any, volume: Any) -> None:
        self.seed = context.seed
        self.secret = context.token
        self.volume = volume
        self.now = sandbox_clock(volume.now)
