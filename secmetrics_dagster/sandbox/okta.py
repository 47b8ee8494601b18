"""Okta in the sandbox: users (every status), factors, administrator roles, groups and members behind SSWS tokens,
modelled on the Okta Management API: bare JSON arrays, `Link: <…?after=…>; rel="next"` cursors and org-wide
X-Rate-Limit-* quotas.

Records are computed from (seed, index) when a page is served, so volume costs no memory. Timestamps count back from
the sandbox's clock (`OktaVolume.now`, default the moment the sandbox is created), so the org looks the same age
whenever it runs: most users signed in within weeks, about a tenth dormant, about a tenth without MFA, a few admins
(one without MFA). Vendor behaviour is driven by the volume: `rate_limit`/`rate_window` set each endpoint's quota,
which counts down in the headers and answers 429 E0000047 once spent, until the window's X-Rate-Limit-Reset.

Sources: the Management API's OpenAPI document as okta-sdk-python ships it (`openapi/management.yaml`: operations
listUsers, listGroups, listGroupUsers, listFactors, the Error* examples; `openapi/api.yaml`: listAssignedRolesForUser,
the StandardRole schema and its examples; Okta's reference for it, "List all User Role Assignments",
https://developer.okta.com/docs/api/openapi/okta-management/management/tag/RoleAssignmentAUser/ and the SDK reference
https://developer.okta.com/okta-sdk-java/apidocs/com/okta/sdk/resource/api/RoleAssignmentAUserApi.html) and its
generated docs (`docs/UserApi.md`, `docs/GroupApi.md`); the rate-limit headers from
https://developer.okta.com/docs/reference/rl-best-practices/ and how okta-sdk-python waits on them
(`okta/request_executor.py`: X-Rate-Limit-Reset minus the Date header).
"""

from __future__ import annotations

import hashlib
import random
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Optional
from urllib.parse import quote, urlencode

from .records import VendorApi, check_volume, hash100, sandbox_clock
from .server import FixedWindowQuota, Request, Response, Router, Vendor, VendorContext, register_vendor


@dataclass(frozen=True)
class OktaVolume:
    """How much Okta data the sandbox serves and its rate limits; each int field is also a CLI flag (--okta-users, ...)."""

    users: int = 60
    groups: int = 6
    rate_limit: int = 600  # requests per window per endpoint (X-Rate-Limit-Limit), shared by every client
    rate_window: int = 60  # seconds; Okta's windows are one minute
    # The org's "now" (epoch seconds) every generated timestamp counts back from; None: when the sandbox is created.
    now: Optional[float] = None

    def __post_init__(self) -> None:
        check_volume(self, ("users", "groups", "rate_limit", "rate_window"), least={"rate_limit": 1, "rate_window": 1})


# Okta's UserStatus enum (management.yaml, components.schemas.UserStatus).
STATUSES = tuple("STAGED PROVISIONED ACTIVE RECOVERY LOCKED_OUT PASSWORD_EXPIRED SUSPENDED DEPROVISIONED".split())
# Page sizes from management.yaml: listUsers `limit` default 200 ("up to the maximum (200 for most orgs)"),
# listGroups default 10000 (the docs page says `<= 10000`), listGroupUsers default 1000. What Okta does with a
# larger limit is not documented (docs/GroupApi.md only says not to depend on the default or maximum); the sandbox
# caps it silently, which is the behaviour our collector must survive either way (no source: an assumption).
USERS_MAX_LIMIT = 200
GROUPS_MAX_LIMIT = 10000
MEMBERS_MAX_LIMIT = 1000
CONTENT_TYPE = "application/json"

# errorCode, errorSummary as Okta sends them (developer.okta.com/docs/reference/error-codes; the examples
# ErrorApiValidationFailed, ErrorInvalidTokenProvided "Invalid token provided", ErrorAccessDenied, ErrorResourceNotFound
# "Not found: {0}" and ErrorTooManyRequests in okta-sdk-python openapi/management.yaml). For E0000047 the spec's
# example reads "You exceeded the maximum number of requests. Try again in a while."; the error-codes page's title
# is kept here. 500/503 bodies: no source found, the codes are the error-codes page's.
_ERRORS: dict[int, tuple[str, str]] = {
    400: ("E0000001", "Api validation failed"),
    401: ("E0000011", "Invalid token provided"),
    403: ("E0000006", "You do not have permission to perform the requested action"),
    404: ("E0000007", "Not found: Resource not found"),
    429: ("E0000047", "API call exceeded rate limit due to too many requests."),
    500: ("E0000009", "Internal Server Error"),
    503: ("E0000010", "Service is temporarily unavailable. Please try again later."),
}

_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_INDEX_CHARS = 10
_ID_RE = re.compile(r"^00[ug][0-9A-Za-z]{17}$")
_TERM_RE = re.compile(r'^status\s+eq\s+"([A-Z_]+)"$')


