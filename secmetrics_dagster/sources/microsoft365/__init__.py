"""Microsoft 365: users with sign-in activity, MFA registration, directory role holders, Intune managed devices and
Secure Score from Microsoft Graph, as an app registration (client-credentials token, renewed before it expires and on a 401).

A list the tenant is not licensed or permitted for (403, Intune's "not applicable to target tenant", Intune's 401
"Forbidden") skips that asset with the reason; the other assets continue, and no backup is served for it.

The package: client.py (settings and the Graph session with its token), pulls.py; the declaration is here.
"""

from __future__ import annotations

from ..catalog import declare_source
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


# With signInActivity selected Graph serves at most 120 users a page (user-list reference), and Entra's
# inactive-accounts guide says a larger $top fails: ask for exactly 120.
# Graph counts the users first ($count=true, ConsistencyLevel: eventual): the checks compare the upload.
pull_users = _collect("v1.0/users", {"$select": ",".join(USER_FIELDS), "$top": 120}, count=True)

pull_mfa_registration = _collect("v1.0/reports/authenticationMethods/userRegistrationDetails")

# Intune reports @odata.count on every page unasked, but it can lag the listing by one
# (msgraph-sdk-powershell#1819: 949 reported, 948 listed): compared by the checks, not enforced.
pull_managed_devices = _collect("v1.0/deviceManagement/managedDevices", report_count=True)

pull_secure_scores = _collect("v1.0/security/secureScores")

SOURCE = declare_source(__name__, "datasets.yaml", Microsoft365Resource, sandbox_env=_sandbox_env)
