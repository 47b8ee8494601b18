"""Microsoft Graph pulls: paging by @odata.nextLink with one token renewal, licence and permission refusals
turned into skips, and the directory roles' members, read for several roles at once (MICROSOFT365_FANOUT_WORKERS)
and spooled in the roles' order."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Optional

from ...collection.errors import CollectionError, http_status
from ...collection.http import HttpResponse
from ...collection.threads import fan_out
from ..base import DatasetUnavailable, Pull
from .client import GraphSession

USER_FIELDS = (
    "id",
    "displayName",
    "givenName",
    "surname",
    "userPrincipalName",
    "mail",
    "jobTitle",
    "department",
    "employeeId",
    "accountEnabled",
    "userType",
    "createdDateTime",
    "creationType",
    "externalUserState",
    "onPremisesSyncEnabled",
    "onPremisesLastSyncDateTime",
    "lastPasswordChangeDateTime",
    "passwordPolicies",
    "assignedLicenses",
    "signInActivity",
)
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


# What each list needs, for the skip message.
_NEEDS = {
    "v1.0/users": "Entra ID P1/P2 and the AuditLog.Read.All and User.Read.All permissions",
    "v1.0/reports/authenticationMethods/userRegistrationDetails": "Entra ID P1/P2 and the AuditLog.Read.All permission",
    "v1.0/deviceManagement/managedDevices": "an Intune licence and the DeviceManagementManagedDevices.Read.All permission",
    "v1.0/security/secureScores": "the SecurityEvents.Read.All permission",
    "v1.0/directoryRoles": "the RoleManagement.Read.Directory permission",
}


def _unavailable(path: str, exc: CollectionError, error: Mapping[str, str], needs: Optional[str]) -> DatasetUnavailable:
    detail = f"{error.get('code') or 'HTTP ' + str(http_status(exc))}: {error.get('message', '')[:200]}".strip(": ")
    return DatasetUnavailable(
        f"Microsoft Graph refused GET /{path} ({detail}): the tenant is not licensed or the app is not permitted "
        f"for it. It needs {needs or _NEEDS.get(path, 'a licence and permission the app lacks')}; grant them (with "
        "admin consent) to collect this asset"
    )


def _skips(status: Optional[int], error: Mapping[str, str]) -> bool:
    code, message = error.get("code", ""), error.get("message", "")
    if status == 403:
        return True
    if status == 400 and "not applicable to target tenant" in message.lower():
        return True  # Intune without a licence
    # Intune answers a missing permission with a 401 whose nested message says Forbidden.
    return status == 401 and code != "InvalidAuthenticationToken" and "forbidden" in message.lower()


def graph_pages(
    pull: Pull,
    path: str,
    params: Optional[Mapping[str, Any]] = None,
    needs: Optional[str] = None,
    report_count: bool = False,
) -> Iterator[list[dict]]:
    """Each page's `value`, following @odata.nextLink; a lapsed token is renewed once and the page asked again.
    A refusal for licence or permission is DatasetUnavailable naming `needs` (default: what `path` needs).

    With `$top` in `params`, a page shorter than it that still has a next link is asked for again once, then counted
    (http_short_pages). Graph's paging guide allows short pages ("A page of results may contain zero or more
    results", concepts/paging.md in microsoft-graph-docs-contrib), so a page still short is a warning to compare
    with the count, not proof of a loss."""
    http: GraphSession = pull.client
    # Where to start again after a token renewal: the page after the last one yielded.
    where: dict[str, Any] = {"url": path, "params": dict(params or {})}
    top = (params or {}).get("$top")

    def link_of(response: HttpResponse) -> Optional[str]:
        body = response.json()
        link = body.get("@odata.nextLink") if isinstance(body, dict) else None
        return http.follow(link) if link else None

    def next_url(response: HttpResponse) -> Optional[str]:
        link = link_of(response)
        if link:
            http.authorize()
        return link

    def items(response: HttpResponse) -> int:
        body = response.json()
        value = body.get("value") if isinstance(body, dict) else None
        return len(value) if isinstance(value, list) else int(top)

    short = dict(page_size=int(top), items=items) if isinstance(top, int) else {}
    renewed = False
    while True:
        http.authorize()
        try:
            for response in http.iter_pages(where["url"], where["params"], next_url, **short):
                renewed = False
                body = response.json()
                if not isinstance(body, dict) or not isinstance(body.get("value"), list):
                    raise CollectionError(f"Microsoft 365: GET /{path} answered without a `value` list")
                count = body.get("@odata.count")
                if report_count and isinstance(count, int) and not isinstance(count, bool):
                    report_count = False  # the first page's count stands for the listing
                    pull.report_total(count)
                yield body["value"]
                link = link_of(response)
                if link:
                    where.update(url=link, params=None)
            return
        except CollectionError as exc:
            status, error = http_status(exc), dict(http.last_error)
            if status == 401 and error.get("code") == "InvalidAuthenticationToken" and not renewed:
                pull.log.warning(
                    f"Microsoft 365: GET /{path}: the token was refused ({error.get('message')}); "
                    "renewing it and asking again"
                )
                renewed = True
                http.authorize(force=True)
                continue
            if _skips(status, error):
                raise _unavailable(path, exc, error, needs) from exc
            raise


def ask_count(pull: Pull, path: str) -> None:
    """Graph's own count of a directory list, recorded as the reported total the checks compare the upload with.

    Counting directory objects is an advanced query: `$count=true` with the header `ConsistencyLevel: eventual`
    (https://learn.microsoft.com/graph/aad-advanced-queries; without the header Graph ignores `$count` silently).
    It is asked in a request of its own (`$top=1&$select=id`) so the listing itself is not an advanced query: a
    query asked with the advanced parameters is answered "eventually consistent" (same page), and users listed
    that way with signInActivity have come back with it empty (msgraph-sdk-powershell issue 1898). The count is from an index that may lag
    (user-list.md: "a slight delay between when an item is added or updated and when it is available in the
    index"), so a difference warns (record_count_stable), it does not fail the pull."""
    http: GraphSession = pull.client
    http.authorize()
    try:
        body = http.request(
            "GET", path, params={"$count": "true", "$top": 1, "$select": "id"}, headers={"ConsistencyLevel": "eventual"}
        ).json()
    except CollectionError as exc:
        status = http_status(exc)
        if status is None or not 400 <= status < 500:
            raise
        # Advanced queries are not offered everywhere ("not available for Azure AD B2C tenants"): go on uncounted.
        pull.log.warning(f"Microsoft 365: GET /{path} could not be counted ({exc}); the listing is not compared")
        return
    count = body.get("@odata.count") if isinstance(body, dict) else None
    if isinstance(count, int) and not isinstance(count, bool):
        pull.report_total(count)
    else:
        pull.log.warning(f"Microsoft 365: GET /{path}?$count=true answered without @odata.count; not compared")


def _collect(
    path: str, params: Optional[Mapping[str, Any]] = None, report_count: bool = False, count: bool = False
) -> Callable[[Pull], None]:
    """The pull of one Graph list. `report_count`: the list carries @odata.count unasked (Intune); `count`: ask
    Graph to count it first (a directory list, ask_count)."""

    def pull_list(pull: Pull) -> None:
        if count:
            ask_count(pull, path)
        for page in graph_pages(pull, path, params, report_count=report_count):
            pull.spool.extend(page)

    pull_list.__name__ = f"pull_{path.rsplit('/', 1)[-1]}"
    return pull_list


def pull_directory_roles(pull: Pull) -> None:
    """One record per (activated role, member): the member's directoryObject plus the role it holds."""
    listed = (role for page in graph_pages(pull, "v1.0/directoryRoles") for role in page)
    checked = pull.checked_ids("v1.0/directoryRoles", "id", _GUID, "directory role", "an object id (GUID)", listed)
    roles = [role for _id, role in checked]  # every id checked before any role's members are read

    def members(role: dict) -> Optional[list]:
        path = f"v1.0/directoryRoles/{role['id']}/members"
        try:
            return [m for page in graph_pages(pull, path, needs=_NEEDS["v1.0/directoryRoles"]) for m in page]
        except CollectionError as exc:
            if http_status(exc) != 404:
                raise
            return None  # deactivated since the role listing

    # The first role alone: a permission refusal is met once, not once per worker.
    describe = lambda role: f"Microsoft 365: members of directory role {role['id']}"  # noqa: E731
    answers = fan_out(members, roles, pull.resource.fanout_workers, name="graph", describe=describe)
    gone = 0
    for role, found in answers:
        if found is None:
            gone += 1
            continue
        for member in found:
            if isinstance(member, dict):
                # "@odata.type" ("#microsoft.graph.user") holds a dot, which a column path cannot name.
                odata_type = str(member.get("@odata.type") or "")
                member["_principal_type"] = odata_type.rsplit(".", 1)[-1] or None
                member["_role_id"] = role["id"]
                member["_role_template_id"] = role.get("roleTemplateId")
                member["_role_display_name"] = role.get("displayName")
            pull.spool.write(member)
    if gone:
        pull.log.warning(f"Microsoft 365: {gone} directory role(s) disappeared (404) while their members were read")
