"""A running Dagster webserver seen through its GraphQL API, as the UI sees it: the code location, launching runs
of assets (with their checks) or of a job, and waiting for a run to finish."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

import requests

FINISHED = ("SUCCESS", "FAILURE", "CANCELED")
_LAUNCH = """mutation($params: ExecutionParams!) { launchPipelineExecution(executionParams: $params) {
    __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
    ... on InvalidSubsetError { message } ... on RunConfigValidationInvalid { errors { message } } } }"""


class Webserver:
    """Subclasses give `url` and `logs()` (what a failure message shows)."""

    url: str

    def logs(self) -> str:
        raise NotImplementedError

    def graphql(self, query: str, **variables) -> dict:
        response = requests.post(f"{self.url}/graphql", json={"query": query, "variables": variables}, timeout=60)
        response.raise_for_status()
        body = response.json()
        assert "errors" not in body, body["errors"]
        return body["data"]

    def location(self) -> tuple[str, str]:
        """(code location, repository) of the project's Definitions: the one with the `collect_all` job."""
        data = self.graphql("""{ repositoriesOrError { ... on RepositoryConnection {
            nodes { name location { name } pipelines { name } } } } }""")
        [repo] = [
            n for n in data["repositoriesOrError"]["nodes"] if any(p["name"] == "collect_all" for p in n["pipelines"])
        ]
        return repo["location"]["name"], repo["name"]

    def launch(
        self,
        job: str = "__ASSET_JOB",
        *,
        assets: Sequence[str] = (),
        checks: Iterable[tuple[str, str]] = (),
        run_config: str = "{}",
    ) -> str:
        """Launch `job` (the asset job: `assets` with the checks `(asset, check name)`) as the UI's Materialize
        button does; the run id."""
        location, repository = self.location()
        selector: dict = {"repositoryLocationName": location, "repositoryName": repository, "pipelineName": job}
        if assets:
            selector["assetSelection"] = [{"path": [tag]} for tag in assets]
            selector["assetCheckSelection"] = [{"assetKey": {"path": [tag]}, "name": name} for tag, name in checks]
        params = {
            "selector": selector,
            "mode": "default",
            "runConfigData": run_config,
            "executionMetadata": {"tags": []},
        }
        launched = self.graphql(_LAUNCH, params=params)["launchPipelineExecution"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        return launched["run"]["runId"]

    def run(self, run_id: str) -> dict:
        return self.graphql(
            """query($id: ID!) { runOrError(runId: $id) { __typename
            ... on Run { runId status jobName tags { key value } } } }""",
            id=run_id,
        )["runOrError"]

    def wait_for(self, run_id: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.run(run_id)
            if run.get("status") in FINISHED:
                return run
            time.sleep(1)
        raise AssertionError(f"run {run_id} did not finish within {timeout:.0f}s: {run}\n{self.logs()[-5000:]}")
