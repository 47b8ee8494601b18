"""One run context per materialization (tenancy, upload id, one UTC time) and the seed's path variables."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from .errors import ConfigError, InvalidIdentifierError

# Tags become SQL table names (plus a "_latest" suffix, within PostgreSQL's 63 bytes), so they are
# restricted to lower-case identifiers. Tenancies are values in SQL but segments in paths and keys.
# Checked with fullmatch: `$` also matches before a final newline, so "default\n" would pass a match().
_TAG_RE = re.compile(r"[a-z][a-z0-9_]{0,55}")
_TENANCY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_PATH_VARIABLES = ("%TAG", "%TENANCY", "%UUID", "%YYYY", "%MM", "%DD", "%hh", "%mm", "%ss")
_PATH_VAR_RE = re.compile("|".join(re.escape(v) for v in _PATH_VARIABLES))


def _describe(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "...'"


def validate_tag(tag: object) -> str:
    if not isinstance(tag, str) or not _TAG_RE.fullmatch(tag):
        raise InvalidIdentifierError(
            f"invalid tag {_describe(tag)}: a tag must be 1-56 characters of a-z, 0-9 and '_', "
            "starting with a letter (it names files, S3 keys and SQL tables)"
        )
    return tag


def validate_tenancy(tenancy: object) -> str:
    if not isinstance(tenancy, str) or not _TENANCY_RE.fullmatch(tenancy) or ".." in tenancy:
        raise InvalidIdentifierError(
            f"invalid tenancy {_describe(tenancy)}: TENANCY must be 1-64 characters of letters, digits, "
            "'_', '-' and '.', starting with a letter or digit, without '..' (it becomes part of paths and S3 keys)"
        )
    return tenancy


def format_timestamp(moment: datetime) -> str:
    """The seed's timestamp form: ISO 8601, UTC, whole seconds, 'Z'."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


@dataclass(frozen=True)
class RunContext:
    """Identity of one collection: every record, path and row of an upload carries these values."""

    tag: str
    tenancy: str
    upload_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    timestamp: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))

    def __post_init__(self) -> None:
        validate_tag(self.tag)
        validate_tenancy(self.tenancy)
        try:
            canonical = str(uuid.UUID(self.upload_id))
        except (ValueError, TypeError, AttributeError):
            raise InvalidIdentifierError(f"invalid upload id {_describe(self.upload_id)}: expected a UUID") from None
        # uuid.UUID also reads "{...}", "urn:uuid:..." and upper case: the id names files and keys, so one form.
        object.__setattr__(self, "upload_id", canonical)
        if self.timestamp.tzinfo is None:
            raise ConfigError("run context timestamp must be timezone-aware (UTC)")

    @property
    def timestamp_text(self) -> str:
        return format_timestamp(self.timestamp)

    def expand(self, template: str) -> str:
        return expand_path(template, self)


def expand_path(template: str, ctx: RunContext) -> str:
    """Expand %TAG %TENANCY %UUID %YYYY %MM %DD %hh %mm %ss in one pass (values never re-expanded)."""
    if not isinstance(template, str) or not template.strip():
        raise ConfigError("empty path template")
    t = ctx.timestamp.astimezone(UTC)
    values = {
        "%TAG": ctx.tag,
        "%TENANCY": ctx.tenancy,
        "%UUID": ctx.upload_id,
        "%YYYY": f"{t.year:04d}",
        "%MM": f"{t.month:02d}",
        "%DD": f"{t.day:02d}",
        "%hh": f"{t.hour:02d}",
        "%mm": f"{t.minute:02d}",
        "%ss": f"{t.second:02d}",
    }
    # Values are validated identifiers (no separators, no '..'), so they cannot climb out of the template.
    return _PATH_VAR_RE.sub(lambda m: values[m.group(0)], template)
