"""The package's layers point down only, and vendor modules stay small (issue 9).

Every `import` and `from … import` in secmetrics_dagster/ is read with ast, lazy ones inside functions included, and
resolved to the top-level part it names (collection, stores, sources, assets, …).
"""

import ast
import collections
import pathlib

import secmetrics_dagster
from secmetrics_dagster.sources import SOURCES, Source

PACKAGE = pathlib.Path(secmetrics_dagster.__file__).parent

# Each part may import only parts of a lower rank. Sources and stores sit side by side and never see each other;
# the sandbox (a test double of the vendors) may read the sources' constants, nothing reads the sandbox but the demo.
RANK = {
    "collection": 0,
    "sources": 1,
    "stores": 1,
    "sandbox": 2,
    "assets": 2,
    "automation": 3,
    "metrics": 3,
    "definitions": 4,
    "docs": 4,
    "demo": 5,
    "entrypoint": 5,
    "instance": 0,
    "__init__": 4.5,  # the package root: `defs`, built lazily from definitions
}
MAX_VENDOR_MODULE_LINES = 350


def _part(dotted: str) -> str:
    parts = dotted.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def import_edges() -> dict[tuple[str, str], list[str]]:
    """(importing part, imported part) → the files that make that edge."""
    edges: dict[tuple[str, str], list[str]] = collections.defaultdict(list)
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        package = parts[:-1]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                base = package[: len(package) - node.level + 1] if node.level else []
                names = [".".join(base + ([node.module] if node.module else []))]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                if name.split(".")[0] == "secmetrics_dagster":
                    a, b = _part(".".join(parts)), _part(name)
                    if a != b:
                        edges[(a, b)].append(str(path.relative_to(PACKAGE)))
    return edges


def test_the_import_reader_sees_relative_lazy_and_absolute_imports():
    edges = import_edges()
    assert ("sources", "collection") in edges  # relative, at module level
    assert ("definitions", "sources") in edges
    assert ("entrypoint", "definitions") in edges  # absolute, inside a function
    assert set(_part(f"secmetrics_dagster.{p.stem}") for p in PACKAGE.iterdir() if p.suffix == ".py") <= set(RANK)
    assert {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()} <= set(RANK)


def test_layers_only_point_down_sources_and_stores_never_import_automation_or_each_other():
    upward = {f"{a} -> {b}": files for (a, b), files in import_edges().items() if RANK.get(b, 99) >= RANK.get(a, -1)}
    assert upward == {}, "imports that point up or sideways (move the shared code down a layer)"


def test_no_vendor_module_is_over_350_lines():
    sizes = {
        str(path.relative_to(PACKAGE)): len(path.read_text().splitlines())
        for path in (PACKAGE / "sources").rglob("*.py")
    }
    assert len(sizes) >= len(SOURCES) + 2
    assert {name: n for name, n in sizes.items() if n > MAX_VENDOR_MODULE_LINES} == {}


def test_each_vendor_module_exports_one_source_and_nothing_else_by_convention():
    modules = {source.resource.__module__.split(".")[2] for source in SOURCES}
    assert len(modules) == len(SOURCES) == 8
    for name in modules:
        module = __import__(f"secmetrics_dagster.sources.{name}", fromlist=["SOURCE"])
        assert isinstance(module.SOURCE, Source)
        assert [value for value in vars(module).values() if isinstance(value, Source)] == [module.SOURCE]
        assert not hasattr(module, "RESOURCE") and not hasattr(module, "assets")


def test_the_readme_states_the_model_collectors_size_as_it_is():
    """README's "Adding a collector" quotes sources/snyk.py's size; a change that grows the module must say so."""
    import re

    readme = " ".join((PACKAGE.parent / "README.md").read_text().split())  # line breaks fall anywhere
    stated = re.search(r"`sources/snyk\.py` is the model: (\d+) lines for four datasets", readme)
    assert stated, "README's Adding a collector no longer quotes the Snyk module's size"
    source = (PACKAGE / "sources" / "snyk.py").read_text()
    assert int(stated.group(1)) == len(source.splitlines())
    docstrings = set()
    for node in ast.walk(ast.parse(source)):
        body = getattr(node, "body", None)
        if (
            isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
        ):
            docstrings.update(range(body[0].lineno, body[0].end_lineno + 1))
    code = [n for n, line in enumerate(source.splitlines(), 1) if line.strip() and not line.strip().startswith("#")]
    assert f"({len(set(code) - docstrings)} of them code, the rest docstrings, comments and blank lines)" in readme
    snyk = next(source for source in SOURCES if source.group == "snyk")
    columns = sum(len(dataset.columns) for dataset in snyk.datasets)
    assert f"declares the vendor and its four datasets with their {columns} typed, described columns" in readme