def okta_error(
    status: int,
    summary: Optional[str] = None,
    code: Optional[str] = None,
    causes: Optional[list[str]] = None,
    headers: Optional[dict[str, str]] = None,
) -> Response:
    default_code, default_summary = _ERRORS.get(status, ("E0000009", f"HTTP {status}"))
    # The Error schema of management.yaml: errorCode, errorSummary, errorLink, errorId, errorCauses.
    body = {
        "errorCode": code or default_code,
        "errorSummary": summary or default_summary,
        "errorLink": code or default_code,
        "errorId": "oae" + uuid.uuid4().hex[:19],
        "errorCauses": [{"errorSummary": c} for c in (causes or [])],
    }
    return Response(status, body, content_type=CONTENT_TYPE, headers=dict(headers or {}))


# ------------------------------------------------------------------------------------------ ids, cursors


def _b62(number: int, width: int) -> str:
    chars = []
    for _ in range(width):
        number, digit = divmod(number, 62)
        chars.append(_B62[digit])
    return "".join(reversed(chars))


def _seed_part(seed: int, kind: str) -> str:
    return _b62(int.from_bytes(hashlib.blake2b(f"{seed}:okta:{kind}".encode(), digest_size=8).digest(), "big"), 7)


# The index is scrambled by an invertible affine map so ids look random yet decode without any lookup table.
_MODULUS = 62**_INDEX_CHARS
_MULTIPLIER = 489823063034775573  # odd and not a multiple of 31: invertible modulo 62**10
_OFFSET = 11400714819323198485 % _MODULUS
_INVERSE = pow(_MULTIPLIER, -1, _MODULUS)


def object_id(seed: int, prefix: str, index: int) -> str:
    # 20 characters with a type prefix, like Okta's examples ("00g1emaKYZTWRYYRRTSK", "00ub0oNGTSWTBKOLGLNR").
    """20-character Okta-style id ('00u…' users, '00g…' groups) whose last 10 characters encode the index."""
    return prefix + _seed_part(seed, prefix) + _b62((index * _MULTIPLIER + _OFFSET) % _MODULUS, _INDEX_CHARS)


def index_of(seed: int, prefix: str, value: str) -> int:
    """The index behind an id made by object_id, or -1 when it is not one of this org's ids."""
    if not _ID_RE.fullmatch(value or "") or not value.startswith(prefix) or value[3:10] != _seed_part(seed, prefix):
        return -1
    number = 0
    for char in value[10:]:
        number = number * 62 + _B62.index(char)
    return ((number - _OFFSET) * _INVERSE) % _MODULUS


# A tenant's mix: mostly active, a tenth deprovisioned (kept for revoked-access metrics), the rest in transit.
_STATUS_BANDS = [
    (72, "ACTIVE"),
    (82, "DEPROVISIONED"),
    (86, "STAGED"),
    (89, "PROVISIONED"),
    (92, "SUSPENDED"),
    (95, "PASSWORD_EXPIRED"),
    (97, "LOCKED_OUT"),
    (100, "RECOVERY"),
]


def user_status(seed: int, index: int) -> str:
    if index in (SUPER_ADMIN_USER, NO_MFA_ADMIN_USER):
        return "ACTIVE"
    roll = hash100(seed, "okta", "status", index)
    return next(status for bound, status in _STATUS_BANDS if roll < bound)


# Administrators: user 0 is the super administrator who created the org (every org has one), user 1 an org
# administrator account without MFA (the classic finding: a shared or service admin); about one user in twenty holds
# roles of their own, and about one in twenty-five holds ORG_ADMIN through the "Okta Administrators" group (group 4,
# when the org has it). Admins lack MFA more often than others: a tenth of users, a third of admins.
SUPER_ADMIN_USER = 0
NO_MFA_ADMIN_USER = 1
ADMIN_GROUP = 4  # _GROUP_NAMES[3], "Okta Administrators"


def has_direct_roles(seed: int, index: int) -> bool:
    return index in (SUPER_ADMIN_USER, NO_MFA_ADMIN_USER) or hash100(seed, "okta", "admin", index) < 5


def in_admin_group(seed: int, index: int) -> bool:
    return index > NO_MFA_ADMIN_USER and hash100(seed, "okta", "admin-group", index) < 4


def is_admin(seed: int, index: int, groups: int) -> bool:
    return has_direct_roles(seed, index) or (groups > ADMIN_GROUP and in_admin_group(seed, index))


def has_no_mfa(seed: int, index: int, groups: int) -> bool:
    """True when the user enrolled no factor at all."""
    if index in (SUPER_ADMIN_USER, NO_MFA_ADMIN_USER):
        return index == NO_MFA_ADMIN_USER
    return hash100(seed, "okta", "mfa", index) < (33 if is_admin(seed, index, groups) else 9)


def is_member(seed: int, group: int, user: int) -> bool:
    if group == 0:
        return True  # Everyone
    if group == ADMIN_GROUP:
        return in_admin_group(seed, user)
    share = 8 + (hash100(seed, "okta", "group-share", group) * 32) // 100  # 8-39 % of the org per group
    return hash100(seed, "okta", "member", group, user) < share


# ---------------------------------------------------------------------------------------------- records

