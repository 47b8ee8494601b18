"""The three Falcon pulls: hosts (ids, then details in concurrent batches), Spotlight vulnerabilities, and the Zero
Trust assessment of every host."""

from __future__ import annotations

from ...collection.threads import ordered_map
from ..base import Pull
from .api import DEVICE_DETAILS, VENDOR, ZTA, body_list, describe, errors
from .client import FalconClient
from .paging import agent_id_batches, host_id_batches, vulnerability_pages


def pull_hosts(pull: Pull) -> None:
    client: FalconClient = pull.client

    def details(ids: list[str]) -> list[dict]:
        body = client.call(DEVICE_DETAILS, missing_ok=True, ids=ids)
        resources = body_list(body, DEVICE_DETAILS)
        if len(resources) != len(ids):
            pull.log.warning(
                f"{VENDOR}: {DEVICE_DETAILS.path} returned {len(resources)} of {len(ids)} hosts ({describe(body)})"
            )
        return resources

    batches = host_id_batches(pull, client)
    for resources in ordered_map(details, batches, pull.resource.workers, name="falcon"):
        pull.spool.extend(resources)


def pull_vulnerabilities(pull: Pull) -> None:
    for page in vulnerability_pages(pull, pull.client):
        pull.spool.extend(page)


def pull_zero_trust_assessment(pull: Pull) -> None:
    client: FalconClient = pull.client

    def assessments(ids: list[str]) -> tuple[list[dict], int]:
        body = client.call(ZTA, missing_ok=True, ids=ids)
        return body_list(body, ZTA), len(errors(body))

    missing = 0
    batches = agent_id_batches(pull, pull.resource.zta_batch)
    for resources, not_found in ordered_map(assessments, batches, pull.resource.workers, name="falcon"):
        pull.spool.extend(resources)
        missing += not_found
    if missing:
        pull.log.warning(
            f"{VENDOR}: {missing} host(s) have no Zero Trust assessment (Falcon answered 404 for them); "
            "hosts whose sensor does not report ZTA are normal here."
        )
