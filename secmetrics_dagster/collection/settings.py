"""Settings declared once: a resource field names its variable, default, bounds, secret-ness and documentation.

`env_setting(...)` is a pydantic `Field` carrying a `Setting`. From that one declaration `SettingsResource`
derives `from_env()` (every value read and checked once, the variable named in any error), `missing_env()`
(required variables that are unset), the UI's field descriptions and the README's variable tables. A secret
becomes a `dg.EnvVar` reference, so its value is resolved when the resource is built and never copied into run
config, the UI or logs; one with surrounding whitespace (a copied newline) is refused here, before it can reach
an HTTP header and be quoted back in an error.
"""

from __future__ import annotations

import os
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Optional, Union

import dagster as dg
from pydantic import Field

from .env import env_flag, env_number, env_text, out_of_bounds
from .errors import ConfigError

_UNSET = object()


@dataclass(frozen=True)
class Setting:
    """One environment variable behind one resource field."""

    env: str
    doc: str
    default: Any = None
    low: Optional[float] = None
    high: Optional[float] = None
    secret: bool = False
    required: bool = False
    # A regular expression the whole value must match (re.fullmatch: a trailing newline is not a match).
    pattern: Optional[str] = None
    # str -> value; raises ValueError (or ConfigError) with a message for the user, e.g. a region name to a URL.
    parse: Optional[Callable[[str], Any]] = None
    # Set to an empty string: None (turns the feature off) instead of the default, e.g. STORE_FILE="".
    blank_disables: bool = False
    # How the README shows the default when it is not a plain value (e.g. "ask each TLD's registry").
    default_text: Optional[str] = None

    @property
    def shown_default(self) -> str:
        if self.default_text is not None:
            return self.default_text
        if self.default is None or self.default == "":
            return "required" if self.required else ""
        if isinstance(self.default, bool):
            return f"`{str(self.default).lower()}`"
        if isinstance(self.default, float):
            return f"`{self.default:g}`"
        return f"`{self.default}`"


def env_setting(env: str, doc: str, default: Any = None, **options: Any) -> Any:
    """A resource field read from `env`. Options are Setting's: low, high, secret, required, pattern, parse, ..."""
    setting = Setting(env, doc, default, **options)
    return Field(default=default, description=f"{doc} (from {env})", json_schema_extra={"setting": setting})


def _value_type(annotation: Any) -> Any:
    """int for `int` and `Optional[int]`; the same for float, bool and str."""
    if typing.get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else str
    return annotation


def read_setting(setting: Setting, value_type: Any) -> Any:
    """The variable's value as the field wants it, checked; the default when unset."""
    raw = os.environ.get(setting.env)
    if raw is not None and raw.strip() == "":
        return None if setting.blank_disables else setting.default
    if raw is None:
        return setting.default
    if setting.secret:
        if raw != raw.strip():
            raise ConfigError(
                f"{setting.env} has leading or trailing whitespace (often a newline copied with the secret): "
                f"remove it and set {setting.env} again"
            )
        return dg.EnvVar(setting.env)
    if value_type is bool:
        return env_flag(setting.env, setting.default)
    if value_type in (int, float):
        return env_number(setting.env, setting.default, cast=value_type, low=setting.low, high=setting.high)
    text = env_text(setting.env)
    if setting.pattern is not None and not re.fullmatch(setting.pattern, text):
        raise ConfigError(f"{setting.env}={text!r} is not valid: {setting.doc}")
    if setting.parse is not None:
        try:
            setting.parse(text)
        except ConfigError:
            raise
        except ValueError as exc:
            raise ConfigError(f"{setting.env}={text!r}: {exc}") from None
    return text


class SettingsResource(dg.ConfigurableResource):
    """A resource whose fields declared with `env_setting` are read from the environment by `from_env()`."""

    # Shown in the README's variable tables before each variable's description (e.g. "Snyk").
    settings_title: ClassVar[str] = ""

    # Filled by from_env(report_problems=True) for each variable that could not be read (the field keeps its
    # default): check_settings() refuses the resource with them, so nothing ever runs on the substitute.
    settings_problems: list[str] = Field(
        default=[],
        description="Variables that held an unusable value when the code loaded: every use of this resource "
        "refuses to run, naming them, until they are fixed and the code location reloaded.",
    )

    @classmethod
    def declared_settings(cls) -> list[tuple[str, Setting]]:
        found = []
        for name, info in cls.model_fields.items():
            extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
            setting = extra.get("setting")
            if isinstance(setting, Setting):
                found.append((name, setting))
        return found

    @classmethod
    def from_env(cls, *, report_problems: bool = False, **overrides: Any):
        """Every declared setting read now, numbers checked against their bounds; errors name the variable.
        `overrides` win. Checks across fields (`validate_settings`) run with check_settings() at step start.

        With `report_problems` (what the definitions use, so one bad value does not take the code location down)
        an unreadable variable does not raise: its message goes to `settings_problems`, the field keeps its default
        and check_settings() refuses the resource."""
        values, problems = {}, []
        for name, setting in cls.declared_settings():
            if name in overrides:
                continue
            try:
                values[name] = read_setting(setting, _value_type(cls.model_fields[name].annotation))
            except ConfigError as exc:
                if not report_problems:
                    raise
                problems.append(str(exc))
        if problems:
            values["settings_problems"] = problems
        values.update(overrides)
        return cls(**values)

    def _bound_problems(self) -> list[str]:
        found = []
        for name, setting in self.declared_settings():
            value = getattr(self, name, None)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            problem = out_of_bounds(setting.env, value, setting.low, setting.high, between=True)
            if problem:
                found.append(problem)
        return found

    def check_settings(self) -> None:
        """Every declared bound on the values this resource holds, however it was built (from the environment,
        directly, or with config from the launchpad), then `validate_settings()`. The factory runs it before any
        vendor request; errors name the variable. A resource with `settings_problems` is refused with them."""
        problems = list(self.settings_problems or ()) or self._bound_problems()[:1]
        if problems:
            raise ConfigError("; ".join(problems))
        self.validate_settings()

    def settings_report(self) -> list[str]:
        """Every problem check_settings() refuses, not only the first: what loading the code reports."""
        found = [*(self.settings_problems or ()), *self._bound_problems()]
        try:
            self.validate_settings()
        except ConfigError as exc:
            found.append(str(exc))
        return found

    def validate_settings(self) -> None:
        """Checks across fields, or beyond bounds; run by check_settings(). Raise ConfigError naming the variable."""

    def missing_env(self) -> list[str]:
        """Required variables without a value: the source is skipped (or its run refused) until they are set."""
        return [s.env for name, s in self.declared_settings() if s.required and not getattr(self, name)]


def settings_table_rows(resource: type[SettingsResource]) -> list[str]:
    """README rows `| variable | default | what it does |` of one resource's declared settings."""
    rows = []
    for _name, setting in resource.declared_settings():
        secret = " Secret: read from the environment at run time, never shown." if setting.secret else ""
        title = f"{resource.settings_title}: " if resource.settings_title else ""
        rows.append(f"| `{setting.env}` | {setting.shown_default} | {title}{setting.doc}{secret} |")
    return rows