DAY = 24 * 3600
_FIRST = [
    "Alice",
    "Bob",
    "Carmen",
    "Deepak",
    "Elena",
    "Farid",
    "Grace",
    "Hiro",
    "Ines",
    "Jonas",
    "Keiko",
    "Liam",
    "Maya",
    "Nikolai",
    "Olga",
    "Pedro",
    "Quinn",
    "Rosa",
    "Samir",
    "Tara",
    "Uma",
    "Viktor",
    "Wen",
    "Yusuf",
]
_LAST = [
    "Smith",
    "Okafor",
    "Garcia",
    "Patel",
    "Novak",
    "Haddad",
    "Kim",
    "Tanaka",
    "Silva",
    "Berg",
    "Sato",
    "Murphy",
    "Cohen",
    "Ivanov",
    "Larsen",
    "Costa",
    "Reyes",
    "Moreau",
    "Nasser",
    "Singh",
    "Adeyemi",
    "Keller",
]
_DEPARTMENTS = [
    "Engineering",
    "Sales",
    "Finance",
    "Marketing",
    "Support",
    "Legal",
    "People",
    "IT",
    "Security",
    "Operations",
]
_TITLES = ["Engineer", "Senior Engineer", "Manager", "Analyst", "Director", "Specialist", "Consultant", "Lead"]
_CITIES = [
    ("San Francisco", "CA", "US"),
    ("New York", "NY", "US"),
    ("London", "", "GB"),
    ("Berlin", "", "DE"),
    ("Toronto", "ON", "CA"),
    ("Sydney", "NSW", "AU"),
    ("Dublin", "", "IE"),
]
_GROUP_NAMES = [
    "Engineering",
    "Sales",
    "Finance",
    "Okta Administrators",
    "Contractors",
    "VPN Users",
    "AWS Admins",
    "GitHub Users",
    "Support",
    "Executives",
    "Security Team",
    "Marketing",
]


def _ts(moment: Optional[datetime]) -> Optional[str]:
    return None if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _ago(now: datetime, rng: random.Random, low_days: float, high_days: float) -> datetime:
    """A moment between `high_days` and `low_days` before `now`."""
    return now - timedelta(
        seconds=rng.randrange(int(low_days * DAY), max(int(low_days * DAY) + 1, int(high_days * DAY)))
    )


def _between(rng: random.Random, start: datetime, end: datetime) -> datetime:
    return start + timedelta(seconds=rng.randrange(max(1, int((end - start).total_seconds()))))


def person(seed: int, index: int) -> tuple[str, str, str]:
    """(first name, last name, login) of user `index`; other sandbox vendors reuse it for the same people."""
    rng = random.Random(f"{seed}:okta:user:{index}")
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    return first, last, f"{first}.{last}{index}".lower() + "@acme.example"


# Last sign-in bands (by hash, so they do not move when the rest of a user's record changes): about four in five
# within the last four weeks, a tenth between one and three months, about one in ten dormant for more than 100 days,
# and a few active users who never signed in.
_LOGIN_BANDS = [(78, 0, 28), (88, 31, 85), (97, 100, 540)]


def _last_login_days(seed: int, index: int, rng: random.Random) -> Optional[float]:
    roll = hash100(seed, "okta", "login", index)
    for bound, low, high in _LOGIN_BANDS:
        if roll < bound:
            return rng.uniform(low, high)
    return None


def make_user(seed: int, index: int, base: str, now: datetime) -> dict[str, Any]:
    rng = random.Random(f"{seed}:okta:user:{index}")
    first, last = rng.choice(_FIRST), rng.choice(_LAST)  # the draws person() makes
    login = person(seed, index)[2]
    uid = object_id(seed, "00u", index)
    status = user_status(seed, index)
    login_days = _last_login_days(seed, index, rng)
    status_days: Optional[float] = None
    if status == "DEPROVISIONED":  # deactivated 1-400 days ago, last sign-in before that
        status_days = rng.uniform(1, 400)
        login_days = status_days + rng.uniform(0, 45)
    elif status == "SUSPENDED":
        status_days = rng.uniform(1, 120)
        login_days = status_days + rng.uniform(0, 30)
    elif status in ("LOCKED_OUT", "PASSWORD_EXPIRED", "RECOVERY"):
        login_days = login_days if login_days is not None else rng.uniform(31, 85)
        status_days = rng.uniform(0, min(login_days, 20))
    if status in ("STAGED", "PROVISIONED"):
        login_days = None
    created = _ago(now, rng, (login_days or status_days or 0) + 2, (login_days or status_days or 0) + 4 * 365)
    staged = status == "STAGED"
    activated = None if staged else created + timedelta(hours=rng.randint(1, 72))
    if status == "PROVISIONED":  # activated, the user has not finished activation
        status_days = max(0.0, (now - activated).total_seconds() / DAY)
    status_changed = None if status_days is None else now - timedelta(days=status_days)
    last_login = None if login_days is None else max(now - timedelta(days=login_days), activated or created)
    city, state, country = rng.choice(_CITIES)
    contractor = rng.random() < 0.15
    federated = rng.random() < 0.3
    # Three in four passwords changed within the year, the rest up to 2.5 years old (never before creation).
    password_days = rng.uniform(0, 330) if rng.random() < 0.75 else rng.uniform(370, 900)
    password_changed = max(now - timedelta(days=password_days), activated or created)
    user: dict[str, Any] = {
        "id": uid,
        "status": status,
        "created": _ts(created),
        "activated": _ts(activated),
        "statusChanged": _ts(status_changed),
        "lastLogin": _ts(last_login),
        "lastUpdated": _ts(max(filter(None, [created, activated, status_changed, last_login]))),
        "passwordChanged": None if federated or staged else _ts(password_changed),
        "type": {"id": "oty" + _seed_part(seed, "type") + "0000000000"},
        "profile": {
            "firstName": first,
            "lastName": last,
            "mobilePhone": f"+1-555-{rng.randint(100, 999)}-{rng.randint(1000, 9999)}" if rng.random() < 0.6 else None,
            "secondEmail": None,
            "login": login,
            "email": login,
            "displayName": f"{first} {last}",
            "nickName": first,
            "title": rng.choice(_TITLES),
            "department": rng.choice(_DEPARTMENTS),
            "division": rng.choice(["Product", "Go-To-Market", "G&A"]),
            "organization": "Acme Corp",
            "costCenter": f"CC-{rng.randint(100, 999)}",
            "employeeNumber": None if contractor else str(10000 + index),
            "userType": "Contractor" if contractor else "Employee",
            "preferredLanguage": "en",
            "city": city,
            "state": state or None,
            "countryCode": country,
        },
        "credentials": {
            "provider": {"type": "ACTIVE_DIRECTORY", "name": "acme.example"}
            if federated
            else {"type": "OKTA", "name": "OKTA"},
        },
        "_links": {"self": {"href": f"{base}/api/v1/users/{uid}"}},
    }
    if not federated:
        user["credentials"]["password"] = {}
        user["credentials"]["emails"] = [{"value": login, "status": "VERIFIED", "type": "PRIMARY"}]
    return user


