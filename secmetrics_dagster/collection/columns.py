"""Typed columns declared per dataset: a JSON path in the record, a type and a one-line description.

The column's name is the same for every source: the snake_case of the JSON path's parts joined with `_`
(`profile.login` -> `profile_login`, `lastLogin` -> `last_login`, `cve.remediation_level` ->
`cve_remediation_level`); the fields the collector injects keep their underscore (`_user_id`). Only a name
over PostgreSQL's 63 characters is declared shorter, beside its column. The stores turn each declaration into a typed column of the `<tag>_latest` and
`<tag>_history` views beside `json_data`; a value that does not convert is NULL, never an error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional

TYPES = ("text", "integer", "float", "boolean", "timestamp", "json")
_PART = re.compile(r"[A-Za-z_@$][A-Za-z0-9_@$-]*|\d+")
_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def snake_case(path: str) -> str:
    """`profile.login` -> `profile_login`, `lastLogin` -> `last_login`, `@odata.type` -> `odata_type`."""
    words = []
    for part in path.split("."):
        part = re.sub(r"[^A-Za-z0-9]+", "_", part)
        part = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", part)
        words.append(part.strip("_").lower())
    # A field the collector injects (`_user_id`, `_org_id`) keeps its leading underscore: it is a join key,
    # not the vendor's own field of the same name.
    lead = "_" if path.startswith("_") else ""
    return lead + "_".join(w for w in words if w)


@dataclass(frozen=True)
class Column:
    """One typed column: `path` is dotted (`profile.login`, `tags.0.key`); `type` one of TYPES."""

    path: str
    type: str
    description: str
    name: str = field(default="")

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            raise ValueError(f"column {self.path!r}: type {self.type!r} is not one of {', '.join(TYPES)}")
        parts = self.path.split(".")
        if not self.path or not all(_PART.fullmatch(p) for p in parts):
            raise ValueError(f"column path {self.path!r} is not a dotted JSON path")
        if not self.name:
            object.__setattr__(self, "name", snake_case(self.path))
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"column {self.path!r}: name {self.name!r} is not a SQL identifier")

    @property
    def parts(self) -> list[str]:
        return self.path.split(".")


def col(path: str, type: str, description: str, name: Optional[str] = None) -> Column:
    return Column(path, type, description, name or "")


# What every view has before the declared columns: the upload's columns and the raw record.
BASE_COLUMNS = ("upload_timestamp", "tenancy", "upload_id", "json_data")
