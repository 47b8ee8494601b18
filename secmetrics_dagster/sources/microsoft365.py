"""Microsoft 365: users with sign-in activity, MFA registration, directory role holders, Intune managed devices and
Secure Score from Microsoft Graph, as an app registration (client-credentials token, renewed before it expires and on a 401).

A list the tenant is not licensed or permitted for (403, Intune's "not applicable to target tenant", Intune's 401
"Forbidden") skips that asset with the reason; the other assets continue, and no backup is served for it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar, Optional
from urllib.parse import urlsplit

from ..collection.columns import col
from ..collection.errors import AuthError, CollectionError, ConfigError, http_status
from ..collection.http import HttpResponse, HttpSession, HttpSettings, normalize_base_url, redact_url
from ..collection.settings import env_setting
from .base import DatasetSpec, DatasetUnavailable, Pull, Source, VendorResource

DEFAULT_LOGIN_ENDPOINT = "https://login.microsoftonline.com"
DEFAULT_GRAPH_ENDPOINT = "https://graph.microsoft.com"
RENEW_MARGIN = 300.0  # seconds before expiry a token is replaced, so no request carries one about to lapse
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
_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,252}$")  # a GUID or a verified domain; it goes into a URL path
_CREDENTIALS = "MICROSOFT365_TENANT_ID, MICROSOFT365_CLIENT_ID and MICROSOFT365_CLIENT_SECRET"


# What each list needs, for the skip message.
_NEEDS = {
    "v1.0/users": "Entra ID P1/P2 and the AuditLog.Read.All and User.Read.All permissions",
    "v1.0/reports/authenticationMethods/userRegistrationDetails": "Entra ID P1/P2 and the AuditLog.Read.All permission",
    "v1.0/deviceManagement/managedDevices": "an Intune licence and the DeviceManagementManagedDevices.Read.All permission",
    "v1.0/security/secureScores": "the SecurityEvents.Read.All permission",
    "v1.0/directoryRoles": "the RoleManagement.Read.Directory permission",
}


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class GraphSession(HttpSession):
    """An HttpSession on Graph that holds the app's client-credentials token and renews it before it lapses."""

    def __init__(self, resource: Microsoft365Resource, settings: HttpSettings, logger: Any = None):
        tenant = (resource.tenant_id or "").strip()
        if not _TENANT.fullmatch(tenant):
            raise ConfigError(f"Microsoft 365: MICROSOFT365_TENANT_ID {tenant[:60]!r} is not a tenant ID or domain")
        try:
            graph = normalize_base_url(resource.graph_endpoint, strip_suffixes=("/v1.0", "/beta"))
            login = normalize_base_url(resource.login_endpoint, strip_suffixes=(f"/{tenant}/oauth2/v2.0/token",))
        except CollectionError as exc:
            raise ConfigError(
                f"Microsoft 365: MICROSOFT365_GRAPH_ENDPOINT or MICROSOFT365_LOGIN_ENDPOINT is not usable: {exc}"
            ) from None
        super().__init__(
            "Microsoft 365",
            graph,
            settings=settings,
            auth_hint=f"Check {_CREDENTIALS}, and that the app registration has the Graph application permissions "
            "with admin consent",
            error_detail=self._error_detail,
            secrets=[resource.client_secret or ""],
            # The token comes from the login host (Entra ID), another origin than Graph's: both are configured.
            trusted_origins=[login],
            logger=logger,
        )
        self.token_url = f"{login}{tenant}/oauth2/v2.0/token"
        self.scope = f"{_origin(graph)}/.default"
        self.client_id = (resource.client_id or "").strip()
        self.client_secret = resource.client_secret or ""
        self.clock: Callable[[], float] = time.monotonic
        self.tokens_issued = 0
        self.last_error: dict[str, str] = {}
        self._renew_at = 0.0

    def _error_detail(self, body: Any) -> Optional[str]:
        """Graph's {"error": {code, message}} and Entra ID's {"error", "error_description"}; the last one is kept."""
        self.last_error = {}
        if isinstance(body, dict):
            error = body.get("error")
            if isinstance(error, dict):
                self.last_error = {"code": str(error.get("code") or ""), "message": str(error.get("message") or "")}
            elif isinstance(error, str):
                self.last_error = {"code": error, "message": str(body.get("error_description") or "")}
        if not self.last_error:
            return None
        return f"{self.last_error['code']}: {self.last_error['message']}".strip(": ")

    def authorize(self, force: bool = False) -> None:
        """Make sure the session carries a token that is not about to expire."""
        if not force and self.clock() < self._renew_at:
            return
        try:
            response = self.request(
                "POST",
                self.token_url,
                data={
                    "grant_type": "client_credentials",
                    "client_id": self.client_id,
                    "client_secret": self.client_secret,
                    "scope": self.scope,
                },
                headers={"Authorization": None},  # the old token has no business at the token endpoint
            )
        except CollectionError as exc:
            if http_status(exc) in (400, 401, 403):
                raise AuthError(
                    f"Microsoft 365: the token request to {redact_url(self.token_url)} was refused "
                    f"({self.last_error.get('code') or exc}: {self.last_error.get('message', '')[:300]}). "
                    f"Check {_CREDENTIALS} (the secret's value, not its ID) and, for national clouds, "
                    "MICROSOFT365_LOGIN_ENDPOINT."
                ) from None
            raise
        body = response.json()
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise CollectionError(
                f"Microsoft 365: the token endpoint {redact_url(self.token_url)} answered without an access_token"
            )
        try:
            lifetime = float(body.get("expires_in", 3599))
        except (TypeError, ValueError):
            lifetime = 3599.0
        self._renew_at = self.clock() + lifetime - min(RENEW_MARGIN, lifetime / 2)
        self.session.headers["Authorization"] = f"Bearer {token}"
        self.secrets = tuple(self.secrets) + (token,)
        self.tokens_issued += 1

    def follow(self, link: str) -> str:
        """An @odata.nextLink as given; one on another host is re-rooted here, so the token never goes elsewhere."""
        if _origin(link) == _origin(self.base_url):
            return link
        path = urlsplit(link)
        for version in ("/v1.0/", "/beta/"):
            at = path.path.find(version)
            if at >= 0:
                return self.base_url + path.path[at + 1 :] + (f"?{path.query}" if path.query else "")
        raise CollectionError(f"Microsoft 365: unexpected @odata.nextLink {redact_url(link)}")