# factorType, provider, vendorName, id prefix, profile maker
_FACTOR_KINDS: list[tuple[str, str, str, str, Callable[[random.Random, dict], dict]]] = [
    (
        "push",
        "OKTA",
        "OKTA",
        "opf",
        lambda r, u: {
            "credentialId": u["profile"]["login"],
            "deviceType": "SmartPhone_IPhone",
            "name": f"{u['profile']['firstName']}'s iPhone",
            "platform": "IOS",
            "version": f"17.{r.randint(0, 5)}",
        },
    ),
    ("signed_nonce", "OKTA", "OKTA", "crp", lambda r, u: {"credentialId": u["profile"]["login"], "platform": "MACOS"}),
    ("token:software:totp", "OKTA", "OKTA", "ost", lambda r, u: {"credentialId": u["profile"]["login"]}),
    ("token:software:totp", "GOOGLE", "GOOGLE", "uft", lambda r, u: {"credentialId": u["profile"]["login"]}),
    (
        "sms",
        "OKTA",
        "OKTA",
        "mbl",
        lambda r, u: {"phoneNumber": f"+1-555-{r.randint(100, 999)}-{r.randint(1000, 9999)}"},
    ),
    (
        "call",
        "OKTA",
        "OKTA",
        "clf",
        lambda r, u: {"phoneNumber": f"+1-555-{r.randint(100, 999)}-{r.randint(1000, 9999)}"},
    ),
    ("email", "OKTA", "OKTA", "emf", lambda r, u: {"email": u["profile"]["email"]}),
    (
        "webauthn",
        "FIDO",
        "FIDO",
        "fwf",
        lambda r, u: {
            "authenticatorName": r.choice(["YubiKey 5 NFC", "Touch ID", "Windows Hello"]),
            "credentialId": uuid.UUID(int=r.getrandbits(128)).hex,
        },
    ),
]
_FACTOR_WEIGHTS = [34, 10, 10, 8, 16, 3, 12, 7]
_WEBAUTHN = 7


def make_factors(seed: int, index: int, base: str, now: datetime, groups: int) -> list[dict[str, Any]]:
    status = user_status(seed, index)
    if status in ("DEPROVISIONED", "STAGED"):
        return []
    rng = random.Random(f"{seed}:okta:factors:{index}")
    count = 0 if has_no_mfa(seed, index, groups) else rng.choice([1, 1, 2, 2, 2, 3])
    user = make_user(seed, index, base, now)
    uid = user["id"]
    user_created = datetime.strptime(user["created"], "%Y-%m-%dT%H:%M:%S.000Z").replace(tzinfo=UTC)
    kinds = list(dict.fromkeys(rng.choices(range(len(_FACTOR_KINDS)), _FACTOR_WEIGHTS, k=count)))
    if index == SUPER_ADMIN_USER and _WEBAUTHN not in kinds:
        kinds.append(_WEBAUTHN)  # the org's super administrator signs in with a security key
    factors = []
    for kind in kinds:
        factor_type, provider, vendor, prefix, profile = _FACTOR_KINDS[kind]
        fid = prefix + "".join(rng.choice(_B62) for _ in range(17))
        created = _between(rng, user_created, now)
        pending = rng.random() < 0.06 and index != SUPER_ADMIN_USER
        factor: dict[str, Any] = {
            "id": fid,
            "factorType": factor_type,
            "provider": provider,
            "vendorName": vendor,
            "status": "PENDING_ACTIVATION" if pending else "ACTIVE",
            "created": _ts(created),
            "lastUpdated": _ts(_between(rng, created, now)),
            "profile": profile(rng, user),
            "_links": {
                "self": {"href": f"{base}/api/v1/users/{uid}/factors/{fid}", "hints": {"allow": ["GET", "DELETE"]}},
                "user": {"href": f"{base}/api/v1/users/{uid}", "hints": {"allow": ["GET"]}},
            },
        }
        if pending and factor_type == "token:software:totp":
            # Okta returns the enrollment secret of a pending TOTP factor; collectors must not keep it.
            factor["_embedded"] = {
                "activation": {
                    "timeStep": 30,
                    "sharedSecret": _b62(rng.getrandbits(80), 16),
                    "encoding": "base32",
                    "keyLength": 16,
                }
            }
        factors.append(factor)
    return factors


