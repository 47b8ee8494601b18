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
    assert "demo finished in" in lines[-1]