class Microsoft365Resource(VendorResource):
    """The Graph app registration. The client secret enters config only as an EnvVar reference."""

    settings_title: ClassVar[str] = "Microsoft 365"

    tenant_id: Optional[str] = env_setting(
        "MICROSOFT365_TENANT_ID", "Directory (tenant) ID, or a verified domain, of the app registration.", required=True
    )
    client_id: Optional[str] = env_setting(
        "MICROSOFT365_CLIENT_ID",
        "Application (client) ID of the app registration. Graph application "
        "permissions with admin consent: User.Read.All, AuditLog.Read.All, "
        "DeviceManagementManagedDevices.Read.All, SecurityEvents.Read.All, RoleManagement.Read.Directory.",
        required=True,
    )
    client_secret: Optional[str] = env_setting(
        "MICROSOFT365_CLIENT_SECRET",
        "Client secret value (not its ID) of the app registration.",
        required=True,
        secret=True,
    )
    login_endpoint: str = env_setting(
        "MICROSOFT365_LOGIN_ENDPOINT",
        "Entra ID token host; national clouds: `https://login.microsoftonline.us`, `https://login.chinacloudapi.cn`.",
        DEFAULT_LOGIN_ENDPOINT,
    )
    graph_endpoint: str = env_setting(
        "MICROSOFT365_GRAPH_ENDPOINT",
        "Graph host (also the token's scope); national clouds: "
        "`https://graph.microsoft.us`, `https://dod-graph.microsoft.us`, "
        "`https://microsoftgraph.chinacloudapi.cn`.",
        DEFAULT_GRAPH_ENDPOINT,
    )

    def client(self, settings: HttpSettings, logger: Any = None) -> GraphSession:
        return GraphSession(self, settings, logger)


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
    pull: Pull, path: str, params: Optional[Mapping[str, Any]] = None, needs: Optional[str] = None
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