# (type, label). Labels as the roles examples of okta-sdk-python openapi/api.yaml give them (StandardRoleResponseUser,
# StandardRolesListResponse: "Super Organization administrator", "Organization administrator", "Application
# administrator", "Help Desk administrator", "API Access Management administrator"); the others follow that pattern
# (no source found for their exact wording).
_ROLE_KINDS = [
    ("ORG_ADMIN", "Organization administrator"),
    ("APP_ADMIN", "Application administrator"),
    ("HELP_DESK_ADMIN", "Help Desk administrator"),
    ("READ_ONLY_ADMIN", "Read-only administrator"),
    ("USER_ADMIN", "User administrator"),
    ("GROUP_MEMBERSHIP_ADMIN", "Group Membership administrator"),
    ("REPORT_ADMIN", "Report administrator"),
    ("API_ACCESS_MANAGEMENT_ADMIN", "API Access Management administrator"),
    ("MOBILE_ADMIN", "Mobile administrator"),
]
_ROLE_WEIGHTS = [10, 20, 25, 25, 10, 8, 8, 6, 3]


def make_roles(seed: int, index: int, base: str, now: datetime, groups: int) -> list[dict[str, Any]]:
    """The role assignments listAssignedRolesForUser returns for user `index`: its own, then its group's."""
    rng = random.Random(f"{seed}:okta:roles:{index}")
    uid = object_id(seed, "00u", index)
    roles: list[dict[str, Any]] = []

    def assignment(rid: str, kind: tuple[str, str], assignee: str, how: str, since: datetime) -> dict[str, Any]:
        return {
            "id": rid,
            "label": kind[1],
            "type": kind[0],
            "status": "ACTIVE",
            "created": _ts(since),
            "lastUpdated": _ts(since),
            "assignmentType": how,
            "_links": {"assignee": {"href": assignee}},
        }

    if has_direct_roles(seed, index):
        if index == SUPER_ADMIN_USER:
            kinds = [("SUPER_ADMIN", "Super Organization administrator")]
        elif index == NO_MFA_ADMIN_USER:
            kinds = [_ROLE_KINDS[0]]
        else:
            kinds = [_ROLE_KINDS[k] for k in dict.fromkeys(rng.choices(range(len(_ROLE_KINDS)), _ROLE_WEIGHTS, k=2))]
            kinds = kinds[: rng.choice([1, 1, 2])]
        for kind in kinds:
            # Assignment ids like the examples' "ra1b8anIk7rx7em7L0g4": 20 characters, "ra1" first.
            rid = "ra1" + "".join(rng.choice(_B62) for _ in range(17))
            roles.append(assignment(rid, kind, f"{base}/api/v1/users/{uid}", "USER", _ago(now, rng, 7, 3 * 365)))
    if roles and index > NO_MFA_ADMIN_USER and rng.random() < 0.25:
        # A custom role bound to a resource set (IAMStandardRolesListResponse: id "irb…", `role` "cr0…", type CUSTOM,
        # `resource-set` "iam…", links to the binding member, role and permissions).
        rid, role_id = "irb" + _seed_part(seed, f"irb{index}") + "0000000000", "cr0" + _seed_part(seed, "custom-role")
        resource_set = "iam" + _seed_part(seed, "resource-set") + "0000000000"
        custom = assignment(
            rid, ("CUSTOM", "Access Reviewer"), f"{base}/api/v1/users/{uid}", "USER", _ago(now, rng, 7, 2 * 365)
        )
        custom.update({"role": role_id + "0000000000", "resource-set": resource_set})
        custom["_links"].update(
            {
                "resource-set": {"href": f"{base}/api/v1/iam/resource-sets/{resource_set}"},
                "role": {"href": f"{base}/api/v1/iam/roles/{role_id}0000000000"},
                "member": {"href": f"{base}/api/v1/iam/resource-sets/{resource_set}/bindings/{role_id}0000000000"},
            }
        )
        roles.append(custom)
    if groups > ADMIN_GROUP and in_admin_group(seed, index):
        # One assignment to the group, listed for each member with the group as assignee (StandardRolesListResponse:
        # assignmentType GROUP, _links.assignee -> /api/v1/groups/{groupId}).
        group_rng = random.Random(f"{seed}:okta:group-role")
        rid = "gra" + "".join(group_rng.choice(_B62) for _ in range(17))
        gid = object_id(seed, "00g", ADMIN_GROUP)
        roles.append(
            assignment(rid, _ROLE_KINDS[0], f"{base}/api/v1/groups/{gid}", "GROUP", _ago(now, group_rng, 200, 900))
        )
    return roles


