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
    """Every upstream host's assessment, in batches of ids. Falcon answers each id with an assessment or a 404 in
    errors[] (falconpy's get_assessment): a batch that accounts for fewer ids than it asked for is asked for once
    more and the fuller answer used; still short, the ids are counted (http_short_pages) and warned about, and the
    hosts that should have an assessment go to record_count_stable as the reported total."""
    client: FalconClient = pull.client

    def accounted(answer: tuple[list[dict], int]) -> int:
        return len(answer[0]) + answer[1]

    def assessments(ids: list[str]) -> tuple[list[dict], int, int]:
        body = client.call(ZTA, missing_ok=True, ids=ids)
        answer = body_list(body, ZTA), len(errors(body))
        if accounted(answer) < len(ids):
            again = client.call(ZTA, missing_ok=True, ids=ids)
            second = body_list(again, ZTA), len(errors(again))
            answer = second if accounted(second) > accounted(answer) else answer
            if accounted(answer) < len(ids):
                client.retrier.count("short_pages")
        return answer[0], answer[1], len(ids) - accounted(answer)

    missing = unanswered = 0
    batches = agent_id_batches(pull, pull.resource.zta_batch)
    for resources, not_found, lost in ordered_map(assessments, batches, pull.resource.workers, name="falcon"):
        pull.spool.extend(resources)
        missing += not_found
        unanswered += lost
        pull.report_total(len(resources) + lost)
    if missing:
        pull.log.warning(
            f"{VENDOR}: {missing} host(s) have no Zero Trust assessment (Falcon answered 404 for them); "
            "hosts whose sensor does not report ZTA are normal here."
        )
    if unanswered:
        pull.log.warning(
            f"{VENDOR}: {ZTA.path} answered neither an assessment nor a 404 for {unanswered} host(s) (twice): their "
            "assessments would be missing from this collection (counted as http_short_pages; record_count_stable "
            "compares the hosts with the assessments stored)"
        )
