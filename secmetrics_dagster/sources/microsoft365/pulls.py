"""Microsoft Graph pulls: paging by @odata.nextLink with one token renewal, licence and permission refusals
turned into skips, and the directory roles' members, read for several roles at once (MICROSOFT365_FANOUT_WORKERS)
and spooled in the roles' order."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Optional

from ...collection.errors import CollectionError, http_status
from ...collection.http import HttpResponse
from ...collection.threads import naming, ordered_map
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
    A refusal for licence or permission is DatasetUnavailable naming `needs` (default: what `path` needs)."""
    http: GraphSession = pull.client
    where: dict[str, Any] = {"url": path, "params": dict(params or {})}

    def next_url(response: HttpResponse) -> Optional[str]:
        body = response.json()
        link = body.get("@odata.nextLink") if isinstance(body, dict) else None
        if not link:
            return None
        where.update(url=http.follow(link), params=None)
        http.authorize()
        return where["url"]

    renewed = False
    while True:
        http.authorize()
        try:
            for response in http.iter_pages(where["url"], where["params"], next_url):
                renewed = False
                body = response.json()
                if not isinstance(body, dict) or not isinstance(body.get("value"), list):
                    raise CollectionError(f"Microsoft 365: GET /{path} answered without a `value` list")
                count = body.get("@odata.count")
                if report_count and isinstance(count, int) and not isinstance(count, bool):
                    report_count = False  # the first page's count stands for the listing
                    pull.report_total(count)
                yield body["value"]
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


def _collect(
    path: str, params: Optional[Mapping[str, Any]] = None, report_count: bool = False
) -> Callable[[Pull], None]:
    def pull_list(pull: Pull) -> None:
        for page in graph_pages(pull, path, params, report_count=report_count):
            pull.spool.extend(page)

    pull_list.__name__ = f"pull_{path.rsplit('/', 1)[-1]}"
    return pull_list


def pull_directory_roles(pull: Pull) -> None:
    """One record per (activated role, member): the member's directoryObject plus the role it holds."""
    roles = [role for page in graph_pages(pull, "v1.0/directoryRoles") for role in page]
    for role in roles:
        role_id = str(role.get("id", "")) if isinstance(role, dict) else ""
        if not _GUID.fullmatch(role_id):  # it goes into a URL path
            raise CollectionError(f"Microsoft 365: directory role id {role_id[:40]!r} is not an object id (GUID)")

    def members(role: dict) -> Optional[list]:
        path = f"v1.0/directoryRoles/{role['id']}/members"
        try:
            return [m for page in graph_pages(pull, path, needs=_NEEDS["v1.0/directoryRoles"]) for m in page]
        except CollectionError as exc:
            if http_status(exc) != 404:
                raise
            return None  # deactivated since the role listing

    failed = naming(lambda role: f"Microsoft 365: members of directory role {role['id']}")
    # The first role alone: a permission refusal is met once, not once per worker.
    answers = itertools.chain(
        ordered_map(members, iter(roles[:1]), 1, failed=failed),
        ordered_map(members, iter(roles[1:]), pull.resource.fanout_workers, name="graph", failed=failed),
    )
    gone = 0
    for role, found in zip(roles, answers):
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