def make_group(
    seed: int, index: int, base: str, now: datetime, members: Optional[Callable[[int], int]] = None
) -> dict[str, Any]:
    """One group; `members` (group index -> member count) adds what `expand=stats` adds."""
    rng = random.Random(f"{seed}:okta:group:{index}")
    gid = object_id(seed, "00g", index)
    created = _ago(now, rng, 30, 6 * 365)
    links = {
        "logo": [
            {"name": "medium", "href": f"{base}/img/logos/groups/okta-medium.png", "type": "image/png"},
            {"name": "large", "href": f"{base}/img/logos/groups/okta-large.png", "type": "image/png"},
        ],
        "users": {"href": f"{base}/api/v1/groups/{gid}/users"},
        "apps": {"href": f"{base}/api/v1/groups/{gid}/apps"},
    }
    group: dict[str, Any] = {
        "id": gid,
        "created": _ts(created),
        "lastUpdated": _ts(_between(rng, created, now)),
        "lastMembershipUpdated": _ts(_between(rng, created, now)),
        "objectClass": ["okta:user_group"],
        "type": "OKTA_GROUP",
        "profile": {"name": "", "description": None},
        "_links": links,
    }
    if members is not None:
        # "You can use the `stats` value to return the number of users within a group. This is listed as the
        # `_embedded.stats.usersCount` value in the response." (okta-sdk-python docs/GroupApi.md, list_groups)
        group["_embedded"] = {"stats": {"usersCount": members(index)}}
    if index == 0:
        group.update(type="BUILT_IN", profile={"name": "Everyone", "description": "All users in your organization"})
        return group
    base_name = _GROUP_NAMES[(index - 1) % len(_GROUP_NAMES)]
    name = base_name if index <= len(_GROUP_NAMES) else f"{base_name} {index}"
    if index % 4 == 3:  # groups imported from Active Directory
        source = "0oa" + _seed_part(seed, "ad-app") + "0000000000"
        group.update(
            type="APP_GROUP",
            objectClass=["okta:windows_security_principal"],
            source={"id": source},
            profile={
                "name": name,
                "description": f"{name} (Active Directory)",
                "groupType": "Security",
                "samAccountName": name,
                "groupScope": "Global",
                "dn": f"CN={name},OU=Groups,DC=acme,DC=example",
                "windowsDomainQualifiedName": f"ACME\\{name}",
                "externalId": _b62(rng.getrandbits(128), 22) + "==",
            },
        )
        links["source"] = {"href": f"{base}/api/v1/apps/{source}"}
    else:
        group["profile"] = {"name": name, "description": f"Members of {name}"}
    return group


# ------------------------------------------------------------------------------------------------ quota


class _Quota(FixedWindowQuota):
    """Per-endpoint request quota in fixed windows aligned to the clock, as Okta reports it in X-Rate-Limit-*.

    Header names and units from https://developer.okta.com/docs/reference/rl-best-practices/: X-Rate-Limit-Limit
    (the ceiling), X-Rate-Limit-Remaining, X-Rate-Limit-Reset "specified in UTC epoch time (in seconds)". Okta's
    org-wide limits are per endpoint and per minute (the volume's rate_window). A 429 carries the same headers and no
    Retry-After: okta-sdk-python (`okta/request_executor.py`) computes its wait from X-Rate-Limit-Reset and the Date
    header alone, and fails if either is missing (ERROR_MESSAGE_429_MISSING_DATE_X_RESET); the sandbox's HTTP
    server sends Date on every answer.
    """

    def take(self, bucket: str) -> tuple[bool, dict[str, str]]:
        taken = self.count(bucket)
        headers = {
            "X-Rate-Limit-Limit": str(self.limit),
            "X-Rate-Limit-Remaining": str(self.limit - taken.used),
            "X-Rate-Limit-Reset": str(taken.reset),
        }
        return taken.allowed, headers

    def exhausted_headers(self) -> dict[str, str]:
        return {
            "X-Rate-Limit-Limit": str(self.limit),
            "X-Rate-Limit-Remaining": "0",
            "X-Rate-Limit-Reset": str(self.current_reset()),
        }


# ------------------------------------------------------------------------------------------------ routes


def _base(request: Request) -> str:
    return "http://" + (request.headers.get("Host") or "127.0.0.1")


def parse_status_expression(expression: str) -> Optional[set[str]]:
    """Statuses selected by `status eq "X" or status eq "Y"` (the search/filter the sandbox supports), None if invalid."""
    # Okta's search grammar is far richer (SCIM-style filters); the sandbox models the status terms our collector
    # sends. Search results come from an eventually consistent source (docs/UserApi.md): not modelled.
    text = expression.strip()
    while text.startswith("(") and text.endswith(")"):
        text = text[1:-1].strip()
    wanted = set()
    for term in re.split(r"\s+or\s+", text, flags=re.I):
        found = _TERM_RE.match(term.strip().strip("()").strip())
        if not found:
            return None
        wanted.add(found.group(1))
    return wanted


