"""How collection steps run, from the environment: step retries, per-vendor pools and freshness windows."""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Optional

import dagster as dg

from ..collection.env import env_number
from ..collection.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_STEP_RETRIES = 2
DEFAULT_STEP_RETRY_DELAY = 60.0
DEFAULT_FRESHNESS_HOURS = 24.0
DEFAULT_FRESHNESS_GRACE_HOURS = 2.0


def _number(name: str, default: float, *, minimum: float = 0.0) -> float:
    return env_number(name, default, cast=float, low=minimum)


def _group_number(name: str, group: str, default: float, *, minimum: float = 0.0) -> float:
    """NAME_<GROUP> overrides NAME for one source (e.g. COLLECTION_FRESHNESS_HOURS_TENABLE)."""
    return _number(f"{name}_{group.upper()}", _number(name, default, minimum=minimum), minimum=minimum)


def step_retry_policy() -> dg.RetryPolicy:
    """Retries of a whole collection step, on top of the HTTP layer's own retries.

    A step fails only after the HTTP layer gave up, so these retries are spaced out (60 s, then 120 s,
    +-jitter) to outlast a vendor's short outage before the S3 backup is served on the last attempt.
    """
    return dg.RetryPolicy(
        max_retries=int(_number("COLLECTION_STEP_RETRIES", DEFAULT_STEP_RETRIES)),
        delay=_number("COLLECTION_STEP_RETRY_DELAY", DEFAULT_STEP_RETRY_DELAY),
        backoff=dg.Backoff.EXPONENTIAL,
        jitter=dg.Jitter.PLUS_MINUS,
    )


def retry_delay_seconds(policy: Optional[dg.RetryPolicy], retry_number: int) -> Optional[float]:
    """About how long Dagster waits before the next attempt (jitter aside); None when there is no next attempt."""
    if policy is None or retry_number >= policy.max_retries or policy.delay is None:
        return None
    delay = float(policy.delay)
    if policy.backoff == dg.Backoff.EXPONENTIAL:
        return delay * 2**retry_number
    if policy.backoff == dg.Backoff.LINEAR:
        return delay * (retry_number + 1)
    return delay


@dataclass(frozen=True)
class AttemptPlan:
    """Where one attempt of a step stands among the attempts its retry policy allows (jitter aside)."""

    number: int  # this attempt, from 1
    total: int  # attempts in all: the first and every retry
    next_in: Optional[float]  # seconds Dagster waits before the next attempt; None on the last
    last_in: float  # seconds of waiting from now until the last attempt starts (0 on the last)

    @property
    def is_last(self) -> bool:
        return self.number >= self.total


def attempt_plan(policy: Optional[dg.RetryPolicy], retry_number: int) -> AttemptPlan:
    """Attempt `retry_number + 1` of the step: how long until the next attempt and until the last one."""
    retries = policy.max_retries if policy is not None else 0
    waits = [retry_delay_seconds(policy, r) or 0.0 for r in range(retry_number, retries)]
    return AttemptPlan(retry_number + 1, retries + 1, waits[0] if waits else None, sum(waits))


def vendor_pool(group: str) -> str:
    """One Dagster pool per vendor: dagster.yaml's `concurrency.pools.default_limit` caps how many steps
    talk to one vendor at once across all runs, so a manual run never doubles the scheduled one's API load."""
    return f"vendor_{group}"


_OWNER = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+|team:[A-Za-z0-9_-]+")


def owners() -> list[str]:
    """COLLECTION_OWNERS (e.g. `team:security,alice@example.com`): owners shown on every collection asset.

    Dagster refuses any other form when the code loads; an entry it would refuse is left out with a warning
    naming the variable, so one typo never takes the code location down.
    """
    raw = os.environ.get("COLLECTION_OWNERS", "")
    found = []
    for entry in (e.strip() for e in raw.split(",")):
        if not entry:
            continue
        if _OWNER.fullmatch(entry):
            found.append(entry)
        else:
            log.warning("COLLECTION_OWNERS: %r is neither an email address nor team:<name>; left out", entry)
    return found


def freshness_window(group: str) -> tuple[timedelta, timedelta]:
    """(warn, fail): warn once the data is COLLECTION_FRESHNESS_HOURS old, fail after the grace period too."""
    hours = _group_number("COLLECTION_FRESHNESS_HOURS", group, DEFAULT_FRESHNESS_HOURS)
    grace = _group_number("COLLECTION_FRESHNESS_GRACE_HOURS", group, DEFAULT_FRESHNESS_GRACE_HOURS)
    # Dagster refuses a warn window under one minute and a fail window not after it, with an error that names
    # no variable: refused here instead, naming the one that set the value.
    for name, value in (("COLLECTION_FRESHNESS_HOURS", hours), ("COLLECTION_FRESHNESS_GRACE_HOURS", grace)):
        if value * 60 < 1:
            specific = f"{name}_{group.upper()}"
            source = specific if os.environ.get(specific, "").strip() else name
            raise ConfigError(
                f"{source}={value:g} is under one minute: Dagster's freshness windows need at least one minute "
                "(0.017 hours) of warning and of grace"
            )
    return timedelta(hours=hours), timedelta(hours=hours + grace)


def freshness_policy(group: str) -> dg.FreshnessPolicy:
    warn, fail = freshness_window(group)
    return dg.FreshnessPolicy.time_window(fail_window=fail, warn_window=warn)
