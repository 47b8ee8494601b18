"""The README's generated tables match the sources' own descriptions, and it starts with the two commands."""

from pathlib import Path

from secmetrics_dagster.docs import README, render
from secmetrics_dagster.sources import SOURCES


def test_readme_tables_are_generated_from_the_sources():
    text = README.read_text()
    assert render(text) == text, "run: .venv/bin/python -m secmetrics_dagster.docs"


def test_every_source_variable_and_asset_is_documented():
    text = README.read_text()
    for source in SOURCES:
        for var in source.env_vars:
            assert f"`{var.env}`" in text
        for dataset in source.datasets:
            assert f"`{dataset.tag}`" in text


def test_readme_starts_with_exactly_the_two_commands():
    lines = README.read_text().splitlines()
    block = lines[lines.index("```bash") + 1 : lines.index("```")]
    assert [line.split("#")[0].strip() for line in block] == ["make demo", "make test"]


def test_ci_runs_the_readme_test_command():
    assert "make test" in (Path(README).parent / ".ci/run").read_text()