class _OktaApi(VendorApi):
    volume: OktaVolume

    def __init__(self, context: VendorContext, volume: OktaVolume) -> None:
        super().__init__(context, volume)
        self.quota = _Quota(volume.rate_limit, volume.rate_window)

    # plumbing

    def authorized(self, request: Request) -> bool:
        # `Authorization: SSWS <token>` (management.yaml securitySchemes apiToken; developer.okta.com API tokens).
        # A bad or missing token is 401 E0000011 (ErrorInvalidToken401 in management.yaml).
        scheme, _, credential = (request.headers.get("Authorization") or "").strip().partition(" ")
        return scheme.upper() == "SSWS" and credential.strip() == self.secret

    def metered(self, handler: Callable[[Request], Response]) -> Callable[[Request], Response]:
        """Count every request against its endpoint's quota; a spent quota answers 429 E0000047 until the reset."""

        def serve(request: Request) -> Response:
            allowed, headers = self.quota.take(request.route)
            if not allowed:
                return okta_error(429, headers=headers)
            if not self.authorized(request):
                return okta_error(401, headers=headers)
            response = handler(request)
            response.headers = {**headers, **response.headers, "X-Okta-Request-Id": uuid.uuid4().hex[:27]}
            return response

        return serve

    def error(self, status: int, request: Request) -> Response:
        # An injected 429 looks like a spent quota (reset at the window's end, no Retry-After: routes are registered
        # with retry_after_header=None); other injected errors carry no quota headers (no source says they do), so a
        # client backs off as it would for any server error.
        return okta_error(status, headers=self.quota.exhausted_headers() if status == 429 else None)

    @staticmethod
    def _limit(request: Request, default: int, maximum: int) -> tuple[Optional[Response], int]:
        raw = request.arg("limit")
        if raw is None:
            return None, default
        try:
            limit = int(raw)
        except ValueError:
            return okta_error(400, causes=[f"limit: '{raw}' is not a number"]), 0
        if limit < 1:  # no source for Okta's answer to limit=0 or a negative limit: a validation error is assumed
            return okta_error(400, causes=["limit: must be at least 1"]), 0
        return None, min(limit, maximum)  # capped silently: an assumption, see USERS_MAX_LIMIT

    def _page(
        self,
        request: Request,
        prefix: str,
        count: int,
        limit: int,
        match: Callable[[int], bool],
        make: Callable[[int], dict],
    ) -> Response:
        """One page of a cursor listing: records after `after`, a Link rel=next while the page came back full.

        `after` is opaque to clients (management.yaml queryAfter: "an opaque string ... obtained from the `Link`
        response header"); the sandbox's is "0" + the last record's id. Links are absolute `<url>; rel="next"` /
        rel="self" entries of one Link header (okta-sdk-python `okta/api_response.py` extract_pagination), and the
        last page has no rel="next" (api_response.has_next). Whether Okta ever sends rel="next" on a short page is not
        documented; the sandbox never does.
        """
        start = 0
        after = request.arg("after")
        if after is not None:
            index = index_of(self.seed, prefix, after[1:]) if after.startswith("0") else -1
            if index < 0:
                return okta_error(400, causes=[f"after: invalid cursor '{after}'"])
            start = index + 1
        records, last, i = [], -1, start
        while i < count and len(records) < limit:
            if match(i):
                records.append(make(i))
                last = i
            i += 1
        base = _base(request)
        others = [(k, v) for k, v in request.query if k not in ("after", "limit")]
        self_query = urlencode(others + [("limit", str(limit))], quote_via=quote)
        links = [f'<{base}{request.path}?{self_query}>; rel="self"']
        if len(records) == limit and last < count - 1:
            cursor = "0" + object_id(self.seed, prefix, last)
            next_query = urlencode([("after", cursor), ("limit", str(limit))] + others, quote_via=quote)
            links.append(f'<{base}{request.path}?{next_query}>; rel="next"')
        return Response(
            200, records, content_type=CONTENT_TYPE, headers={"Link": ", ".join(links)}, records_key="", paginated=True
        )

    # handlers

    def users(self, request: Request) -> Response:
        error, limit = self._limit(request, USERS_MAX_LIMIT, USERS_MAX_LIMIT)
        if error:
            return error
        search, filter_ = request.arg("search"), request.arg("filter")
        if search is not None and filter_ is not None:
            return okta_error(400, causes=["search and filter cannot be used together"])
        expression = search if search is not None else filter_
        if expression is None:
            # "This operation omits users that have a status of DEPROVISIONED ... To return all users, use a filter
            # or search query instead." (okta-sdk-python docs/UserApi.md, list_users)
            wanted = set(STATUSES) - {"DEPROVISIONED"}
        else:
            wanted = parse_status_expression(expression)
            if wanted is None:
                return okta_error(
                    400,
                    summary="Invalid search criteria.",
                    code="E0000031",
                    causes=['the sandbox supports status eq "X" terms joined by or'],
                )
        seed = self.seed
        return self._users_page(request, limit, lambda i: user_status(seed, i) in wanted)

    def _users_page(self, request: Request, limit: int, keep: Callable[[int], bool]) -> Response:
        """A page of the users `keep` selects (a search's statuses, a group's members), as user objects."""
        seed, base, now = self.seed, _base(request), self.now
        return self._page(request, "00u", self.volume.users, limit, keep, lambda i: make_user(seed, i, base, now))

    def _of_user(self, request: Request, make: Callable[..., list]) -> Response:
        """The path's user's factors or roles (`make`): a bare array, or Okta's 404 for a user that does not exist
        (ErrorResourceNotFound404)."""
        index = index_of(self.seed, "00u", request.params["user_id"])
        if not 0 <= index < self.volume.users:
            return okta_error(404, summary=f"Not found: Resource not found: {request.params['user_id']} (User)")
        records = make(self.seed, index, _base(request), self.now, self.volume.groups)
        return Response(200, records, content_type=CONTENT_TYPE, records_key="")

    def factors(self, request: Request) -> Response:
        # listFactors (management.yaml): a bare array, no paging parameters, no count; 404 for an unknown user
        # (ErrorResourceNotFound404), which is what a user deleted since the users listing gets.
        return self._of_user(request, make_factors)

    def user_roles(self, request: Request) -> Response:
        # listAssignedRolesForUser (openapi/api.yaml, GET /api/v1/users/{userId}/roles): a bare array of role
        # assignments (StandardRole: id, label, type, status, created, lastUpdated, assignmentType, _links.assignee),
        # roles the user holds through a group included (assignmentType GROUP); no paging parameters; 403
        # ErrorAccessDenied (E0000006) to a token that may not read roles (scope okta.roles.read), which the
        # sandbox answers through an injected 403 fault; 404 for an unknown user. `expand` (targets/groups,
        # targets/catalog/apps) adds `_embedded.targets`: the sandbox's roles have no targets, so it adds nothing.
        # Whether Okta keeps a deactivated user's roles is not documented in a source found: the sandbox keeps them.
        return self._of_user(request, make_roles)

    def groups(self, request: Request) -> Response:
        error, limit = self._limit(request, GROUPS_MAX_LIMIT, GROUPS_MAX_LIMIT)
        if error:
            return error
        expand = request.arg("expand")
        if expand not in (None, "stats"):
            # `app` is the other documented value (docs/GroupApi.md); the sandbox serves no apps. No source for the
            # answer to an unknown value: a validation error is assumed.
            return okta_error(400, causes=[f"expand: the sandbox supports only 'stats', got {expand!r}"])
        seed, base, now = self.seed, _base(request), self.now
        members = (lambda g: self.member_count(g)) if expand == "stats" else None
        return self._page(
            request, "00g", self.volume.groups, limit, lambda i: True, lambda i: make_group(seed, i, base, now, members)
        )

    def member_count(self, group: int) -> int:
        """How many users group `group` lists: what `expand=stats` reports as `_embedded.stats.usersCount`."""
        return sum(is_member(self.seed, group, i) for i in range(self.volume.users))

    def group_members(self, request: Request) -> Response:
        # listGroupUsers (management.yaml): User objects, `after`/`limit` paging, 404 for an unknown group.
        group = index_of(self.seed, "00g", request.params["group_id"])
        if not 0 <= group < self.volume.groups:
            return okta_error(404, summary=f"Not found: Resource not found: {request.params['group_id']} (UserGroup)")
        error, limit = self._limit(request, MEMBERS_MAX_LIMIT, MEMBERS_MAX_LIMIT)
        if error:
            return error
        seed = self.seed
        return self._users_page(request, limit, lambda i: is_member(seed, group, i))


