"""`make demo`'s job: sandbox + every asset via the dagster CLI into ./data, with a summary table."""

import json


def test_demo_materializes_every_asset_into_local_files_and_duckdb(demo_run):
    tmp_path, done = demo_run
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    table = {line.split()[0]: line.split()[1] for line in lines if line.startswith("snyk_")}
    assert table == {
        "snyk_organizations": "3",
        "snyk_members": table["snyk_members"],
        "snyk_projects": "75",
        "snyk_issues": "600",
    }
    issues = json.loads((tmp_path / "data/source/snyk_issues/default.json").read_text())
    assert issues["metadata"]["records"] == 600 and issues["metadata"]["tenancy"] == "default"
    assert (tmp_path / "data/database.duckdb").exists()
    scorecard = next(i for i, line in enumerate(lines) if line.startswith("scorecard "))
    assert lines[scorecard].endswith("(tenancy default):") and lines[scorecard + 1].split()[0] == "overall"
    worst = lines.index("worst metrics:")
    assert worst > scorecard + 1 and len([line for line in lines[worst + 1 : worst + 4] if line.startswith("  ")]) == 3
    assert "demo finished in" in lines[-1]
