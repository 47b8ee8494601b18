"""The YAML catalogs that declare each source's datasets (sources/catalog.py): what they load into, and how a broken
catalog fails the code location's load, naming the file and the dataset."""

import sys
import textwrap
import types

import pytest
import yaml

from secmetrics_dagster.collection.columns import Column
from secmetrics_dagster.sources import SOURCES
from secmetrics_dagster.sources.catalog import CatalogError, declare_source
from secmetrics_dagster.sources.okta.pulls import ROLELESS_STATUSES, STATUSES
from secmetrics_dagster.sources.snyk import SnykResource

GOOD = """\
group: mytool
title: My Tool
docs_url: https://example.invalid/docs
_shared: &shared
  - owner.name: [text, "Owner, as the tool names them."]
  - owner.email: [text, Owner's email.]
datasets:
  mytool_things:
    pull: pull_things
    title: Things
    description: Every thing, ${count} kinds.
    endpoint: GET /things/{id}
    required_fields: [id]
    max_drop: 0.25
    columns:
      - id: [text, Thing id.]
      - *shared
      - createdAt: [timestamp, When it was made., made_at]
  mytool_parts:
    pull: pull_parts
    title: Parts
    description: Parts of each thing.
    endpoint: GET /things/{id}/parts
    deps: [mytool_things]
    allow_empty: true
"""


def _pull_things(pull):
    pull.spool.extend([{"id": "1"}])


def _pull_parts(pull):
    pass


@pytest.fixture
def module(tmp_path):
    """A throwaway vendor module on disk, with its catalog beside it."""
    name = f"mytool_{tmp_path.name.replace('-', '_')}"
    mod = types.ModuleType(name)
    mod.__file__ = str(tmp_path / "mytool.py")
    mod.pull_things, mod.pull_parts, mod.not_a_function = _pull_things, _pull_parts, 42
    sys.modules[name] = mod
    yield mod, tmp_path
    del sys.modules[name]


def _declare(module, text, **kwargs):
    mod, folder = module
    (folder / "mytool.yaml").write_text(textwrap.dedent(text))
    kwargs.setdefault("values", {"count": 3})
    return declare_source(mod.__name__, "mytool.yaml", SnykResource, lambda url, token: {}, **kwargs)


def test_a_catalog_declares_the_source_its_datasets_columns_and_pulls(module):
    source = _declare(module, GOOD)
    assert (source.group, source.title, source.docs_url) == ("mytool", "My Tool", "https://example.invalid/docs")
    things, parts = source.datasets
    assert things.tag == "mytool_things" and things.pull is _pull_things and parts.pull is _pull_parts
    assert things.description == "Every thing, 3 kinds."
    assert things.endpoint == "GET /things/{id}"  # braces of a path are not placeholders
    assert things.required_fields == ("id",) and things.max_drop == 0.25 and things.allow_empty is False
    assert parts.deps == ("mytool_things",) and parts.allow_empty is True and parts.max_drop is None
    assert things.columns == (
        Column("id", "text", "Thing id."),
        Column("owner.name", "text", "Owner, as the tool names them."),
        Column("owner.email", "text", "Owner's email."),
        Column("createdAt", "timestamp", "When it was made.", "made_at"),
    )
    assert parts.columns == ()


@pytest.mark.parametrize(
    "change, expected",
    [
        (("      - id: [text, Thing id.]\n", "      - id: [text, Thing id.]\n      - id: [text, Again.]\n"), "twice"),
        (("    title: Parts\n", "    title: Parts\n    title: Pieces\n"), "'title' is given twice"),
        (("    pull: pull_parts\n", "    pull: pull_pieces\n"), "mytool_parts.pull: mytool_"),
        (("    pull: pull_parts\n", "    pull: not_a_function\n"), "has no function 'not_a_function'"),
        (("    pull: pull_parts\n", "    pull: os.system\n"), "has no function 'os.system'"),
        (("    pull: pull_parts\n", ""), "missing ['pull']"),
        (("    allow_empty: true\n", "    allow_empty: yes please\n"), "allow_empty must be true or false"),
        (("    max_drop: 0.25\n", "    max_drop: true\n"), "max_drop must be a number"),
        (("    required_fields: [id]\n", "    required_fields: id\n"), "required_fields must be a list of names"),
        (("    required_fields: [id]\n", "    requried_fields: [id]\n"), "unknown field(s) ['requried_fields']"),
        (("[timestamp, When it was made., made_at]", "[datetime, When it was made.]"), "type 'datetime' is not"),
        (("[timestamp, When it was made., made_at]", "[timestamp]"), "must be [type, description]"),
        (("      - id: [text, Thing id.]\n", "      - id text\n"), "is not a `- path: [type, description]`"),
        (("Every thing, ${count} kinds.", "Every thing, ${kinds} kinds."), "unknown or malformed ${name}"),
        (("docs_url: https://example.invalid/docs\n", ""), "a catalog has exactly group, title, docs_url, datasets"),
        (("title: My Tool\n", "title: My Tool\nowner: me\n"), "a catalog has exactly"),
        (("    title: Things\n", "    title: ''\n"), "mytool_things.title must be a non-empty string"),
    ],
)
def test_a_broken_catalog_fails_naming_the_file_and_the_dataset(module, change, expected):
    old, new = change
    assert old in GOOD
    with pytest.raises(CatalogError) as caught:
        _declare(module, GOOD.replace(old, new, 1))
    assert expected in str(caught.value)
    assert str(caught.value).count("mytool.yaml") == 1  # the file named once, not once per layer


def test_a_missing_or_unreadable_catalog_names_the_file(module):
    mod, _folder = module
    with pytest.raises(CatalogError, match="nothing.yaml"):
        declare_source(mod.__name__, "nothing.yaml", SnykResource, lambda url, token: {})
    with pytest.raises(CatalogError, match="mytool.yaml"):
        _declare(module, "group: [unclosed\n")


def test_a_column_declared_twice_is_refused_even_through_an_alias(module):
    twice = GOOD.replace("      - createdAt:", "      - *shared\n      - createdAt:")
    with pytest.raises(
        CatalogError,
        match="^mytool.yaml: mytool_things: column name.s. declared twice or reserved: owner_email, owner_name$",
    ):
        _declare(module, twice)


def test_every_shipped_catalog_is_strict_yaml_whose_pulls_are_its_modules_functions():
    for source in SOURCES:
        module = sys.modules[source.datasets[0].pull.__module__]
        assert source.datasets, source.group
        for dataset in source.datasets:
            assert callable(dataset.pull) and dataset.pull.__module__.startswith(module.__name__.rsplit(".", 1)[0])
    # Okta's texts take their counts from the code that pulls them.
    okta = next(s for s in SOURCES if s.group == "okta")
    assert f"(all {len(STATUSES)} statuses)" in okta.dataset("okta_users").endpoint
    assert f"({', '.join(ROLELESS_STATUSES)})" in okta.dataset("okta_user_roles").description
    assert [c.name for c in okta.dataset("okta_group_members").columns][:3] == ["id", "_group_id", "status"]


def test_the_strict_loader_still_loads_only_plain_data():
    from secmetrics_dagster.sources.catalog import _StrictLoader

    with pytest.raises(yaml.YAMLError):
        yaml.load("x: !!python/object/apply:os.system ['true']", Loader=_StrictLoader)  # noqa: S506