def _collect(path: str, params: Optional[Mapping[str, Any]] = None) -> Callable[[Pull], None]:
    def pull_list(pull: Pull) -> None:
        for page in graph_pages(pull, path, params):
            pull.spool.extend(page)

    pull_list.__name__ = f"pull_{path.rsplit('/', 1)[-1]}"
    return pull_list


def pull_directory_roles(pull: Pull) -> None:
    """One record per (activated role, member): the member's directoryObject plus the role it holds."""
    roles = [role for page in graph_pages(pull, "v1.0/directoryRoles") for role in page]
    gone = 0
    for role in roles:
        role_id = str(role.get("id", "")) if isinstance(role, dict) else ""
        if not _GUID.fullmatch(role_id):  # it goes into a URL path
            raise CollectionError(f"Microsoft 365: directory role id {role_id[:40]!r} is not an object id (GUID)")
        path = f"v1.0/directoryRoles/{role_id}/members"
        try:
            for page in graph_pages(pull, path, needs=_NEEDS["v1.0/directoryRoles"]):
                for member in page:
                    if isinstance(member, dict):
                        # "@odata.type" ("#microsoft.graph.user") holds a dot, which a column path cannot name.
                        odata_type = str(member.get("@odata.type") or "")
                        member["_principal_type"] = odata_type.rsplit(".", 1)[-1] or None
                        member["_role_id"] = role_id
                        member["_role_template_id"] = role.get("roleTemplateId")
                        member["_role_display_name"] = role.get("displayName")
                    pull.spool.write(member)
        except CollectionError as exc:
            if http_status(exc) != 404:
                raise
            gone += 1  # deactivated since the role listing
    if gone:
        pull.log.warning(f"Microsoft 365: {gone} directory role(s) disappeared (404) while their members were read")


def _sandbox_env(url: str, token: str) -> dict[str, str]:
    """Variables that point this source at the bundled sandbox (make demo, benchmarks)."""
    return {
        "MICROSOFT365_TENANT_ID": "8b1c3d2e-5f4a-4b6c-9d7e-0f1a2b3c4d5e",
        "MICROSOFT365_CLIENT_ID": "3f2e1d0c-9b8a-4765-8432-10fedcba9876",
        "MICROSOFT365_CLIENT_SECRET": token,
        "MICROSOFT365_LOGIN_ENDPOINT": url,
        "MICROSOFT365_GRAPH_ENDPOINT": url,
    }


