"""Microsoft 365 in the sandbox: the Entra ID client-credentials token endpoint and the Graph v1.0 lists the
collector reads (users with signInActivity, userRegistrationDetails, Intune managedDevices, secureScores, directory
roles and their members).

Modelled on login.microsoftonline.com and graph.microsoft.com: form-posted token requests answered with a signed,
expiring JWT (AADSTS errors otherwise), `{"value": [...], "@odata.nextLink": "<absolute URL with $skiptoken>"}`
pages, `$select`/`$top`, and Graph's `{"error": {"code", "message", "innerError"}}` bodies. Licensing is a volume
option: `premium=0` makes signInActivity and the registration report answer 403
Authentication_RequestFromNonPremiumTenantOrB2CTenant, `intune=0` makes managedDevices answer 400
"Request not applicable to target tenant.". Records are computed from (seed, index) per page; their timestamps count
back from the sandbox's clock (`Microsoft365Volume.now`, default the moment the sandbox is created): most users signed
in within weeks, some dormant or never, about one in eight with no MFA method, a few admins (one without MFA), most
devices checked in within the week.

Sources: the Graph reference in microsoftgraph/microsoft-graph-docs-contrib (api-reference/v1.0/api/user-list.md,
resources/user.md, authenticationmethodsroot-list-userregistrationdetails.md, intune-devices-manageddevice-list.md,
directoryrole-list.md, directoryrole-list-members.md, resources/directoryrole.md, concepts/aad-advanced-queries.md,
concepts/throttling.md; published as https://learn.microsoft.com/en-us/graph/api/user-list,
https://learn.microsoft.com/en-us/graph/api/directoryrole-list and
https://learn.microsoft.com/en-us/graph/api/directoryrole-list-members, which adds that the members listing "returns a
default of 1,000 objects and doesn't support pagination using $top"), Entra's built-in roles reference for the
role templates and public issue threads cited beside each behaviour.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import random
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Optional
from urllib.parse import parse_qsl, quote, urlencode

from .crowdstrike import host_serial
from .okta import person as okta_person
from .okta import user_status as okta_user_status
from .records import VendorApi, check_volume, hash100
from .server import FixedWindowQuota, Request, Response, Router, Vendor, VendorContext, register_vendor, throttled


@dataclass(frozen=True)
class Microsoft365Volume:
    """How much Graph data the sandbox serves and what the tenant is licensed for; int fields are CLI flags."""

    users: int = 50
    devices: int = 40
    score_days: int = 30
    page_size: int = 100  # Graph's default page size when the client sends no $top
    premium: int = 1  # Entra ID P1/P2: signInActivity and userRegistrationDetails; 0 = licence error
    intune: int = 1  # Intune licence: managedDevices; 0 = "Request not applicable to target tenant."
    token_lifetime: int = 3599  # seconds, the expires_in of issued tokens
    # Identity and access (users, directory roles and their members): resource units per `rate_window` seconds per
    # application and tenant, "S: 3500, M:5000, L:8000 per 10 seconds" by tenant size
    # (https://learn.microsoft.com/graph/throttling-limits#identity-and-access-service-limits); every request costs
    # one unit here (the page's per-request costs are not modelled). 0: unlimited.
    rate_limit: int = 3500
    rate_window: int = 10
    # The tenant's "now" (epoch seconds) every generated timestamp counts back from; None: when the sandbox is created.
    now: Optional[float] = None

    def __post_init__(self) -> None:
        counts = ("users", "devices", "score_days", "page_size", "premium", "intune", "token_lifetime", "rate_limit")
        check_volume(self, (*counts, "rate_window"), least={"page_size": 1, "rate_window": 1})


GRAPH_CONTENT_TYPE = (
    "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"
)
TOKEN_CONTENT_TYPE = "application/json; charset=utf-8"
# "Invalid page size specified: '1000'. Must be between 1 and 999 inclusive." is Graph's answer to $top=1000 on
# /users (learn.microsoft.com/en-us/answers/questions/1129204).
MAX_TOP = 999
# "When you specify $select=signInActivity ... the maximum page size is 120 users. Requests with $top set higher than
# 120 will return pages with up to 120 users." (microsoft-graph-docs-contrib api-reference/v1.0/resources/user.md, the
# signInActivity row). Entra's how-to "Manage inactive user accounts" says instead such requests "will fail": the
# sandbox follows the Graph reference; a collector is safest asking for $top=120 itself.
SIGN_IN_ACTIVITY_MAX_TOP = 120
NEVER = "0001-01-01T00:00:00Z"  # Graph's "never" in signInActivity
_TENANT_RE = re.compile(r"^(?:[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}|[A-Za-z0-9][A-Za-z0-9.-]{0,252})$")
DAY = 24 * 3600

# Graph's error body {"error": {"code", "message", "innerError": {"date", "request-id", "client-request-id"}}} as in the
# samples of concepts/aad-advanced-queries.md. The codes per status: 401 InvalidAuthenticationToken (Microsoft365DSC
# issue 4427), 429 TooManyRequests (concepts/throttling.md names the status, not the code: the code is an assumption),
# 403 Authorization_RequestDenied and 404 Request_ResourceNotFound as directory objects answer them (Graph's errors
# page, https://learn.microsoft.com/graph/errors, lists the statuses); messages for 500/503: no source.
_GRAPH_ERRORS: dict[int, tuple[str, str]] = {
    400: ("BadRequest", "Bad request."),
    401: ("InvalidAuthenticationToken", "Access token validation failure."),
    403: ("Authorization_RequestDenied", "Insufficient privileges to complete the operation."),
    404: ("Request_ResourceNotFound", "Resource not found."),
    429: ("TooManyRequests", "Too many requests."),
    500: ("generalException", "An unexpected error occurred."),
    503: ("serviceNotAvailable", "The service is temporarily unavailable. Please try again later."),
}


def graph_error(status: int, code: Optional[str] = None, message: Optional[str] = None) -> Response:
    default_code, default_message = _GRAPH_ERRORS.get(status, ("generalException", f"HTTP {status}"))
    request_id = str(uuid.uuid4())
    body = {
        "error": {
            "code": code or default_code,
            "message": message or default_message,
            "innerError": {
                "date": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()),
                "request-id": request_id,
                "client-request-id": request_id,
            },
        }
    }
    return Response(status, body, content_type=GRAPH_CONTENT_TYPE, headers={"request-id": request_id})


def aad_error(status: int, error: str, code: int, description: str) -> Response:
    # The token endpoint's OAuth error body: error, error_description "AADSTSnnn: ... Trace ID ... Correlation ID ...
    # Timestamp", error_codes, timestamp, trace_id, correlation_id, error_uri; a wrong secret is 401 invalid_client
    # AADSTS7000215 (keycloak issue 31294, BookStackApp/BookStack issue 4089 quote whole answers).
    trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
    stamp = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime())
    body = {
        "error": error,
        "error_description": f"AADSTS{code}: {description} Trace ID: {trace} Correlation ID: {correlation} "
        f"Timestamp: {stamp}",
        "error_codes": [code],
        "timestamp": stamp,
        "trace_id": trace,
        "correlation_id": correlation,
        "error_uri": f"https://login.microsoftonline.com/error?code={code}",
    }
    return Response(status, body, content_type=TOKEN_CONTENT_TYPE)


# -------------------------------------------------------------------------------------------- tokens


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class _Tokens:
    """Issues and checks HS256 JWTs; the key is derived from the sandbox seed and secret, so nothing is stored."""

    def __init__(self, seed: int, secret: str, lifetime: int, clock: Callable[[], float] = time.time):
        self.key = hashlib.sha256(f"{seed}:microsoft365:{secret}".encode()).digest()
        self.lifetime = lifetime
        self.clock = clock

    def issue(self, tenant: str, client_id: str, audience: str) -> str:
        now = int(self.clock())
        header = {"typ": "JWT", "alg": "HS256", "kid": "sandbox"}
        claims = {
            "aud": audience,
            "iss": f"https://sts.windows.net/{tenant}/",
            "iat": now,
            "nbf": now,
            "exp": now + self.lifetime,
            "appid": client_id,
            "tid": tenant,
            "idtyp": "app",
            "roles": [
                "User.Read.All",
                "AuditLog.Read.All",
                "DeviceManagementManagedDevices.Read.All",
                "SecurityEvents.Read.All",
                "RoleManagement.Read.Directory",
            ],
            "jti": uuid.uuid4().hex,
        }
        signing = _b64url(json.dumps(header).encode()) + "." + _b64url(json.dumps(claims).encode())
        return signing + "." + _b64url(hmac.new(self.key, signing.encode(), hashlib.sha256).digest())

    def check(self, authorization: Optional[str]) -> Optional[str]:
        """None when the bearer token is valid, else Graph's message for why not.

        An expired token: 401 InvalidAuthenticationToken "Lifetime validation failed, the token is expired."
        (Microsoft365DSC issue 4427; newer answers say "Access token has expired or is not yet
        valid.", microsofthackathons/tdi issue 24). Other messages: no source, Graph's IDX-style wording assumed.
        """
        scheme, _, token = (authorization or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return "Access token is empty."
        parts = token.strip().split(".")
        if len(parts) != 3:
            return "IDX14100: JWT is not well formed, there are no dots (.)."
        signing = f"{parts[0]}.{parts[1]}"
        try:
            signature = _b64url_decode(parts[2])
            claims = json.loads(_b64url_decode(parts[1]))
        except (binascii.Error, ValueError):
            return "IDX14100: JWT is not well formed."
        if not hmac.compare_digest(signature, hmac.new(self.key, signing.encode(), hashlib.sha256).digest()):
            return "Access token validation failure. Invalid signature."
        if not isinstance(claims, dict) or float(claims.get("exp", 0)) <= self.clock():
            return "Lifetime validation failed, the token is expired."
        return None


# ---------------------------------------------------------------------------------------------- records

_FIRST = [
    "Adele",
    "Alex",
    "Allan",
    "Bianca",
    "Christie",
    "Debra",
    "Diego",
    "Emily",
    "Enrico",
    "Gerhart",
    "Grady",
    "Henrietta",
    "Irvin",
    "Isaiah",
    "Johanna",
    "Joni",
    "Lee",
    "Lidia",
    "Lynne",
    "Megan",
    "Miriam",
    "Nestor",
    "Patti",
    "Pradeep",
]
_LAST = [
    "Vance",
    "Wilber",
    "Deyoung",
    "Pisani",
    "Cline",
    "Berger",
    "Siciliani",
    "Braun",
    "Cattaneo",
    "Moller",
    "Archie",
    "Mueller",
    "Sayers",
    "Langer",
    "Lorenz",
    "Sherman",
    "Gu",
    "Holloway",
    "Robbins",
    "Bowen",
    "Graham",
    "Wilke",
    "Fernandez",
    "Gupta",
]
_DEPARTMENTS = ["Sales", "Marketing", "Finance", "Engineering", "Retail", "Legal", "Operations", "HR", "IT"]
_TITLES = [
    "Marketing Assistant",
    "Retail Manager",
    "Product Manager",
    "Developer",
    "Director",
    "Paralegal",
    "Sales Rep",
    "IT Admin",
    "Accountant",
]
_SKUS = [
    "05e9a617-0261-4cee-bb44-138d3ef5d965",
    "06ebc4ee-1bb5-47dd-8120-11324bc54e06",
    "c7df2760-2c81-4ef7-b578-5b5392b571df",
    "18181a46-0d4e-45cd-891e-60aabd171b4e",
]
_METHODS = [
    "microsoftAuthenticatorPush",
    "softwareOneTimePasscode",
    "mobilePhone",
    "email",
    "fido2",
    "windowsHelloForBusiness",
    "microsoftAuthenticatorPasswordless",
    "temporaryAccessPass",
]
_SYSTEM_PREFERRED = {
    "microsoftAuthenticatorPush": "push",
    "softwareOneTimePasscode": "oath",
    "mobilePhone": "sms",
    "fido2": "Fido2",
    "windowsHelloForBusiness": "windowsHelloForBusiness",
    "microsoftAuthenticatorPasswordless": "push",
    "email": "email",
    "temporaryAccessPass": "none",
}
_DEVICE_KINDS = [
    ("Windows", "10.0.22631.{}", "Microsoft Corporation", "Surface Laptop 5", "windowsAzureADJoin", "company"),
    ("Windows", "10.0.19045.{}", "Dell Inc.", "Latitude 7440", "windowsAutoEnrollment", "company"),
    ("macOS", "14.{}", "Apple", "MacBookPro18,3", "appleBulkWithUser", "company"),
    ("iOS", "17.{}", "Apple", "iPhone 15", "appleUserEnrollment", "personal"),
    ("Android", "14.0.{}", "samsung", "SM-S911B", "androidEnterpriseWorkProfile", "personal"),
]
_COMPLIANCE = ["compliant"] * 14 + ["noncompliant"] * 3 + ["inGracePeriod", "unknown", "configManager"]
_CONTROLS = [
    (
        "Identity",
        "AdminMFAV2",
        "Ensure multifactor authentication is enabled for all users in administrative roles",
        10,
    ),
    ("Identity", "MFARegistrationV2", "Ensure all users can complete multifactor authentication", 9),
    ("Identity", "BlockLegacyAuthentication", "Enable policy to block legacy authentication", 8),
    ("Identity", "SigninRiskPolicy", "Turn on sign-in risk policy", 7),
    ("Identity", "PWAgePolicyNew", "Set the password expiration policy to never expire", 8),
    ("Data", "DLPEnabled", "Data Loss Prevention (DLP) policies can be used to comply with business standards", 20),
    ("Apps", "mdo_safelinksforOfficeApps", "Ensure Safe Links for Office Applications is Enabled", 9),
    ("Apps", "mdo_atpprotection", "Turn on Microsoft Defender for Office 365 in SharePoint, OneDrive and Teams", 8),
    ("Device", "IntuneDeviceEncryption", "Require BitLocker or FileVault on managed devices", 10),
    ("Device", "IntuneComplianceBaseline", "Mark devices with no compliance policy assigned as noncompliant", 5),
]


# Built-in directory roles: (roleTemplateId, displayName, description) as Entra's built-in roles reference lists them
# (https://learn.microsoft.com/entra/identity/role-based-access-control/permissions-reference, "All roles").
DIRECTORY_ROLES = [
    (
        "62e90394-69f5-4237-9190-012177145e10",
        "Global Administrator",
        "Can manage all aspects of Microsoft Entra ID and Microsoft services that use Microsoft Entra identities.",
    ),
    (
        "e8611ab8-c189-46e8-94e1-60213ab1f814",
        "Privileged Role Administrator",
        "Can manage role assignments in Microsoft Entra ID, and all aspects of Privileged Identity Management.",
    ),
    (
        "194ae4cb-b126-40b2-bd5b-6091b380977d",
        "Security Administrator",
        "Can read security information and reports, and manage configuration in Microsoft Entra ID and Office 365.",
    ),
    (
        "fe930be7-5e62-47db-91af-98c3a49a38b1",
        "User Administrator",
        "Can manage all aspects of users and groups, including resetting passwords for limited admins.",
    ),
    (
        "29232cdf-9323-42fd-ade2-1d097af3e4de",
        "Exchange Administrator",
        "Can manage all aspects of the Exchange product.",
    ),
    (
        "729827e3-9c14-49f7-bb1b-9608f156bbb8",
        "Helpdesk Administrator",
        "Can reset passwords for non-administrators and Helpdesk Administrators.",
    ),
    ("3a2c62db-5318-420d-8d74-23affee5d9d5", "Intune Administrator", "Can manage all aspects of the Intune product."),
    (
        "f2ef992c-3afb-46b9-b7cf-a126ee74c451",
        "Global Reader",
        "Can read everything that a Global Administrator can, but not update anything.",
    ),
    (
        "5d6b6bb7-de71-4623-b4af-96380a352509",
        "Security Reader",
        "Can read security information and reports in Microsoft Entra ID and Office 365.",
    ),
    (
        "88d8e3e3-8f55-4a1e-953a-9b9898b8876b",
        "Directory Readers",
        "Can read basic directory information. Commonly used to grant directory read access to applications and "
        "guests.",
    ),
]
_ROLE_WEIGHTS = [3, 1, 3, 4, 3, 6, 3, 4, 3, 0]
# User 0 is the Global Administrator who set the tenant up (security key registered), user 1 a second Global
# Administrator with no authentication method registered (the finding every review looks for); about one user in
# ten holds one or two other roles. Directory Readers is held by an app (a service principal) and Security Reader
# also by a role-assignable group, as directoryRole members can be users, groups and service principals
# (directoryrole-list-members.md: "principals that are assigned to the directory role").
GLOBAL_ADMIN_USER = 0
NO_MFA_ADMIN_USER = 1
_APP_ROLE, _GROUP_ROLE = 9, 8


def directory_roles_of(seed: int, index: int) -> list[int]:
    """Indexes into DIRECTORY_ROLES of the roles user `index` holds."""
    if index in (GLOBAL_ADMIN_USER, NO_MFA_ADMIN_USER):
        return [0]
    if hash100(seed, "microsoft365", "admin", index) >= 10:
        return []
    rng = random.Random(f"{seed}:microsoft365:roles:{index}")
    picks = rng.choices(range(len(DIRECTORY_ROLES)), _ROLE_WEIGHTS, k=rng.choice([1, 1, 2]))
    return sorted(set(picks))


def directory_role_id(seed: int, role: int) -> str:
    """The tenant's directoryRole object id of a role: its own, not the template id."""
    return _guid(random.Random(f"{seed}:microsoft365:directory-role:{role}"))


def make_directory_role(seed: int, role: int) -> dict[str, Any]:
    # directoryRole resource: id, deletedDateTime, description, displayName, roleTemplateId
    # (microsoft-graph-docs-contrib api-reference/v1.0/resources/directoryrole.md; directoryrole-list.md example).
    template, name, description = DIRECTORY_ROLES[role]
    return {
        "id": directory_role_id(seed, role),
        "deletedDateTime": None,
        "description": description,
        "displayName": name,
        "roleTemplateId": template,
    }


def make_role_member(seed: int, member: tuple[str, int]) -> dict[str, Any]:
    """A directoryRole member as Graph lists it: a directoryObject whose "@odata.type" names its type (OData JSON
    format 4.01, section 4.5.3: the type is given where it is not the collection's declared type)."""
    kind, index = member
    if kind == "user":
        first, last, _, upn = _person(seed, index)
        # The user's default properties, as in the directoryrole-list-members.md example.
        return {
            "@odata.type": "#microsoft.graph.user",
            "id": user_id(seed, index),
            "businessPhones": [],
            "displayName": f"{first} {last}",
            "givenName": first,
            "jobTitle": None,
            "mail": upn.lower(),
            "mobilePhone": None,
            "officeLocation": None,
            "preferredLanguage": "en-US",
            "surname": last,
            "userPrincipalName": upn,
        }
    rng = random.Random(f"{seed}:microsoft365:{kind}:{index}")
    if kind == "servicePrincipal":
        return {
            "@odata.type": "#microsoft.graph.servicePrincipal",
            "id": _guid(rng),
            "accountEnabled": True,
            "appId": _guid(rng),
            "appDisplayName": "Contoso HR Sync",
            "displayName": "Contoso HR Sync",
            "servicePrincipalType": "Application",
        }
    return {
        "@odata.type": "#microsoft.graph.group",
        "id": _guid(rng),
        "displayName": "SOC Analysts",
        "mail": None,
        "mailEnabled": False,
        "securityEnabled": True,
        "isAssignableToRole": True,
    }


def role_members(seed: int, users: int) -> dict[int, list[tuple[str, int]]]:
    """Role index -> its members in listing order; a role nobody holds is not activated, so not listed."""
    members: dict[int, list[tuple[str, int]]] = {}
    for index in range(users):
        for role in directory_roles_of(seed, index):
            members.setdefault(role, []).append(("user", index))
    members.setdefault(_APP_ROLE, []).append(("servicePrincipal", 0))
    members.setdefault(_GROUP_ROLE, []).append(("group", 0))
    return dict(sorted(members.items()))


def _guid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _ts(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _ago(now: datetime, rng: random.Random, low_days: float, high_days: float) -> datetime:
    return now - timedelta(seconds=rng.uniform(low_days * DAY, high_days * DAY))


def tenant_id(seed: int) -> str:
    return _guid(random.Random(f"{seed}:microsoft365:tenant"))


def user_id(seed: int, index: int) -> str:
    return _guid(random.Random(f"{seed}:microsoft365:user-id:{index}"))


def _person(seed: int, index: int) -> tuple[str, str, bool, str]:
    rng = random.Random(f"{seed}:microsoft365:person:{index}")
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    guest = index > NO_MFA_ADMIN_USER and rng.random() < 0.1  # the tenant's first admins are its own members
    upn = (
        f"{first.lower()}.{last.lower()}_partner.example#EXT#@contoso.onmicrosoft.com"
        if guest
        else f"{first}{last[0]}{index}@contoso.example"
    )
    return first, last, guest, upn


# Last interactive sign-in bands (by hash): about four in five within four weeks, a tenth between one and three
# months, about one in twelve dormant for more than 100 days, a few never (signInActivity null).
_SIGN_IN_BANDS = [(80, 0, 28), (89, 31, 85), (96, 100, 400)]


def make_user(seed: int, index: int, premium: bool, now: datetime) -> dict[str, Any]:
    rng = random.Random(f"{seed}:microsoft365:user:{index}")
    first, last, guest, upn = _person(seed, index)
    roll = hash100(seed, "microsoft365", "sign-in", index)
    band = next(((low, high) for bound, low, high in _SIGN_IN_BANDS if roll < bound), None)
    sign_in_days = None if band is None else rng.uniform(*band)
    created = _ago(now, rng, (sign_in_days or 0) + 2, (sign_in_days or 0) + 5 * 365)
    synced = not guest and rng.random() < 0.4
    enabled = index <= NO_MFA_ADMIN_USER or rng.random() < 0.9
    if (
        not guest
        and okta_user_status(seed, index) == "DEPROVISIONED"
        and hash100(seed, "microsoft365", "leaver", index) < 50
    ):
        enabled = False  # half the leavers were disabled here too; the others are what deprovisioning metrics find
    # A member's mailbox is the address the company's Okta knows them by (the person of the same index), as where
    # both directories serve one company; the UPN stays the tenant's own. Guests keep their partner address.
    mail = f"{first.lower()}.{last.lower()}@partner.example" if guest else okta_person(seed, index)[2]
    user: dict[str, Any] = {
        "id": user_id(seed, index),
        "displayName": f"{first} {last}",
        "givenName": first,
        "surname": last,
        "userPrincipalName": upn,
        "mail": mail,
        "jobTitle": None if guest else rng.choice(_TITLES),
        "department": None if guest else rng.choice(_DEPARTMENTS),
        "employeeId": None if guest else str(20000 + index),
        "accountEnabled": enabled,
        "userType": "Guest" if guest else "Member",
        "createdDateTime": _ts(created),
        "creationType": "Invitation" if guest else None,
        "externalUserState": rng.choice(["Accepted", "Accepted", "PendingAcceptance"]) if guest else None,
        "onPremisesSyncEnabled": True if synced else None,
        "onPremisesLastSyncDateTime": _ts(now - timedelta(minutes=rng.randint(5, 600))) if synced else None,
        "lastPasswordChangeDateTime": _ts(min(created + timedelta(days=rng.randint(0, 700)), now)),
        "passwordPolicies": rng.choice([None, None, "DisablePasswordExpiration"]),
        "assignedLicenses": [] if guest else [{"disabledPlans": [], "skuId": rng.choice(_SKUS)}],
    }
    if premium:
        last_sign_in = None if sign_in_days is None else now - timedelta(days=sign_in_days)
        non_interactive = None if last_sign_in is None else min(last_sign_in + timedelta(hours=rng.randint(0, 48)), now)
        user["signInActivity"] = (
            None
            if last_sign_in is None
            else {
                "lastSignInDateTime": _ts(last_sign_in),
                "lastSignInRequestId": _guid(rng),
                "lastNonInteractiveSignInDateTime": _ts(non_interactive) if rng.random() < 0.7 else NEVER,
                "lastNonInteractiveSignInRequestId": _guid(rng),
                "lastSuccessfulSignInDateTime": _ts(last_sign_in),
                "lastSuccessfulSignInRequestId": _guid(rng),
            }
        )
    return user


USER_PROPERTIES = frozenset(make_user(0, 0, True, datetime.now(UTC))) | {"signInActivity"}


def has_no_methods(seed: int, index: int) -> bool:
    """No authentication method registered: about one user in eight, a third of the admins, admin 1 always."""
    if index in (GLOBAL_ADMIN_USER, NO_MFA_ADMIN_USER):
        return index == NO_MFA_ADMIN_USER
    return hash100(seed, "microsoft365", "methods", index) < (33 if directory_roles_of(seed, index) else 12)


def make_registration(seed: int, index: int, now: datetime) -> dict[str, Any]:
    rng = random.Random(f"{seed}:microsoft365:registration:{index}")
    first, last, guest, upn = _person(seed, index)
    methods = (
        []
        if has_no_methods(seed, index)
        else sorted(set(rng.choices(_METHODS, [30, 20, 25, 10, 5, 5, 4, 1], k=rng.randint(1, 3))))
    )
    if index == GLOBAL_ADMIN_USER and "fido2" not in methods:
        methods = sorted(methods + ["fido2"])
    mfa = any(m not in ("email", "temporaryAccessPass") for m in methods)
    preferred = next(
        (m for m in methods if m in ("microsoftAuthenticatorPush", "mobilePhone", "softwareOneTimePasscode")), None
    )
    sspr = rng.random() < 0.6 and bool(methods)
    return {
        "id": user_id(seed, index),
        "userPrincipalName": upn,
        "userDisplayName": f"{first} {last}",
        "userType": "guest" if guest else "member",
        # "isAdmin: Indicates whether the user has an admin role in the tenant" (userRegistrationDetails resource,
        # microsoft-graph-docs-contrib resources/userregistrationdetails.md): the directory roles the user holds.
        "isAdmin": bool(directory_roles_of(seed, index)),
        "isSsprRegistered": sspr,
        "isSsprEnabled": sspr and rng.random() < 0.9,
        "isSsprCapable": sspr and rng.random() < 0.8,
        "isMfaRegistered": mfa,
        "isMfaCapable": mfa,
        "isPasswordlessCapable": any(
            m in ("fido2", "windowsHelloForBusiness", "microsoftAuthenticatorPasswordless") for m in methods
        ),
        "lastUpdatedDateTime": _ts(now - timedelta(hours=rng.randint(1, 72))),
        "methodsRegistered": methods,
        "isSystemPreferredAuthenticationMethodEnabled": True,
        "systemPreferredAuthenticationMethods": [_SYSTEM_PREFERRED[m] for m in methods[:1]],
        "userPreferredMethodForSecondaryAuthentication": {
            "microsoftAuthenticatorPush": "push",
            "mobilePhone": "sms",
            "softwareOneTimePasscode": "oath",
        }.get(preferred or "", "none"),
    }


# Last check-in bands of Intune devices (by hash): four in five within a week, one in eight within the month, the
# rest stale for one to four months.
_SYNC_BANDS = [(80, 0, 7), (92, 8, 30), (100, 31, 120)]


def make_device(seed: int, index: int, users: int, now: datetime) -> dict[str, Any]:
    rng = random.Random(f"{seed}:microsoft365:device:{index}")
    os_name, version, maker, model, enrollment, owner = rng.choice(_DEVICE_KINDS)
    owner_index = (index * 7919) % users if users else 0
    first, last, _, upn = _person(seed, owner_index)
    roll = hash100(seed, "microsoft365", "device-sync", index)
    sync_low, sync_high = next((low, high) for bound, low, high in _SYNC_BANDS if roll < bound)
    last_sync = _ago(now, rng, sync_low, sync_high)
    enrolled = _ago(now, rng, sync_high + 1, sync_high + 900)
    serial = "".join(rng.choice("0123456789ABCDEFGHJKLMNPQRSTUVWXYZ") for _ in range(12))
    if os_name in ("Windows", "macOS") and hash100(seed, "microsoft365", "device-falcon", index) < 85:
        # Most computers also run a Falcon sensor: the sandbox's Falcon host of the same index, by serial number
        # (Falcon's hosts `serial_number`, Intune's `serialNumber`); the others have none.
        serial = host_serial(seed, index)
    compliance = rng.choice(_COMPLIANCE)
    name = f"{first.upper()[:3]}-{os_name.upper()[:3]}-{serial[:6]}"
    total = rng.choice([64, 128, 256, 512]) * 1024**3
    return {
        "id": _guid(rng),
        "userId": user_id(seed, owner_index) if users else None,
        "deviceName": name,
        "managedDeviceOwnerType": owner,
        "enrolledDateTime": _ts(enrolled),
        "lastSyncDateTime": _ts(last_sync),
        "operatingSystem": os_name,
        "complianceState": compliance,
        "jailBroken": "Unknown" if os_name in ("Windows", "macOS") else "False",
        "managementAgent": "mdm",
        "osVersion": version.format(rng.randint(1, 3000)),
        "easActivated": os_name in ("iOS", "Android"),
        "easDeviceId": "".join(rng.choice("0123456789ABCDEF") for _ in range(32)),
        "easActivationDateTime": _ts(enrolled) if os_name in ("iOS", "Android") else NEVER,
        "azureADRegistered": True,
        "deviceEnrollmentType": enrollment,
        "activationLockBypassCode": None,
        "emailAddress": upn,
        "azureADDeviceId": _guid(rng),
        "deviceRegistrationState": "registered",
        "deviceCategoryDisplayName": "Unknown",
        "isSupervised": owner == "company" and os_name in ("iOS", "macOS"),
        "exchangeLastSuccessfulSyncDateTime": NEVER,
        "exchangeAccessState": "none",
        "exchangeAccessStateReason": "none",
        "remoteAssistanceSessionUrl": None,
        "remoteAssistanceSessionErrorDetails": None,
        "isEncrypted": compliance == "compliant" or rng.random() < 0.5,
        "userPrincipalName": upn,
        "model": model,
        "manufacturer": maker,
        "imei": "" if os_name in ("Windows", "macOS") else "".join(rng.choice("0123456789") for _ in range(15)),
        "complianceGracePeriodExpirationDateTime": "9999-12-31T23:59:59Z",
        "serialNumber": serial,
        "phoneNumber": "",
        "androidSecurityPatchLevel": (now - timedelta(days=30 + rng.randrange(150))).strftime("%Y-%m-01")
        if os_name == "Android"
        else "",
        "userDisplayName": f"{first} {last}",
        "configurationManagerClientEnabledFeatures": None,
        "wiFiMacAddress": ":".join(f"{rng.randrange(256):02x}" for _ in range(6)),
        "deviceHealthAttestationState": None,
        "subscriberCarrier": "",
        "meid": "",
        "totalStorageSpaceInBytes": total,
        "freeStorageSpaceInBytes": int(total * rng.uniform(0.05, 0.8)),
        "managedDeviceName": f"{upn.split('@')[0]}_{os_name}_{_ts(enrolled)[:10]}",
        "partnerReportedThreatState": "unknown",
        "requireUserEnrollmentApproval": None,
        "managementCertificateExpirationDate": _ts(enrolled + timedelta(days=365)),
        "iccid": None,
        "udid": None,
        "notes": None,
        "ethernetMacAddress": None,
        "physicalMemoryInBytes": 0,
    }


def make_secure_score(seed: int, day: int, users: int, now: datetime) -> dict[str, Any]:
    """Day 0 is the newest (today's, or yesterday's before the daily snapshot): Graph lists them newest first."""
    rng = random.Random(f"{seed}:microsoft365:score:{day}")
    tenant = tenant_id(seed)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    when = midnight - timedelta(days=day + (1 if now < midnight + timedelta(hours=15, minutes=21) else 0))
    controls = [
        {
            "controlCategory": category,
            "controlName": name,
            "description": text,
            "score": float(rng.randint(0, maximum)),
            "scoreInPercentage": 0.0,
            "implementationStatus": "",
            "lastSynced": _ts(when),
        }
        for category, name, text, maximum in _CONTROLS
    ]
    for control, (_, _, _, maximum) in zip(controls, _CONTROLS):
        control["scoreInPercentage"] = round(100.0 * control["score"] / maximum, 2)
    current = sum(c["score"] for c in controls) + 200.0 + (30 - min(day, 30)) * 1.5
    return {
        "id": f"{tenant}_{when.strftime('%Y-%m-%d')}",
        "azureTenantId": tenant,
        "activeUserCount": max(0, users - rng.randint(0, max(1, users // 10))),
        "createdDateTime": _ts(when + timedelta(hours=15, minutes=21)),
        "currentScore": round(current, 2),
        "enabledServices": ["HasExchange", "HasSharePoint", "HasOD4B", "HasMDEP", "HasInTune"],
        "licensedUserCount": users,
        "maxScore": 697.0,
        "averageComparativeScores": [
            {"basis": "AllTenants", "averageScore": round(rng.uniform(30, 45), 2)},
            {
                "basis": "TotalSeats",
                "averageScore": round(rng.uniform(40, 55), 2),
                "seatSizeRangeLowerValue": 1,
                "seatSizeRangeUpperValue": 100,
            },
        ],
        "controlScores": controls,
        "vendorInformation": {
            "provider": "SecureScore",
            "providerVersion": None,
            "subProvider": None,
            "vendor": "Microsoft",
        },
    }


# ------------------------------------------------------------------------------------------------ routes


def _skiptoken(route: str, offset: int) -> str:
    payload = json.dumps({"r": route, "o": offset}, separators=(",", ":")).encode()
    return "RFNwdAIAAQAAA" + _b64url(payload)  # opaque to clients, like Graph's own tokens


def _offset(route: str, token: str) -> Optional[int]:
    if not token.startswith("RFNwdAIAAQAAA"):
        return None
    try:
        data = json.loads(_b64url_decode(token[13:]))
        offset = int(data["o"])
    except (binascii.Error, ValueError, KeyError, TypeError):
        return None
    return offset if data.get("r") == route and offset >= 0 else None


class _AppQuota(FixedWindowQuota):
    """Resource units per application and tenant (the bearer token stands for both) in fixed windows aligned to the
    clock; a spent window answers 429 TooManyRequests with Retry-After in seconds, as
    https://learn.microsoft.com/graph/throttling describes ("a Retry-After header ... the number of seconds to wait").
    Fixed windows are an assumption: the page does not say how the 10 seconds are counted."""

    def take(self, key: str) -> Optional[float]:
        """None within the quota, else the seconds until the window ends."""
        taken = self.count(key)
        return None if taken.allowed else taken.wait


class _GraphApi(VendorApi):
    volume: Microsoft365Volume

    def __init__(self, context: VendorContext, volume: Microsoft365Volume) -> None:
        super().__init__(context, volume)
        self.tokens = _Tokens(context.seed, context.token, volume.token_lifetime)
        self.role_members = role_members(context.seed, volume.users)
        self.identity_quota = _AppQuota(volume.rate_limit, volume.rate_window)

    def identity(self, handler: Callable[[Request], Response]) -> Callable[[Request], Response]:
        """A route of the identity and access service, counted against the app's quota in this tenant."""

        def serve(request: Request) -> Response:
            wait = self.identity_quota.take((request.headers.get("Authorization") or "").strip())
            if wait is not None:
                return throttled(graph_error(429), wait)
            return handler(request)

        return serve

    def error(self, status: int, request: Request) -> Response:
        # Injected faults: Graph's body for Graph routes (a 429 gets Retry-After in seconds from the server, as
        # concepts/throttling.md describes), the OAuth body for the token endpoint (50196 for 5xx: no source).
        if request.route == "microsoft365.token":
            if status in (400, 401):
                return aad_error(status, "invalid_client", 7000215, "Invalid client secret provided.")
            return aad_error(status, "temporarily_unavailable", 50196, "The server is temporarily unavailable.")
        return graph_error(status)

    # token endpoint

    def token(self, request: Request) -> Response:
        # The client-credentials grant of the v2.0 endpoint: a form with grant_type, client_id, client_secret and a
        # scope ending in /.default. A wrong secret is 401 invalid_client AADSTS7000215 (threads cited at aad_error);
        # the other codes (900144 missing parameter, 70003 grant type, 1002012 scope, 90002 tenant) are Entra's AADSTS
        # codes as the error-code reference names them, their statuses (400) not checked against a source here. The
        # answer's token_type, expires_in (3599 s), ext_expires_in and access_token: the client-credentials flow page
        # (https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow).
        tenant = request.params["tenant"]
        form = dict(parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True))
        if not _TENANT_RE.fullmatch(tenant):
            return aad_error(
                400,
                "invalid_request",
                90002,
                f"Tenant '{tenant}' not found. Check to make sure you "
                "have the correct tenant ID and are signing into the "
                "correct cloud.",
            )
        for name in ("grant_type", "client_id", "scope"):
            if not form.get(name):
                return aad_error(
                    400, "invalid_request", 900144, f"The request body must contain the following parameter: '{name}'."
                )
        if form["grant_type"] != "client_credentials":
            return aad_error(
                400,
                "unsupported_grant_type",
                70003,
                f"The app requested an unsupported grant type '{form['grant_type']}'.",
            )
        if not form["scope"].endswith("/.default"):
            return aad_error(
                400,
                "invalid_scope",
                1002012,
                f"The provided value for scope {form['scope']} is not valid. Client credential flows "
                "must have a scope value with /.default suffixed to the resource identifier "
                "(application ID URI).",
            )
        if not hmac.compare_digest(form.get("client_secret", ""), self.secret):
            return aad_error(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is the "
                f"client secret value, not the client secret ID, for a secret added to app "
                f"'{form['client_id']}'.",
            )
        access = self.tokens.issue(tenant, form["client_id"], form["scope"][: -len("/.default")])
        body = {
            "token_type": "Bearer",
            "expires_in": self.volume.token_lifetime,
            "ext_expires_in": self.volume.token_lifetime,
            "access_token": access,
        }
        return Response(200, body, content_type=TOKEN_CONTENT_TYPE, headers={"Cache-Control": "no-store, no-cache"})

    # graph plumbing

    def _authorized(self, request: Request) -> Optional[Response]:
        problem = self.tokens.check(request.headers.get("Authorization"))
        if problem is None:
            return None
        response = graph_error(401, "InvalidAuthenticationToken", problem)
        # The challenge Graph sends with it, as quoted in Microsoft365DSC issue 4427 and microsofthackathons/tdi
        # issue 24 (client_id is Microsoft Graph's well-known application id).
        response.headers["WWW-Authenticate"] = (
            'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", '
            'client_id="00000003-0000-0000-c000-000000000000"'
        )
        return response

    def _list(
        self,
        request: Request,
        entity: str,
        total: int,
        make: Callable[[int], dict],
        properties: Optional[frozenset[str]] = None,
        cap: Optional[int] = None,
        count: str = "none",
        paged: bool = True,
    ) -> Response:
        """One page of a Graph collection. `count` says how the list reports its size in `@odata.count`:
        "advanced" (directory objects: only with `$count=true` and `ConsistencyLevel: eventual`), "always" (Intune
        sends it unasked) or "none". `paged=False`: the whole collection in one answer, without a nextLink.
        """
        denied = self._authorized(request)
        if denied:
            return denied
        size = self.volume.page_size
        raw_top = request.arg("$top")
        if raw_top is not None:
            try:
                size = int(raw_top)
            except ValueError:
                size = 0
            if not 1 <= size <= MAX_TOP:
                return graph_error(
                    400,
                    "Request_BadRequest",
                    f"Invalid page size specified: '{raw_top}'. Must be between 1 and {MAX_TOP} inclusive.",
                )
        if cap:
            size = min(size, cap)
        if not paged:
            size = max(total, 1)  # $top on a list Graph does not page: ignored (no source says how Graph answers)
        selected: Optional[list[str]] = None
        raw_select = request.arg("$select")
        if raw_select is not None and properties is not None:
            selected = [p.strip() for p in raw_select.split(",") if p.strip()]
            unknown = [p for p in selected if p not in properties]
            if unknown:
                return graph_error(
                    400,
                    "Request_BadRequest",
                    f"Could not find a property named '{unknown[0]}' on type 'microsoft.graph.{entity}'.",
                )
        start = 0
        token = request.arg("$skiptoken")
        if token is not None:
            offset = _offset(request.route, token)
            if offset is None:
                return graph_error(400, "Request_BadRequest", "Invalid $skiptoken value.")
            start = min(offset, total)
        end = min(start + size, total)
        records = [make(i) for i in range(start, end)]
        if selected is not None:
            records = [{key: record.get(key) for key in selected} for record in records]
        base = "http://" + (request.headers.get("Host") or "127.0.0.1")
        context = f"{base}/v1.0/$metadata#{request.path[len('/v1.0/') :]}"
        if selected is not None:
            context += f"({','.join(selected)})"
        payload: dict[str, Any] = {"@odata.context": context}
        if self._counts(request, count) and (count == "always" or token is None):
            # The whole collection's size. A directory list's ($count=true) is "present only in the first page of
            # the paged data" (https://learn.microsoft.com/graph/paging, concepts/paging.md in
            # microsoft-graph-docs-contrib); Intune's is on every page (msgraph-sdk-powershell issue 1819).
            payload["@odata.count"] = total
        if end < total:
            # An absolute nextLink that carries the query and an opaque $skiptoken, absent on the last page (Graph's
            # paging guide, https://learn.microsoft.com/graph/paging, linked from user-list.md; the nextLinks quoted in
            # microsoftgraph/powershell-intune-samples issue 87).
            kept = [(k, v) for k, v in request.query if k != "$skiptoken"]
            query = urlencode(kept + [("$skiptoken", _skiptoken(request.route, end))], quote_via=quote, safe="$,")
            payload["@odata.nextLink"] = f"{base}{request.path}?{query}"
        payload["value"] = records
        request_id = str(uuid.uuid4())
        return Response(
            200,
            payload,
            content_type=GRAPH_CONTENT_TYPE,
            headers={"request-id": request_id, "client-request-id": request_id},
            records_key="value",
            paginated=paged,
        )

    @staticmethod
    def _counts(request: Request, count: str) -> bool:
        if count == "always":
            # Intune answers managedDevices with "@odata.count" unasked (msgraph-sdk-powershell issue 1819,
            # microsoft/Intune-PowerShell-SDK issue 78).
            return True
        if count != "advanced" or (request.arg("$count") or "").lower() != "true":
            return False
        # "$count as a query string parameter" is an advanced query on directory objects: "If the
        # ConsistencyLevel=eventual header is not specified, the request ... silently ignores the $count query
        # parameter (?$count=true)" (https://learn.microsoft.com/graph/aad-advanced-queries, "Error handling for
        # advanced queries on directory objects"): still 200, no @odata.count.
        return (request.headers.get("ConsistencyLevel") or "").strip().lower() == "eventual"

    def _licence_error(self) -> Response:
        return graph_error(
            403,
            "Authentication_RequestFromNonPremiumTenantOrB2CTenant",
            "Neither tenant is B2C or tenant doesn't have premium license",
        )

    # graph lists

    def users(self, request: Request) -> Response:
        selected = {p.strip() for p in (request.arg("$select") or "").split(",")}
        sign_ins = "signInActivity" in selected
        if sign_ins and not self.volume.premium and not self._authorized(request):
            return self._licence_error()
        premium, seed, now = bool(self.volume.premium), self.seed, self.now
        return self._list(
            request,
            "user",
            self.volume.users,
            lambda i: make_user(seed, i, premium and sign_ins, now),
            USER_PROPERTIES,
            SIGN_IN_ACTIVITY_MAX_TOP if sign_ins else None,
            count="advanced",
        )

    def registration(self, request: Request) -> Response:
        if not self.volume.premium and not self._authorized(request):
            return self._licence_error()
        seed, now = self.seed, self.now
        # "This method supports only the $filter and $orderBy OData query parameters" (the list page): no
        # $count, so no @odata.count. Graph's answer to $top here is not documented; the sandbox honours it.
        return self._list(
            request, "userRegistrationDetails", self.volume.users, lambda i: make_registration(seed, i, now)
        )

    def devices(self, request: Request) -> Response:
        if not self.volume.intune and not self._authorized(request):
            return graph_error(400, "BadRequest", "Request not applicable to target tenant.")
        seed, users, now = self.seed, self.volume.users, self.now
        # Intune pages hold 1000 devices by default (microsoftgraph/powershell-intune-samples issue 2); the volume's
        # page_size stands in for every list's default so tests can force paging. Intune may silently return fewer
        # devices than exist on an unfiltered listing (microsoft-graph-docs issue 21659): not modelled.
        return self._list(
            request, "managedDevice", self.volume.devices, lambda i: make_device(seed, i, users, now), count="always"
        )

    def secure_scores(self, request: Request) -> Response:
        seed, users, now = self.seed, self.volume.users, self.now
        return self._list(
            request, "secureScore", self.volume.score_days, lambda i: make_secure_score(seed, i, users, now)
        )

    def directory_roles(self, request: Request) -> Response:
        # "List the directory roles that are activated in the tenant" (directoryrole-list.md,
        # https://learn.microsoft.com/en-us/graph/api/directoryrole-list): one page, the method
        # supports no OData query parameters ("toppable": false on the resource), so no $top and no nextLink.
        denied = self._authorized(request)
        if denied:
            return denied
        roles = [make_directory_role(self.seed, role) for role in self.role_members]
        base = "http://" + (request.headers.get("Host") or "127.0.0.1")
        payload = {"@odata.context": f"{base}/v1.0/$metadata#directoryRoles", "value": roles}
        return Response(200, payload, content_type=GRAPH_CONTENT_TYPE, records_key="value")

    def directory_role_members(self, request: Request) -> Response:
        # GET /directoryRoles/{role-id}/members (https://learn.microsoft.com/en-us/graph/api/directoryrole-list-members,
        # directoryrole-list-members.md): directoryObject collection; the
        # role's object id or `roleTemplateId={id}`; an unknown role is 404 Request_ResourceNotFound (Graph's errors
        # page, as for other directory objects). Not paged: "queries against directoryRoles do not support paging.
        # This includes reading role objects themselves as well as role members" (https://learn.microsoft.com/graph/
        # paging, concepts/paging.md in microsoft-graph-docs-contrib).
        wanted = request.params["role_id"]
        role = next(
            (
                r
                for r in self.role_members
                if wanted in (directory_role_id(self.seed, r), f"roleTemplateId={DIRECTORY_ROLES[r][0]}")
            ),
            None,
        )
        if role is None:
            denied = self._authorized(request)
            return denied or graph_error(
                404,
                "Request_ResourceNotFound",
                f"Resource '{wanted}' does not exist or one of its queried reference-property objects are not present.",
            )
        members, seed = self.role_members[role], self.seed
        return self._list(
            request, "directoryObject", len(members), lambda i: make_role_member(seed, members[i]), paged=False
        )


def _install(router: Router, context: VendorContext, volume: Microsoft365Volume) -> None:
    api = _GraphApi(context, volume)
    for method, pattern, name, handler in (
        ("POST", r"/(?P<tenant>[^/]+)/oauth2/v2\.0/token", "token", api.token),
        ("GET", r"/v1\.0/users", "users", api.identity(api.users)),
        ("GET", r"/v1\.0/reports/authenticationMethods/userRegistrationDetails", "registration", api.registration),
        ("GET", r"/v1\.0/deviceManagement/managedDevices", "devices", api.devices),
        ("GET", r"/v1\.0/security/secureScores", "secure_scores", api.secure_scores),
        ("GET", r"/v1\.0/directoryRoles", "directory_roles", api.identity(api.directory_roles)),
        (
            "GET",
            r"/v1\.0/directoryRoles/(?P<role_id>[^/]+)/members",
            "directory_role_members",
            api.identity(api.directory_role_members),
        ),
    ):
        router.add(method, pattern, f"microsoft365.{name}", handler, api.error)


register_vendor(Vendor("microsoft365", Microsoft365Volume, _install))
