"""A source declared in its YAML catalog beside the module: the vendor, and per dataset what the asset holds, the
function that pulls it, its endpoint, what the checks expect of it and its typed columns. The module holds the code
(the resource, the pull functions) and one line, `SOURCE = declare_source(__name__, "snyk.yaml", SnykResource, ...)`.

    group: snyk                            # Dagster group and resource key
    title: Snyk
    docs_url: https://docs.snyk.io/snyk-api
    datasets:
      snyk_projects:                       # the tag: asset key, file name, table name
        pull: pull_projects                # a function of the module, called with a Pull
        title: Projects
        description: Every project of each organization ...
        endpoint: GET /rest/orgs/{org_id}/projects
        deps: [snyk_organizations]         # upstream datasets whose records the pull reads
        required_fields: [id, attributes.name]
        allow_empty: false                 # an empty collection is normal (default false)
        max_drop: 0.1                      # a fall of more than 10% warns (default COLLECTION_MAX_DROP)
        columns:
          - id: [text, Project id.]        # JSON path: [type, description] or [type, description, name]
          - *shared_columns                # a YAML alias of a list of columns is spliced in place

Top-level keys starting with `_` hold anchors (`_user_columns: &user_columns [...]`). `${name}` in a title,
description or endpoint is replaced by the module's `values` (e.g. a count of statuses kept in code). A key given
twice, an unknown field or a pull the module lacks fails the code location's load, naming the file and the dataset.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from string import Template
from typing import Any, Optional

import yaml

from ..collection.columns import Column
from .base import DatasetSpec, Source, VendorResource

_FIELDS = ("pull", "title", "description", "endpoint", "deps", "required_fields", "allow_empty", "max_drop", "columns")
_REQUIRED = ("pull", "title", "description", "endpoint")
_SOURCE_FIELDS = ("group", "title", "docs_url", "datasets")


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice: YAML keeps the last silently, and a lost column is a silent bug."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set = set()
        for key_node, _value in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"{key!r} is given twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


class CatalogError(ValueError):
    pass


def _text(value: Any, where: str, values: Optional[Mapping[str, str]]) -> str:
    if not isinstance(value, str) or not value.strip():
        raise CatalogError(f"{where} must be a non-empty string")
    if values is None:
        return value
    try:
        return Template(value).substitute(values)
    except (KeyError, ValueError) as exc:
        raise CatalogError(f"{where}: {value[:60]!r} uses an unknown or malformed ${{name}}: {exc}") from None


def _names(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise CatalogError(f"{where} must be a list of names")
    return tuple(value)


def _columns(value: Any, where: str) -> list[Column]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise CatalogError(f"{where} must be a list of `- path: [type, description]` entries")
    columns: list[Column] = []
    for item in value:
        if isinstance(item, list):  # an alias of a shared list of columns
            columns.extend(_columns(item, where))
            continue
        if not (isinstance(item, dict) and len(item) == 1):
            raise CatalogError(f"{where}: {str(item)[:60]!r} is not a `- path: [type, description]` entry")
        ((path, spec),) = item.items()
        if not (isinstance(spec, list) and len(spec) in (2, 3) and all(isinstance(s, str) for s in spec)):
            raise CatalogError(f"{where}: column {path!r} must be [type, description] or [type, description, name]")
        try:
            columns.append(Column(str(path), *spec))
        except ValueError as exc:
            raise CatalogError(f"{where}: {exc}") from None
    return columns


def _pull(module: Any, name: Any, where: str) -> Callable:
    function = getattr(module, name, None) if isinstance(name, str) and name.isidentifier() else None
    if not callable(function):
        raise CatalogError(f"{where}.pull: {module.__name__} has no function {str(name)[:60]!r}")
    return function


def _datasets(path: Path, module: Any, data: Any, values: Optional[Mapping[str, str]]) -> tuple[DatasetSpec, ...]:
    if not isinstance(data, dict) or not data:
        raise CatalogError(f"{path.name}: datasets must be a mapping of dataset tags")
    datasets = []
    for tag, body in data.items():
        where = f"{path.name}: {tag}"
        if not isinstance(body, dict):
            raise CatalogError(f"{where} must be a mapping of {', '.join(_FIELDS)}")
        unknown = sorted(set(body) - set(_FIELDS))
        missing = [f for f in _REQUIRED if f not in body]
        if unknown or missing:
            raise CatalogError(
                f"{where}: unknown field(s) {unknown} or missing {missing}; fields: {', '.join(_FIELDS)}"
            )
        max_drop = body.get("max_drop")
        if max_drop is not None and (isinstance(max_drop, bool) or not isinstance(max_drop, (int, float))):
            raise CatalogError(f"{where}.max_drop must be a number from 0 to 1")
        allow_empty = body.get("allow_empty", False)
        if not isinstance(allow_empty, bool):
            raise CatalogError(f"{where}.allow_empty must be true or false")
        # Each field is checked first (a CatalogError already names the file and field); only what DatasetSpec
        # itself refuses (a column name given twice or reserved) is wrapped with the file's name.
        title = _text(body["title"], f"{where}.title", values)
        description = _text(body["description"], f"{where}.description", values)
        endpoint = _text(body["endpoint"], f"{where}.endpoint", values)
        pull = _pull(module, body["pull"], where)
        deps = _names(body.get("deps"), f"{where}.deps")
        required = _names(body.get("required_fields"), f"{where}.required_fields")
        columns = tuple(_columns(body.get("columns"), f"{where}.columns"))
        try:
            datasets.append(
                DatasetSpec(
                    str(tag),
                    title,
                    description,
                    endpoint,
                    pull=pull,
                    deps=deps,
                    required_fields=required,
                    allow_empty=allow_empty,
                    max_drop=None if max_drop is None else float(max_drop),
                    columns=columns,
                )
            )
        except ValueError as exc:
            raise CatalogError(f"{path.name}: {exc}") from None
    return tuple(datasets)


def declare_source(
    module_name: str,
    catalog: str,
    resource: type[VendorResource],
    sandbox_env: Callable[[str, str], dict[str, str]],
    values: Optional[Mapping[str, Any]] = None,
) -> Source:
    """The Source declared by `catalog`, a YAML file beside the module `module_name` (whose functions it names)."""
    module = sys.modules[module_name]
    path = Path(module.__file__ or "").with_name(catalog)
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_StrictLoader)  # noqa: S506 (a SafeLoader)
    except (OSError, yaml.YAMLError) as exc:
        raise CatalogError(f"{path}: {exc}") from None
    if not isinstance(data, dict):
        raise CatalogError(f"{path}: expected a mapping with {', '.join(_SOURCE_FIELDS)}")
    fields = {k: v for k, v in data.items() if not str(k).startswith("_")}
    if sorted(fields) != sorted(_SOURCE_FIELDS):
        raise CatalogError(f"{path}: has {sorted(fields)}; a catalog has exactly {', '.join(_SOURCE_FIELDS)}")
    shown = None if values is None else {k: str(v) for k, v in values.items()}
    group = _text(fields["group"], f"{path.name}: group", None)
    title = _text(fields["title"], f"{path.name}: title", None)
    docs_url = _text(fields["docs_url"], f"{path.name}: docs_url", None)
    datasets = _datasets(path, module, fields["datasets"], shown)
    try:
        return Source(
            group=group, title=title, docs_url=docs_url, resource=resource, datasets=datasets, sandbox_env=sandbox_env
        )
    except ValueError as exc:  # what Source itself refuses, e.g. a tag declared twice
        raise CatalogError(f"{path.name}: {exc}") from None