SOURCE = Source(
    group="microsoft365",
    title="Microsoft 365",
    docs_url="https://learn.microsoft.com/graph/api/overview",
    resource=Microsoft365Resource,
    datasets=(
        DatasetSpec(
            "microsoft365_users",
            "Users",
            "Every user (members and guests, enabled or not) with the properties posture metrics use, "
            "signInActivity included (needs Entra ID P1/P2 and AuditLog.Read.All; skipped without them).",
            "GET /v1.0/users?$select=…,signInActivity",
            # With signInActivity selected Graph serves at most 120 users a page (user-list reference), and Entra's
            # inactive-accounts guide says a larger $top fails: ask for exactly 120.
            pull=_collect("v1.0/users", {"$select": ",".join(USER_FIELDS), "$top": 120}),
            required_fields=("id", "userPrincipalName", "accountEnabled", "userType"),
            columns=(
                col("id", "text", "User object id (registration `id`, devices' `user_id`, role members' `id`)."),
                col("userPrincipalName", "text", "Sign-in name (UPN); a guest's carries #EXT#."),
                col("displayName", "text", "Display name."),
                col("mail", "text", "Primary SMTP address."),
                col("accountEnabled", "boolean", "The account can sign in."),
                col("userType", "text", "Member or Guest."),
                col("createdDateTime", "timestamp", "When the user was created."),
                col("creationType", "text", "How the account was created (Invitation for invited guests, ...)."),
                col("externalUserState", "text", "A guest's invitation state: PendingAcceptance or Accepted."),
                col("jobTitle", "text", "Job title."),
                col("department", "text", "Department."),
                col("employeeId", "text", "Employee id (HR join key)."),
                col("onPremisesSyncEnabled", "boolean", "Synchronized from on-premises Active Directory."),
                col("onPremisesLastSyncDateTime", "timestamp", "Last synchronization from on-premises."),
                col("lastPasswordChangeDateTime", "timestamp", "Last password change."),
                col("passwordPolicies", "text", "Password policies (DisablePasswordExpiration, ...)."),
                col("assignedLicenses", "json", "Licences assigned (skuId, disabledPlans)."),
                col(
                    "signInActivity.lastSignInDateTime",
                    "timestamp",
                    "Last interactive sign-in, successful or not (NULL: no sign-in recorded): dormant-account metrics.",
                ),
                col(
                    "signInActivity.lastNonInteractiveSignInDateTime",
                    "timestamp",
                    "Last non-interactive sign-in (a client signing in for the user); 0001-01-01 means never.",
                ),
                col("signInActivity.lastSuccessfulSignInDateTime", "timestamp", "Last successful sign-in."),
            ),
        ),
        DatasetSpec(
            "microsoft365_mfa_registration",
            "MFA registration",
            "Per user: registered authentication methods, MFA/SSPR/passwordless capability, admin flag "
            "(needs Entra ID P1/P2 and AuditLog.Read.All; skipped without them).",
            "GET /v1.0/reports/authenticationMethods/userRegistrationDetails",
            pull=_collect("v1.0/reports/authenticationMethods/userRegistrationDetails"),
            required_fields=("id", "userPrincipalName", "isMfaRegistered", "methodsRegistered"),
            columns=(
                col("id", "text", "User object id (join to microsoft365_users.id)."),
                col("userPrincipalName", "text", "Sign-in name (UPN)."),
                col("userDisplayName", "text", "Display name."),
                col("userType", "text", "member or guest."),
                col("isAdmin", "boolean", "The user holds an admin (directory) role."),
                col("isMfaRegistered", "boolean", "Registered a method that can do MFA: the MFA-coverage metric."),
                col("isMfaCapable", "boolean", "Registered for a strong method the policy allows."),
                col(
                    "isPasswordlessCapable", "boolean", "Registered a passwordless method (FIDO2, Windows Hello, ...)."
                ),
                col("isSsprRegistered", "boolean", "Registered for self-service password reset."),
                col("isSsprEnabled", "boolean", "Allowed to use self-service password reset."),
                col("isSsprCapable", "boolean", "Registered and allowed to use self-service password reset."),
                col(
                    "methodsRegistered",
                    "json",
                    "Methods registered (microsoftAuthenticatorPush, fido2, mobilePhone, ...).",
                ),
                col("systemPreferredAuthenticationMethods", "json", "The methods Entra prefers for the user."),
                col("userPreferredMethodForSecondaryAuthentication", "text", "The method the user chose as default."),
                col("lastUpdatedDateTime", "timestamp", "When the report row was last refreshed."),
            ),
        ),
        DatasetSpec(
            "microsoft365_directory_roles",
            "Directory role holders",
            "One record per (activated Entra directory role, member): the member (user, group or service "
            "principal) plus `_role_id`, `_role_template_id`, `_role_display_name` and `_principal_type`. Direct "
            "members only: a role-assignable group's own members are not expanded (needs "
            "RoleManagement.Read.Directory; skipped without it).",
            "GET /v1.0/directoryRoles, then /v1.0/directoryRoles/{role_id}/members",
            pull=pull_directory_roles,
            required_fields=("id", "_role_id", "_role_template_id", "_principal_type"),
            columns=(
                col("id", "text", "Member's object id (join to microsoft365_users.id for users)."),
                col("_principal_type", "text", "user, group or servicePrincipal (from the member's @odata.type)."),
                col("_role_id", "text", "The tenant's directoryRole object id."),
                col(
                    "_role_template_id",
                    "text",
                    "Built-in role template id, the same in every tenant (Global Administrator: "
                    "62e90394-69f5-4237-9190-012177145e10).",
                ),
                col("_role_display_name", "text", "Role name (Global Administrator, Security Reader, ...)."),
                col("userPrincipalName", "text", "A user member's sign-in name."),
                col("displayName", "text", "Member's display name."),
                col("mail", "text", "Member's mail address."),
                col("appId", "text", "A service principal member's application id."),
            ),
        ),
        DatasetSpec(
            "microsoft365_managed_devices",
            "Intune managed devices",
            "Every Intune-managed device with compliance state, encryption, OS version and last sync "
            "(needs Intune and DeviceManagementManagedDevices.Read.All; skipped without them).",
            "GET /v1.0/deviceManagement/managedDevices",
            pull=_collect("v1.0/deviceManagement/managedDevices"),
            required_fields=("id", "complianceState", "operatingSystem", "lastSyncDateTime"),
            allow_empty=True,
            columns=(
                col("id", "text", "Intune device id."),
                col("userId", "text", "Primary user (join to microsoft365_users.id)."),
                col("userPrincipalName", "text", "Primary user's sign-in name."),
                col("deviceName", "text", "Device name."),
                col("serialNumber", "text", "Hardware serial number (join to Falcon hosts' serial number)."),
                col("azureADDeviceId", "text", "Entra device id."),
                col("operatingSystem", "text", "Windows, macOS, iOS, Android, ..."),
                col("osVersion", "text", "Operating system version."),
                col("complianceState", "text", "compliant, noncompliant, inGracePeriod, configManager, unknown, ..."),
                col("isEncrypted", "boolean", "Storage encrypted (BitLocker, FileVault, ...)."),
                col("lastSyncDateTime", "timestamp", "Last check-in with Intune: stale-device metrics."),
                col("enrolledDateTime", "timestamp", "When the device enrolled."),
                col("managedDeviceOwnerType", "text", "company or personal."),
                col("managementAgent", "text", "mdm, eas, configurationManagerClientMdm, ..."),
                col(
                    "deviceEnrollmentType",
                    "text",
                    "How the device enrolled (windowsAzureADJoin, appleBulkWithUser, ...).",
                ),
                col("jailBroken", "text", "True, False or Unknown."),
                col("isSupervised", "boolean", "An Apple device under supervision."),
                col("model", "text", "Model."),
                col("manufacturer", "text", "Manufacturer."),
                col("partnerReportedThreatState", "text", "Threat state a Mobile Threat Defense partner reports."),
                col("complianceGracePeriodExpirationDateTime", "timestamp", "End of the compliance grace period."),
            ),
        ),
        DatasetSpec(
            "microsoft365_secure_scores",
            "Secure Score history",
            "The tenant's daily Microsoft Secure Score snapshots (newest first) with per-control scores "
            "(needs SecurityEvents.Read.All; skipped without it).",
            "GET /v1.0/security/secureScores",
            pull=_collect("v1.0/security/secureScores"),
            required_fields=("id", "currentScore", "maxScore", "createdDateTime"),
            allow_empty=True,
            columns=(
                col("id", "text", "Snapshot id (tenant id and date)."),
                col("azureTenantId", "text", "Tenant id."),
                col("createdDateTime", "timestamp", "When the snapshot was taken (daily)."),
                col("currentScore", "float", "Secure Score points achieved."),
                col("maxScore", "float", "Points possible."),
                col("activeUserCount", "integer", "Active users that day."),
                col("licensedUserCount", "integer", "Licensed users that day."),
                col("enabledServices", "json", "Microsoft 365 services the tenant uses."),
                col("controlScores", "json", "Per-control scores (controlName, controlCategory, score)."),
                col("averageComparativeScores", "json", "Average scores of comparable tenants."),
            ),
        ),
    ),
    sandbox_env=_sandbox_env,
)
