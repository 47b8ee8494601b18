"""Settings from the environment, read one way everywhere: secrets by reference, numbers checked and named.

A secret becomes a `dg.EnvVar` reference, so its value is resolved when the resource is built and never copied
into run config, the UI or logs. A number that does not parse or is out of range is a ConfigError that names the
variable and what it accepts, instead of a bare `invalid literal for int()`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Optional, TypeVar

import dagster as dg

from .errors import ConfigError

N = TypeVar("N", int, float)


def env_text(name: str) -> Optional[str]:
    """The variable's value, or None when it is unset or blank."""
    value = os.environ.get(name)
    return value if value is not None and value.strip() != "" else None


def secret_env(name: str) -> Optional[dg.EnvVar]:
    """A reference to a secret variable if it is set; None lets the resource report it as missing."""
    return dg.EnvVar(name) if env_text(name) is not None else None


def env_number(
    name: str, default: N, *, cast: Callable[[str], N] = int, low: Optional[float] = None, high: Optional[float] = None
) -> N:
    """NAME as a whole number (cast=int) or a number (cast=float), within [low, high] when given."""
    raw = env_text(name)
    if raw is None:
        return default
    kind = "a whole number" if cast is int else "a number"
    try:
        value = cast(raw.strip())
    except ValueError:
        value = None
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        bounds = f" from {low:g} to {high:g}" if low is not None and high is not None else ""
        raise ConfigError(f"{name} must be {kind}{bounds}, got {raw!r}")
    problem = out_of_bounds(name, value, low, high)
    if problem:
        raise ConfigError(problem)
    return value


def out_of_bounds(
    name: str, value: float, low: Optional[float], high: Optional[float], *, between: bool = False
) -> Optional[str]:
    """What is wrong with NAME=value given its bounds, or None. `between`: "between a and b" rather than "from a
    to b" (a configured value rather than a variable just read)."""
    if low is not None and high is not None and not low <= value <= high:
        span = f"between {low:g} and {high:g}" if between else f"from {low:g} to {high:g}"
        return f"{name} must be {span}, got {value:g}"
    if low is not None and value < low:
        return f"{name} must be at least {low:g}, got {value:g}"
    if high is not None and value > high:
        return f"{name} must be at most {high:g}, got {value:g}"
    return None


def env_flag(name: str, default: bool) -> bool:
    """true/false, yes/no, on/off, 1/0; anything else is a ConfigError."""
    raw = env_text(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")