def expected_counts(seed: int, volume: OktaVolume) -> dict[str, int]:
    """What a complete collection holds, computed from the generators (for the demo's sanity and benchmarks)."""
    now = sandbox_clock(volume.now)
    statuses = [user_status(seed, i) for i in range(volume.users)]
    return {
        "users": volume.users,
        "deprovisioned": statuses.count("DEPROVISIONED"),
        "factors": sum(len(make_factors(seed, i, "", now, volume.groups)) for i in range(volume.users)),
        "roles": sum(len(make_roles(seed, i, "", now, volume.groups)) for i in range(volume.users)),
        "groups": volume.groups,
        "members": sum(is_member(seed, g, i) for g in range(volume.groups) for i in range(volume.users)),
    }


def _install(router: Router, context: VendorContext, volume: OktaVolume) -> None:
    api = _OktaApi(context, volume)
    quota = dict(retry_after_header=None)  # Okta's 429 says when to come back in X-Rate-Limit-Reset, not Retry-After
    for pattern, name, handler in (
        (r"/api/v1/users", "okta.users", api.users),
        (r"/api/v1/users/(?P<user_id>[^/]+)/factors", "okta.factors", api.factors),
        (r"/api/v1/users/(?P<user_id>[^/]+)/roles", "okta.user_roles", api.user_roles),
        (r"/api/v1/groups", "okta.groups", api.groups),
        (r"/api/v1/groups/(?P<group_id>[^/]+)/users", "okta.group_members", api.group_members),
    ):
        router.add("GET", pattern, name, api.metered(handler), api.error, **quota)


register_vendor(Vendor("okta", OktaVolume, _install))
