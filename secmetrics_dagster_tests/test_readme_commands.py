"""The README's quick-start and UI commands are the ones the tests run, and `make demo` prints what the README shows.

Where each block is executed: `make demo` by the session fixture `demo_run` (the program its recipe runs, checked
below), `make dev` and `make dev SANDBOX=0` by test_dev_ui.py, the SQL by test_readme_queries.py; `make test` is
the command that runs all of them (test_docs.py checks CI runs it)."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
VENV = Path(sys.executable).parent.parent


def _bash_block_after(heading: str) -> list[str]:
    section = README[README.index(heading) :]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, f"no bash block under {heading!r}"
    return [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.strip()]


def _dry_run(target: str) -> list[str]:
    done = subprocess.run(
        ["make", "-n", "-s", target, f"VENV={VENV}", "-o", f"{VENV}/.installed"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_make_demo_runs_the_program_the_demo_fixture_runs():
    assert _dry_run("demo") == [f"{VENV}/bin/python -m secmetrics_dagster.demo"]


def test_make_demo_prints_the_rows_the_readme_shows(demo_run):
    workdir, done = demo_run
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    shown = re.search(r"`make demo` prints what it wrote:\n\n```\n(.*?)```", README, re.S)
    assert shown, "the README no longer shows make demo's output"
    # The demo may print paths under its working directory; the README shows them from the repository root.
    printed = {" ".join(line.replace(f"{workdir}/", "").split()) for line in done.stdout.splitlines()}
    for line in shown.group(1).splitlines():
        if line.strip() and line.strip() != "...":
            assert " ".join(line.split()) in printed, line


def test_the_readmes_ui_commands_are_the_ones_test_dev_ui_runs():
    assert _bash_block_after("## Running the UI") == ["make dev", "make dev SANDBOX=0"]
    tests = (ROOT / "secmetrics_dagster_tests/test_dev_ui.py").read_text()
    assert '["make", "dev",' in tests and '"SANDBOX=0"' in tests
