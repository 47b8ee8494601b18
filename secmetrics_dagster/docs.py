"""README tables generated from the sources' own descriptions: `python -m secmetrics_dagster.docs` rewrites them."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from .collection.settings import settings_table_rows
from .sources import SOURCES

README = Path(__file__).resolve().parents[1] / "README.md"


def collector_table() -> str:
    rows = ["| Source | Group | Assets (tag = table) | Endpoint | Required variables |", "|---|---|---|---|---|"]
    for source in SOURCES:
        required = ", ".join(f"`{name}`" for name in source.required_env)
        for i, dataset in enumerate(source.datasets):
            head = f"[{source.title}]({source.docs_url}) | `{source.group}`" if i == 0 else " | "
            rows.append(
                f"| {head} | `{dataset.tag}` — {dataset.title} | `{dataset.endpoint}` | {required if i == 0 else ''} |"
            )
    return "\n".join(rows)


def source_env_table() -> str:
    rows = ["| Variable | Default | What it does |", "|---|---|---|"]
    for source in SOURCES:
        rows += settings_table_rows(source.resource)
    return "\n".join(rows)


def column_tables() -> str:
    """Per dataset: its typed columns (name, type, JSON path, description), as the views and the UI show them."""
    out = []
    for source in SOURCES:
        for dataset in source.datasets:
            out.append(f"#### `{dataset.tag}` ({source.title}: {dataset.title})\n")
            out.append("| Column | Type | JSON path | Description |")
            out.append("|---|---|---|---|")
            for column in dataset.columns:
                out.append(f"| `{column.name}` | {column.type} | `{column.path}` | {column.description} |")
            out.append("")
    return "\n".join(out).rstrip()


BLOCKS = {
    "collectors": collector_table,
    "source-env": source_env_table,
    "columns": column_tables,
}


def render(text: str) -> str:
    for name, build in BLOCKS.items():
        pattern = re.compile(rf"(<!-- {name}:start -->\n).*?(\n<!-- {name}:end -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"README.md has no <!-- {name}:start/end --> block")
        text = pattern.sub(lambda m, build=build: m.group(1) + build() + m.group(2), text)
    return text


def main() -> int:
    README.write_text(render(README.read_text()))
    print(f"updated {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
