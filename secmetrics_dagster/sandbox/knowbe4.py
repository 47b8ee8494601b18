"""KnowBe4 in the sandbox: the Reporting API's users and training enrollments, modelled on us.api.knowbe4.com:
Bearer API keys, bare JSON arrays paged by `page` (from 1) and `per_page` (at most 500; more is silently capped),
and the account's burst limit answered with 429 and Retry-After (volume `burst_limit`, 0 = unlimited).

Records are computed from (seed, index) when a page is served; every tenth user (index % 10 == 7) is archived,
so the k-th active or archived user is found without scanning.

Sources: KnowBe4's Reporting API reference (https://developer.knowbe4.com/, sections Authentication, Pagination,
Rate Limiting, Errors; the stored copy read for this module shows the Authentication text only, so the other
behaviours cite what could be found and say where nothing could).
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Optional

from .server import Request, Response, Router, Vendor, VendorContext, register_vendor


@dataclass(frozen=True)
class KnowBe4Volume:
    """How much KnowBe4 data the sandbox serves; each int field is also a CLI flag (--knowbe4-users, ...)."""

    users: int = 80
    enrollments: int = 240
    burst_limit: int = 4  # requests per second per account (KnowBe4's documented burst limit); 0 = unlimited

    def __post_init__(self) -> None:
        for name in ("users", "enrollments", "burst_limit"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"KnowBe4Volume.{name} must be a non-negative int, got {value!r}")


# per_page up to 500 (third-party integrations document 500 as the page maximum, e.g. the Assurix KnowBe4 data sheet)
# and 100 when not given (Nexla's KnowBe4 connector: "up to 100 users per page by default"). What KnowBe4 does with
# per_page > 500 is not documented in any source found: the sandbox caps it silently (an assumption).
MAX_PER_PAGE = 500
DEFAULT_PER_PAGE = 100
CONTENT_TYPE = "application/json; charset=utf-8"
_ARCHIVED_SLOT = 7  # user i is archived when i % 10 == 7

_MESSAGES = {
    400: "Bad Request",
    401: "Unauthorized: your API key is wrong or has been revoked",
    403: "Forbidden: the API is available to Platinum and Diamond subscriptions",
    404: "Not Found",
    429: "Too Many Requests: API rate limit exceeded",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def kb4_error(status: int, message: Optional[str] = None, headers: Optional[dict[str, str]] = None) -> Response:
    # No source found for KnowBe4's error body; {"message": ...} is an assumption. The 403 text restates the docs'
    # "Our APIs are available to Platinum and Diamond customers" (developer.knowbe4.com, Introduction).
    return Response(
        status,
        {"message": message or _MESSAGES.get(status, f"HTTP {status}")},
        content_type=CONTENT_TYPE,
        headers=dict(headers or {}),
    )


# --------------------------------------------------------------------------------------------- indexing


def is_archived(index: int) -> bool:
    return index % 10 == _ARCHIVED_SLOT


def count_with_status(users: int, archived: bool) -> int:
    archived_count = max(0, (users - _ARCHIVED_SLOT + 9) // 10)
    return archived_count if archived else users - archived_count


def nth_with_status(k: int, archived: bool) -> int:
    """Index of the k-th (0-based) active or archived user."""
    if archived:
        return 10 * k + _ARCHIVED_SLOT
    block, slot = divmod(k, 9)
    return 10 * block + (slot if slot < _ARCHIVED_SLOT else slot + 1)


# ---------------------------------------------------------------------------------------------- records

_EPOCH = datetime(2020, 1, 6, 9, 0, 0, tzinfo=UTC)
_FIRST = [
    "Sarah",
    "Aaron",
    "Bill",
    "Don",
    "Erin",
    "Fatima",
    "George",
    "Hana",
    "Ivan",
    "Julia",
    "Kofi",
    "Lena",
    "Marco",
    "Nadia",
    "Oscar",
    "Priya",
    "Rafael",
    "Sven",
    "Tomasz",
    "Yara",
]
_LAST = [
    "Thomas",
    "Anderson",
    "Murray",
    "Juan",
    "Brooks",
    "Rahman",
    "Hughes",
    "Sato",
    "Petrov",
    "Weber",
    "Mensah",
    "Fischer",
    "Rossi",
    "Aziz",
    "Lind",
    "Nair",
    "Ortega",
    "Olsen",
    "Nowak",
    "Haddad",
]
_DEPARTMENTS = ["Sales", "Engineering", "Finance", "HR", "Marketing", "Support", "Legal", "IT"]
_LOCATIONS = ["Tampa", "London", "Berlin", "Toronto", "Sydney", "Remote"]
_MODULES = [
    ("Store Purchase", "2026 Kevin Mitnick Security Awareness Training - 45"),
    ("Store Purchase", "An Introduction to the General Data Protection Regulation (GDPR)"),
    ("Store Purchase", "Social Engineering Red Flags"),
    ("Store Purchase", "Phishing Fundamentals"),
    ("Store Purchase", "Privacy Edition Season 1: Ep 03 - Once More Unto the Breach (Retention & Disposal)"),
    ("Uploaded Policy", "Acceptable Use Policy"),
    ("Uploaded Policy", "Employee Policy"),
    ("Uploaded Course", "Secure Coding Basics"),
]
_CAMPAIGNS = [
    "New Employee Onboarding",
    "2026 Security Awareness Initiative",
    "Sales Ongoing Campaign",
    "Annual Policy Acknowledgement",
    "Phish-Prone Remedial Training",
]
_STATUSES = ["Passed"] * 6 + ["Completed"] * 2 + ["In Progress"] * 2 + ["Not Started"] * 2 + ["Past Due"]


def _ts(moment: Optional[datetime]) -> Optional[str]:
    return None if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def user_number(seed: int, index: int) -> int:
    return 700000 + seed % 1000 * 10000 + index  # KnowBe4 ids are plain integers


def _person(seed: int, index: int) -> tuple[str, str, str]:
    rng = random.Random(f"{seed}:knowbe4:person:{index}")
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    return first, last, f"{first[0].lower()}_{last.lower()}{index}@kb4-demo.example"


def make_user(seed: int, index: int) -> dict[str, Any]:
    rng = random.Random(f"{seed}:knowbe4:user:{index}")
    first, last, email = _person(seed, index)
    joined = _EPOCH + timedelta(seconds=rng.randrange(4 * 365 * 24 * 3600))
    archived = is_archived(index)
    manager_first, manager_last, manager_email = _person(seed, index // 12)
    return {
        "id": user_number(seed, index),
        "employee_number": str(40000 + index),
        "first_name": first,
        "last_name": last,
        "job_title": rng.choice(["Account Executive", "Engineer", "Analyst", "Manager", "Coordinator"]),
        "email": email,
        "phish_prone_percentage": round(rng.uniform(0, 45), 1),
        "phone_number": f"+1-555-{rng.randint(100, 999)}-{rng.randint(1000, 9999)}",
        "extension": None,
        "mobile_phone_number": None,
        "location": rng.choice(_LOCATIONS),
        "division": rng.choice(["Americas", "EMEA", "APAC"]),
        "manager_name": f"{manager_first} {manager_last}",
        "manager_email": manager_email,
        "provisioning_managed": rng.random() < 0.7,
        "provisioning_guid": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "groups": sorted({3264 + rng.randrange(6) for _ in range(rng.randint(1, 3))}),
        "current_risk_score": round(rng.uniform(5, 75), 3),
        "aliases": [],
        "joined_on": _ts(joined),
        "last_sign_in": None if rng.random() < 0.2 else _ts(joined + timedelta(days=rng.randint(1, 600))),
        "status": "archived" if archived else "active",
        "organization": "KB4-Demo",
        "department": rng.choice(_DEPARTMENTS),
        "language": "English - United States",
        "comment": "",
        "employee_start_date": _ts(joined - timedelta(days=rng.randint(0, 30))),
        "archived_at": _ts(joined + timedelta(days=rng.randint(30, 900))) if archived else None,
        "custom_field_1": None,
        "custom_field_2": None,
        "custom_field_3": None,
        "custom_field_4": None,
        "custom_date_1": None,
        "custom_date_2": None,
    }


def enrollment_user(seed: int, index: int, users: int) -> int:
    return (index * 31 + seed) % users


def make_enrollment(seed: int, index: int, users: int) -> dict[str, Any]:
    rng = random.Random(f"{seed}:knowbe4:enrollment:{index}")
    user = enrollment_user(seed, index, users)
    first, last, email = _person(seed, user)
    content_type, module = rng.choice(_MODULES)
    enrolled = _EPOCH + timedelta(seconds=rng.randrange(4 * 365 * 24 * 3600))
    status = rng.choice(_STATUSES)
    started = (
        None
        if status in ("Not Started", "Past Due") and rng.random() < 0.7
        else enrolled + timedelta(days=rng.randint(0, 20))
    )
    done = status in ("Passed", "Completed")
    return {
        "enrollment_id": 450000000 + seed % 1000 * 100000 + index,
        "content_type": content_type,
        "module_name": module,
        "user": {"id": user_number(seed, user), "first_name": first, "last_name": last, "email": email},
        "campaign_name": rng.choice(_CAMPAIGNS),
        "enrollment_date": _ts(enrolled),
        "start_date": _ts(started),
        "completion_date": _ts((started or enrolled) + timedelta(minutes=rng.randint(5, 3000))) if done else None,
        "status": status,
        "time_spent": rng.randint(60, 3600) if started else 0,
        "policy_acknowledged": content_type == "Uploaded Policy" and done,
    }


# ------------------------------------------------------------------------------------------------ routes


class _Burst:
    """KnowBe4's per-account burst limit, in one-second windows.

    The Reporting API has "daily request limits and burst request limits" (KnowBe4 Fair Usage Policy,
    support.knowbe4.com article 45870261990035); 4 requests per second is the burst figure public clients pace to
    (e.g. the 0.25 s request_delay of a KnowBe4 collector found in the code corpus; the docs' Rate Limiting section
    was not readable here). The daily limit is not modelled. A 429 with `Retry-After: 1`: no source for the header.
    """

    def __init__(self, limit: int, clock: Callable[[], float] = time.time) -> None:
        self.limit = limit
        self.clock = clock
        self._lock = threading.Lock()
        self._second = 0
        self._count = 0

    def allow(self) -> bool:
        if not self.limit:
            return True
        with self._lock:
            second = int(self.clock())
            if second != self._second:
                self._second, self._count = second, 0
            self._count += 1
            return self._count <= self.limit


class _KnowBe4Api:
    def __init__(self, context: VendorContext, volume: KnowBe4Volume) -> None:
        self.seed = context.seed
        self.token = context.token
        self.volume = volume
        self.burst = _Burst(volume.burst_limit)

    def error(self, status: int, request: Request) -> Response:
        return kb4_error(status)

    def guarded(self, handler: Callable[[Request], Response]) -> Callable[[Request], Response]:
        def serve(request: Request) -> Response:
            if not self.burst.allow():
                return kb4_error(429, headers={"Retry-After": "1"})
            # "Authorization: Bearer <your_token>" (developer.knowbe4.com, Authentication); a wrong key is 401.
            scheme, _, credential = (request.headers.get("Authorization") or "").strip().partition(" ")
            if scheme.lower() != "bearer" or credential.strip() != self.token:
                return kb4_error(401)
            return handler(request)

        return serve

    @staticmethod
    def _paging(request: Request) -> tuple[Optional[Response], int, int]:
        try:
            page = int(request.arg("page", "1") or "1")
            per_page = int(request.arg("per_page", str(DEFAULT_PER_PAGE)) or DEFAULT_PER_PAGE)
        except ValueError:
            return kb4_error(400, "page and per_page must be integers"), 0, 0
        if page < 1 or per_page < 1:
            return kb4_error(400, "page and per_page must be positive"), 0, 0
        return None, page, min(per_page, MAX_PER_PAGE)

    @staticmethod
    def _reply(records: list[dict]) -> Response:
        # A bare JSON array per page, no total, no next link: paging ends on a short (or empty) page, as public
        # clients page ("paginate using page=N until an empty page is returned", paramify's KnowBe4 fetcher notes).
        # A third-party guide claims Total / Total-Pages / Link headers; no KnowBe4 source confirms it, so none is
        # served. X-Request-Id: the docs have a "Request IDs" section (not readable here), header name assumed.
        return Response(
            200,
            records,
            content_type=CONTENT_TYPE,
            headers={"X-Request-Id": str(uuid.uuid4())},
            records_key="",
            paginated=True,
        )

    def users(self, request: Request) -> Response:
        error, page, per_page = self._paging(request)
        if error:
            return error
        # GET /v1/users lists active users unless status=archived (the docs' Users section, not readable here: the
        # two listings are how our collector and public clients read all users); 400 for another value: no source.
        status = request.arg("status", "active")
        if status not in ("active", "archived"):
            return kb4_error(400, f"status must be active or archived, got {status!r}")
        archived = status == "archived"
        total = count_with_status(self.volume.users, archived)
        start = (page - 1) * per_page
        records = [
            make_user(self.seed, nth_with_status(k, archived)) for k in range(start, min(start + per_page, total))
        ]
        return self._reply(records)

    def enrollments(self, request: Request) -> Response:
        error, page, per_page = self._paging(request)
        if error:
            return error
        users, seed = self.volume.users, self.seed
        start = (page - 1) * per_page
        if users == 0:
            return self._reply([])
        # exclude_archived_users: no source found for this filter or its semantics (kept as the sandbox had it).
        if (request.arg("exclude_archived_users") or "").lower() == "true":
            # A scan, fine for sandbox volumes: archived users' enrollments are interleaved with the rest.
            kept = (i for i in range(self.volume.enrollments) if not is_archived(enrollment_user(seed, i, users)))
            indexes = [i for n, i in enumerate(kept) if start <= n < start + per_page]
        else:
            indexes = list(range(start, min(start + per_page, self.volume.enrollments)))
        return self._reply([make_enrollment(seed, i, users) for i in indexes])


def _install(router: Router, context: VendorContext, volume: KnowBe4Volume) -> None:
    api = _KnowBe4Api(context, volume)
    router.add("GET", r"/v1/users", "knowbe4.users", api.guarded(api.users), api.error)
    router.add("GET", r"/v1/training/enrollments", "knowbe4.enrollments", api.guarded(api.enrollments), api.error)


register_vendor(Vendor("knowbe4", KnowBe4Volume, _install))
