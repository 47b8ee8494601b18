"""Microsoft 365: users with sign-in activity, MFA registration, directory role holders, Intune managed devices and
Secure Score from Microsoft Graph, as an app registration (client-credentials token, renewed before it expires and on a 401).

A list the tenant is not licensed or permitted for (403, Intune's "not applicable to target tenant", Intune's 401
"Forbidden") skips that asset with the reason; the other assets continue, and no backup is served for it.

The package: client.py (settings and the Graph session with its token), pulls.py; the declaration is here.
"""

from __future__ import annotations

from ...collection.columns import col
from ..base import DatasetSpec, Source
from .client import DEFAULT_GRAPH_ENDPOINT, DEFAULT_LOGIN_ENDPOINT, RENEW_MARGIN, GraphSession, Microsoft365Resource
from .pulls import USER_FIELDS, _collect, graph_pages, pull_directory_roles

__all__ = [
    "DEFAULT_GRAPH_ENDPOINT",
    "DEFAULT_LOGIN_ENDPOINT",
    "RENEW_MARGIN",
    "SOURCE",
    "USER_FIELDS",
    "GraphSession",
    "Microsoft365Resource",
    "graph_pages",
    "pull_directory_roles",
]


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
            # Graph counts the users first ($count=true, ConsistencyLevel: eventual): the checks compare the upload.
            pull=_collect("v1.0/users", {"$select": ",".join(USER_FIELDS), "$top": 120}, count=True),
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
            # Intune reports @odata.count on every page unasked, but it can lag the listing by one
            # (msgraph-sdk-powershell#1819: 949 reported, 948 listed): compared by the checks, not enforced.
            pull=_collect("v1.0/deviceManagement/managedDevices", report_count=True),
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
