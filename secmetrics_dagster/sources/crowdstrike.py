"""CrowdStrike Falcon: hosts, Spotlight vulnerabilities and Zero Trust assessments, through falconpy's service classes.

falconpy makes the HTTP calls; this module adds what it leaves out: retries (it never retries, 429 included),
slowing down before `X-Ratelimit-Remaining` reaches zero, renewing a token the API refused mid-pull, resuming an
expired Spotlight cursor from a watermark, errors that name the endpoint and the variable to check, and keeping
the configured base URL when a token answer names another region.
"""

from __future__ import annotations

import functools
import math
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Optional, TypeVar

import requests
from requests.adapters import HTTPAdapter

from ..collection.errors import AuthError, CollectionError, ConfigError
from ..collection.http import (
    RETRYABLE_STATUS,
    HttpSettings,
    Pacer,
    Retrier,
    RetryableFailure,
    redact_url,
    retry_after_seconds,
)
from ..collection.settings import env_setting
from .base import DatasetSpec, Pull, Source, VendorResource

VENDOR = "CrowdStrike Falcon"
DEFAULT_REGION = "us-1"
# The seed collector's filter: vulnerabilities with a CVE seen in the last 14 days.
DEFAULT_SPOTLIGHT_FILTER = "cve.id:!['']+last_seen_within:'14'"
SPOTLIGHT_FACETS = ("cve", "host_info", "remediation")
SPOTLIGHT_SORT = "created_timestamp|asc"  # immutable and range-filterable: the watermark a restart resumes from
MAX_PAGE = 5000
ZTA_BATCH = 100  # ids travel in the query string, one `ids=` each
CURSOR_RESTARTS_WITHOUT_PROGRESS = 3

# Falcon's API hosts per cloud (falconpy's BaseURL has the same); the names are what the Falcon console shows.
REGION_URLS = {
    "us-1": "https://api.crowdstrike.com",
    "us-2": "https://api.us-2.crowdstrike.com",
    "eu-1": "https://api.eu-1.crowdstrike.com",
    "us-gov-1": "https://api.laggar.gcw.crowdstrike.com",
    "us-gov-2": "https://api.us-gov-2.crowdstrike.mil",
}
_AID = re.compile(r"^[0-9a-fA-F]{32}$")


def resolve_base_url(value: Optional[str]) -> str:
    """FALCON_BASE_URL as falconpy wants it: a region name becomes its API host, a URL loses its trailing slash."""
    text = (value or DEFAULT_REGION).strip()
    if text.lower() in REGION_URLS:
        return REGION_URLS[text.lower()]
    if "://" not in text and "." in text:
        text = "https://" + text
    match = re.match(r"^(https?)://([^/\s?#]+)(/[^\s?#]*)?$", text)
    if not match:
        raise ConfigError(
            f"FALCON_BASE_URL {value!r} is neither a Falcon region ({', '.join(REGION_URLS)}) nor an http(s) URL."
        )
    return text.rstrip("/")


class CrowdStrikeResource(VendorResource):
    """Falcon API client credentials, cloud and paging. The credentials enter config only as EnvVar references."""

    settings_title: ClassVar[str] = "CrowdStrike Falcon"

    client_id: Optional[str] = env_setting(
        "FALCON_CLIENT_ID",
        "API client ID (scopes: Hosts, Vulnerabilities, Zero Trust Assessment: read).",
        required=True,
        secret=True,
    )
    client_secret: Optional[str] = env_setting("FALCON_SECRET", "API client secret.", required=True, secret=True)
    base_url: str = env_setting(
        "FALCON_BASE_URL",
        "Cloud: a region (`us-1`, `us-2`, `eu-1`, `us-gov-1`, `us-gov-2`) or an http(s) URL "
        "(proxy, private endpoint). A URL is kept even when a token answer names another region.",
        DEFAULT_REGION,
    )
    spotlight_filter: str = env_setting(
        "FALCON_SPOTLIGHT_FILTER", "FQL filter of `crowdstrike_vulnerabilities`.", DEFAULT_SPOTLIGHT_FILTER
    )
    spotlight_limit: int = env_setting(
        "FALCON_SPOTLIGHT_LIMIT", "Spotlight page size (1-5000).", 1000, low=1, high=MAX_PAGE
    )
    hosts_limit: int = env_setting(
        "FALCON_HOSTS_LIMIT", "Host ids per devices query page (1-5000).", 5000, low=1, high=MAX_PAGE
    )
    details_batch: int = env_setting(
        "FALCON_HOSTS_DETAILS_BATCH",
        "Host ids per details request (1-5000); with FALCON_WORKERS, what a pull holds in memory.",
        100,
        low=1,
        high=MAX_PAGE,
    )
    workers: int = env_setting(
        "FALCON_WORKERS", "Detail and assessment batches fetched at once (1 = one at a time).", 8, low=1, high=64
    )
    proxy: Optional[str] = env_setting(
        "FALCON_PROXY",
        "Proxy URL for every Falcon request (falconpy's `proxy`); unset, `HTTPS_PROXY` "
        "applies. A private CA: `REQUESTS_CA_BUNDLE`.",
    )
    zta_batch: int = ZTA_BATCH
    # X-Ratelimit-Limit counts requests per minute on Falcon; a sandbox may use a shorter window.
    rate_limit_window: float = 60.0

    def validate_settings(self) -> None:
        if not 1 <= self.zta_batch <= 1000:
            raise ConfigError(f"{VENDOR}: zta_batch must be from 1 to 1000, got {self.zta_batch}")
        resolve_base_url(self.base_url)

    def client(self, settings: HttpSettings, logger: Any = None) -> FalconClient:
        return FalconClient(self, settings, logger)


# ------------------------------------------------------------------------------------- the falconpy layer


@dataclass(frozen=True)
class Endpoint:
    """One Falcon operation: the falconpy service class and method that call it, and what errors should name."""

    service: str  # the falconpy class, by name: falconpy is imported when a client is built, not with this module
    function: str
    method: str
    path: str
    scope: str  # the API client scope it needs, for 403 messages


DEVICES = Endpoint("Hosts", "query_devices_by_filter", "GET", "/devices/queries/devices/v1", "Hosts: Read")
DEVICE_DETAILS = Endpoint("Hosts", "get_device_details", "POST", "/devices/entities/devices/v2", "Hosts: Read")
SPOTLIGHT = Endpoint(
    "SpotlightVulnerabilities",
    "query_vulnerabilities_combined",
    "GET",
    "/spotlight/combined/vulnerabilities/v1",
    "Vulnerabilities: Read",
)
ZTA = Endpoint(
    "ZeroTrustAssessment",
    "get_assessment",
    "GET",
    "/zero-trust-assessment/entities/assessments/v1",
    "Zero Trust Assessment: Read",
)
TOKEN = Endpoint("OAuth2", "login", "POST", "/oauth2/token", "")

CREDENTIALS_HINT = (
    "Check FALCON_CLIENT_ID and FALCON_SECRET (an API client of this Falcon cloud), and FALCON_BASE_URL "
    "(the cloud the API client belongs to: us-1, us-2, eu-1, us-gov-1 or a URL)"
)


def _falconpy_version() -> str:
    from falconpy import __version__

    return __version__


class FalconApiError(CollectionError):
    """A Falcon answer that is neither success nor worth retrying (4xx other than 401/403/429)."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


@functools.lru_cache(maxsize=1)
def _falcon_auth_class() -> type:
    """falconpy's OAuth2 with the region rule below; built on first use, so that the processes that import the
    definitions but never pull (webserver, daemon, code server) do not load falconpy (18 MB of RSS, measured).
    Step processes get it from the forkserver's preload (definitions.PRELOADED_SDKS)."""
    from falconpy import OAuth2

    class FalconAuth(OAuth2):
        """falconpy's OAuth2, except that a token answer's X-Cs-Region may not move a URL the user configured.

        falconpy switches `base_url` to the region's public host after every login; for a proxy, a private endpoint
        or the sandbox that would send the next request, bearer token included, somewhere else. Between CrowdStrike's
        own clouds (a region name was configured) the switch is kept, as falconpy means it: it rescues a wrong region.
        """

        def __init__(self, *, follow_region: bool, **kwargs: Any):
            self.follow_region = follow_region
            self.region_redirect: Optional[str] = None  # the last host a token answer pointed to
            super().__init__(**kwargs)

        @property
        def base_url(self) -> str:
            return self.config.base_url

        @base_url.setter
        def base_url(self, value: str) -> None:
            if value == self.config.base_url:
                return
            self.region_redirect = value
            if self.follow_region:
                self.config.base_url = value

    return FalconAuth


def _header(headers: Any, name: str) -> Optional[str]:
    if not isinstance(headers, dict):
        return None
    lowered = name.lower()
    return next((str(v) for k, v in headers.items() if str(k).lower() == lowered), None)


def _errors(body: Any) -> list[dict]:
    errors = body.get("errors") if isinstance(body, dict) else None
    return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


def _describe(body: Any, secrets: Iterable[str] = ()) -> str:
    messages = [str(e.get("message") or e.get("code") or "") for e in _errors(body)][:3]
    text = " ".join("; ".join(m for m in messages if m).split())[:300] or "no error message"
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _sdk_failure(body: Any, where: str, secrets: Iterable[str] = ()) -> Exception:
    """What a falconpy-made result (no `meta`: the SDK caught an exception) stands for: mostly worth a retry."""
    detail = _describe(body, secrets)
    if "certificate_verify_failed" in detail.lower() or "sslcertverificationerror" in detail.lower():
        return CollectionError(
            f"{VENDOR}: {where}: the server's TLS certificate is not trusted ({detail[:200]}). If a proxy re-signs "
            "TLS, point REQUESTS_CA_BUNDLE at its CA bundle; check FALCON_BASE_URL otherwise."
        )
    return RetryableFailure(_sdk_cause(detail), where)


def _sdk_cause(detail: str) -> str:
    lowered = detail.lower()
    if "timed out" in lowered:
        kind = "timed out"
    elif "incompleteread" in lowered or "connection broken" in lowered:
        kind = "body cut short"
    elif "connection" in lowered or "max retries exceeded" in lowered:
        kind = "connection failed"
    else:
        kind = "malformed body"
    return f"{kind}; falconpy reported: {detail[:200]}"


class FalconClient:
    """falconpy's Hosts, SpotlightVulnerabilities and ZeroTrustAssessment behind the project's retries and counters.

    It stands where `HttpSession` does for HTTP sources: `stats`, a context manager, and `call()` for one operation.
    """

    def __init__(
        self,
        resource: CrowdStrikeResource,
        settings: HttpSettings,
        logger: Any = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.resource = resource
        self.base_url = resolve_base_url(resource.base_url)
        self.retrier = Retrier(VENDOR, settings, logger=logger, sleep=sleep)
        self.stats = self.retrier.stats
        self.log = self.retrier.log
        self._secrets = tuple(s for s in (resource.client_secret,) if s)
        self._pacer = Pacer(sleep)
        self._rate_lock = threading.Lock()
        self._rate: tuple[int, int] | None = None  # (X-Ratelimit-Limit, X-Ratelimit-Remaining) last seen
        self._login_lock = threading.Lock()
        self._services: Optional[dict[str, Any]] = None
        # One pooled session for every thread; falconpy otherwise opens a new connection per request.
        self.session = requests.Session()
        adapter = HTTPAdapter(pool_connections=2, pool_maxsize=resource.workers + 2)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        self.auth = _falcon_auth_class()(
            follow_region=self.base_url in REGION_URLS.values(),
            client_id=resource.client_id,
            client_secret=resource.client_secret,
            base_url=self.base_url,
            # True lets requests apply REQUESTS_CA_BUNDLE / SSL_CERT_FILE, as everywhere else in the project.
            ssl_verify=True,
            proxy={"http": resource.proxy, "https": resource.proxy} if resource.proxy else None,
            timeout=(settings.connect_timeout, settings.read_timeout),
            user_agent=f"{settings.user_agent} crowdstrike-falconpy/{_falconpy_version()}",
            session=self.session,
        )

    # lifecycle

    def __enter__(self) -> FalconClient:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None and self._services is not None:
                self.auth.logout()  # revoke the token; best effort, a failed revoke does not fail the pull
        except Exception as revoke_error:  # noqa: BLE001
            self.log.debug(f"{VENDOR}: token revocation failed: {revoke_error}")
        finally:
            self.close()

    def close(self) -> None:
        self.session.close()

    def _where(self, endpoint: Endpoint) -> str:
        return f"{endpoint.method} {redact_url(self.auth.base_url + endpoint.path)}"

    # the token

    def _login(self) -> None:
        """Get a token (falconpy's login), turning its result into success, a retry or a clear refusal."""
        self.retrier.count("requests")
        where = self._where(TOKEN)
        try:
            result = self.auth.login()
        except (KeyError, TypeError, AttributeError) as exc:  # a 201 whose body was not a token
            raise RetryableFailure(f"malformed token answer ({type(exc).__name__})", where) from None
        status = result.get("status_code") if isinstance(result, dict) else None
        body = result.get("body") if isinstance(result, dict) else None
        headers = result.get("headers") if isinstance(result, dict) else None
        if status == 201 and self.auth.token_value:
            if self.auth.region_redirect:
                redirect = self.auth.region_redirect
                region = _header(headers, "X-Cs-Region") or redirect
                if self.auth.follow_region:
                    self.log.warning(
                        f"{VENDOR}: the API client belongs to the cloud {region}; falconpy moved to "
                        f"{redirect}. Set FALCON_BASE_URL={region} to skip the detour."
                    )
                else:
                    self.log.info(
                        f"{VENDOR}: the token answer names the cloud {region}; staying on the configured "
                        f"FALCON_BASE_URL {self.auth.base_url}."
                    )
                self.auth.region_redirect = None
            return
        if not isinstance(body, dict) or "meta" not in body:
            raise _sdk_failure(body, where, self._secrets)
        detail = _describe(body, self._secrets)
        if status in (401, 403):
            raise AuthError(f"{VENDOR}: {where} was refused with HTTP {status} ({detail}). {CREDENTIALS_HINT}.")
        if status in RETRYABLE_STATUS:
            raise RetryableFailure(
                f"HTTP {status}: {detail}", where, retry_after=self._retry_after(headers), throttled=status == 429
            )
        raise CollectionError(f"{VENDOR}: {where} failed with HTTP {status}: {detail}")

    def _ensure_services(self) -> dict[str, Any]:
        import falconpy

        with self._login_lock:
            if self._services is None:
                self._login()
                # Built after our login: a service class logs in by itself (unretried) when the token is unset.
                self._services = {
                    name: getattr(falconpy, name)(auth_object=self.auth)
                    for name in ("Hosts", "SpotlightVulnerabilities", "ZeroTrustAssessment")
                }
            return self._services

    def _renew(self, refused_token: Optional[str]) -> None:
        with self._login_lock:
            if self.auth.token_value and self.auth.token_value != refused_token:
                return  # another thread renewed it meanwhile
            self._login()

    # rate limit

    @staticmethod
    def _retry_after(headers: Any) -> Optional[float]:
        # Falcon's X-Ratelimit-Retryafter is epoch seconds on its clock; falconpy hands headers over as a plain dict.
        return retry_after_seconds(lambda name: _header(headers, name), ("X-Ratelimit-Retryafter", "Retry-After"))

    def _note_rate_limit(self, headers: Any) -> None:
        try:
            limit = int(_header(headers, "X-Ratelimit-Limit") or "")
            remaining = int(_header(headers, "X-Ratelimit-Remaining") or "")
        except ValueError:
            return
        with self._rate_lock:
            self._rate = (limit, remaining)

    def _slow_down(self) -> None:
        """Near the end of the rate limit, space requests at its refill rate instead of running into 429s."""
        with self._rate_lock:
            rate = self._rate
        if not rate or rate[0] <= 0:
            return
        limit, remaining = rate
        # Requests in flight on other threads spend the remainder too, hence the workers in the margin.
        if remaining <= max(self.resource.workers + 2, math.ceil(limit * 0.05)):
            self.retrier.count("paced_seconds", self._pacer.wait(self.resource.rate_limit_window / limit))

    # one operation

    def call(self, endpoint: Endpoint, *, missing_ok: bool = False, **kwargs: Any) -> dict:
        """Run one falconpy operation with retries (logging in first if needed); returns the answer's body.

        `missing_ok`: a 404 whose errors are all "not found" (entity lookups by id) is an answer, not a failure.
        """
        renewed = False

        def attempt() -> dict:
            nonlocal renewed
            operation = getattr(self._ensure_services()[endpoint.service], endpoint.function)
            self._slow_down()
            token = self.auth.token_value
            result = operation(**kwargs)
            status = result.get("status_code") if isinstance(result, dict) else None
            headers = result.get("headers") if isinstance(result, dict) else None
            body = result.get("body") if isinstance(result, dict) else None
            where = self._where(endpoint)
            self._note_rate_limit(headers)
            self.retrier.count("bytes", int(_header(headers, "Content-Length") or 0))
            if not isinstance(body, dict) or "meta" not in body:
                raise _sdk_failure(body, where, self._secrets)
            if isinstance(status, int) and 200 <= status < 300:
                return body
            if missing_ok and status == 404 and all(e.get("code") == 404 for e in _errors(body)):
                return body
            detail = _describe(body, self._secrets)
            if status in RETRYABLE_STATUS:
                raise RetryableFailure(
                    f"HTTP {status}: {detail}", where, retry_after=self._retry_after(headers), throttled=status == 429
                )
            if status == 401 and not renewed:
                renewed = True  # an expired or revoked token: one fresh token, then the same request again
                self._renew(token)
                raise RetryableFailure(
                    f"HTTP 401 ({detail}): the token expired or was revoked; got a new one", where, retry_after=0
                )
            if status == 401:
                raise AuthError(
                    f"{VENDOR}: {where} was refused with HTTP 401 ({detail}) even with a new token. {CREDENTIALS_HINT}."
                )
            if status == 403:
                raise AuthError(
                    f"{VENDOR}: {where} was refused with HTTP 403 ({detail}). Check that the API client "
                    f"FALCON_CLIENT_ID has the scope '{endpoint.scope}'."
                )
            raise FalconApiError(f"{VENDOR}: {where} failed with HTTP {status}: {detail}", status or 0)

        return self.retrier.call(attempt)


# ------------------------------------------------------------------------------------------------ pulls

T = TypeVar("T")
R = TypeVar("R")


def _chunks(items: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def ordered_map(fn: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[R]:
    """fn over items on a small thread pool, results in input order, at most `workers + 1` in flight.

    The bound is what keeps memory flat: the caller writes each result to the spool before more are fetched.
    """
    if workers <= 1:
        for item in items:
            yield fn(item)
        return
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="falcon")
    pending: deque[Future] = deque()
    try:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) > workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _body_list(body: dict, endpoint: Endpoint, key: str = "resources") -> list:
    value = body.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise CollectionError(f"{VENDOR}: {endpoint.method} {endpoint.path} answered without a `{key}` list")
    return value


def _pagination(body: dict) -> dict:
    meta = body.get("meta") if isinstance(body.get("meta"), dict) else {}
    return meta.get("pagination") if isinstance(meta.get("pagination"), dict) else {}


def _host_id_batches(pull: Pull, client: FalconClient) -> Iterator[list[str]]:
    """Host ids, page by page (offset/limit), each id once, in batches for the details call."""
    resource: CrowdStrikeResource = pull.resource
    seen: set[str] = set()
    offset, total, repeats = 0, None, 0
    while True:
        body = client.call(DEVICES, offset=offset, limit=resource.hosts_limit)
        ids = [i for i in _body_list(body, DEVICES) if isinstance(i, str)]
        reported = _pagination(body).get("total")
        if total is None:
            if not isinstance(reported, int):
                raise CollectionError(f"{VENDOR}: {DEVICES.path} answered without meta.pagination.total")
            total = reported
            pull.spool.expect(total)
        new = [i for i in dict.fromkeys(ids) if i not in seen]
        if ids and not new:
            # A page we already had (a replay, or hosts shifting under the offset): ask for this offset again.
            repeats += 1
            client.retrier.count("repeated_pages")
            if repeats > 3:
                raise CollectionError(
                    f"{VENDOR}: {DEVICES.path} keeps answering offset {offset} with hosts already "
                    "received; the pull stopped rather than loop."
                )
            pull.log.warning(
                f"{VENDOR}: {DEVICES.path} at offset {offset} served only hosts already received; asking again"
            )
            continue
        repeats = 0
        seen.update(new)
        yield from _chunks(new, resource.details_batch)
        offset += len(ids)
        if not ids or offset >= (reported if isinstance(reported, int) else total):
            return


def pull_hosts(pull: Pull) -> None:
    client: FalconClient = pull.client

    def details(ids: list[str]) -> list[dict]:
        body = client.call(DEVICE_DETAILS, missing_ok=True, ids=ids)
        resources = _body_list(body, DEVICE_DETAILS)
        if len(resources) != len(ids):
            pull.log.warning(
                f"{VENDOR}: {DEVICE_DETAILS.path} returned {len(resources)} of {len(ids)} hosts ({_describe(body)})"
            )
        return resources

    for resources in ordered_map(details, _host_id_batches(pull, client), pull.resource.workers):
        pull.spool.extend(resources)


def _parse_time(value: Any) -> Optional[datetime]:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class CursorExpired(Exception):
    pass


def pull_vulnerabilities(pull: Pull) -> None:
    """Spotlight, sorted by created_timestamp: when an `after` cursor is refused, the query starts again from the
    last created_timestamp written (>=), and the records already written at that instant are skipped."""
    client: FalconClient = pull.client
    resource: CrowdStrikeResource = pull.resource
    base_filter = resource.spotlight_filter.strip() or DEFAULT_SPOTLIGHT_FILTER
    watermark: Optional[datetime] = None
    watermark_text = ""
    at_watermark: set[str] = set()  # ids written with created_timestamp == watermark
    fruitless_restarts = 0
    while True:
        query = base_filter if watermark is None else f"({base_filter})+created_timestamp:>='{watermark_text}'"
        after: Optional[str] = None
        written_before = pull.spool.count
        try:
            while True:
                params: dict[str, Any] = {
                    "filter": query,
                    "limit": resource.spotlight_limit,
                    "sort": SPOTLIGHT_SORT,
                    "facet": list(SPOTLIGHT_FACETS),
                }
                if after:
                    params["after"] = after
                try:
                    body = client.call(SPOTLIGHT, **params)
                except FalconApiError as exc:
                    if after and exc.status == 400:
                        raise CursorExpired(str(exc)) from None
                    raise
                page = _body_list(body, SPOTLIGHT)
                fresh, out_of_order = [], 0
                for record in page:
                    if not isinstance(record, dict):
                        raise CollectionError(f"{VENDOR}: {SPOTLIGHT.path} returned a non-object vulnerability")
                    created = _parse_time(record.get("created_timestamp"))
                    if created is None:
                        raise CollectionError(
                            f"{VENDOR}: vulnerability {str(record.get('id'))[:80]} has no valid "
                            "created_timestamp; the pull cannot keep its place without it."
                        )
                    if watermark is not None and created < watermark:
                        out_of_order += 1  # sorted ascending, so written already (a replayed page) or unsorted
                        continue
                    if watermark is not None and created == watermark and record.get("id") in at_watermark:
                        continue  # the instant a restart resumes from: written before it
                    if watermark is None or created > watermark:
                        watermark, watermark_text, at_watermark = created, record["created_timestamp"], set()
                    at_watermark.add(record.get("id"))
                    fresh.append(record)
                if out_of_order and fresh:
                    raise CollectionError(
                        f"{VENDOR}: {SPOTLIGHT.path} did not return vulnerabilities in "
                        "created_timestamp order; the pull stopped rather than risk gaps or duplicates."
                    )
                if out_of_order and not fresh:
                    client.retrier.count("repeated_pages")
                    pull.log.warning(f"{VENDOR}: {SPOTLIGHT.path} served a page already received; skipped it")
                pull.spool.extend(fresh)
                after = _pagination(body).get("after") or None
                if not after or not page:
                    return
        except CursorExpired as expired:
            progress = pull.spool.count > written_before
            fruitless_restarts = 0 if progress else fruitless_restarts + 1
            if fruitless_restarts > CURSOR_RESTARTS_WITHOUT_PROGRESS:
                raise CollectionError(
                    f"{VENDOR}: the Spotlight cursor keeps expiring before a page arrives "
                    f"({expired}). Lower FALCON_SPOTLIGHT_LIMIT or try again later."
                ) from None
            pull.log.warning(
                f"{VENDOR}: the Spotlight `after` cursor was refused ({expired}); resuming from "
                f"created_timestamp {watermark_text or '(start)'} with {pull.spool.count} records kept"
            )


def pull_zero_trust_assessment(pull: Pull) -> None:
    client: FalconClient = pull.client
    resource: CrowdStrikeResource = pull.resource

    def aid_batches() -> Iterator[list[str]]:
        batch: list[str] = []
        for host in pull.inputs["crowdstrike_hosts"]:
            aid = str(host.get("device_id", "")) if isinstance(host, dict) else ""
            if not _AID.match(aid):  # it goes into a query string
                raise CollectionError(f"{VENDOR}: host id {aid[:40]!r} in crowdstrike_hosts is not a Falcon agent id")
            batch.append(aid)
            if len(batch) == resource.zta_batch:
                yield batch
                batch = []
        if batch:
            yield batch

    def assessments(ids: list[str]) -> tuple[list[dict], int]:
        body = client.call(ZTA, missing_ok=True, ids=ids)
        return _body_list(body, ZTA), len(_errors(body))

    missing = 0
    for resources, not_found in ordered_map(assessments, aid_batches(), resource.workers):
        pull.spool.extend(resources)
        missing += not_found
    if missing:
        pull.log.warning(
            f"{VENDOR}: {missing} host(s) have no Zero Trust assessment (Falcon answered 404 for them); "
            "hosts whose sensor does not report ZTA are normal here."
        )


def _sandbox_env(url: str, token: str) -> dict[str, str]:
    """Variables that point this source at the bundled sandbox (make demo, benchmarks)."""
    return {"FALCON_CLIENT_ID": "sandbox-client", "FALCON_SECRET": token, "FALCON_BASE_URL": url}


SOURCE = Source(
    group="crowdstrike",
    title="CrowdStrike Falcon",
    docs_url="https://falcon.crowdstrike.com/documentation/page/a2a7fc0e/crowdstrike-oauth2-based-apis",
    resource=CrowdStrikeResource,
    datasets=(
        DatasetSpec(
            "crowdstrike_hosts",
            "Hosts",
            "Every host with its details: ids paged from the devices query, details fetched in concurrent "
            "batches, each id once; the count is checked against `meta.pagination.total`.",
            "GET /devices/queries/devices/v1 + POST /devices/entities/devices/v2",
            pull=pull_hosts,
            required_fields=("device_id", "hostname", "platform_name", "last_seen"),
        ),
        DatasetSpec(
            "crowdstrike_vulnerabilities",
            "Spotlight vulnerabilities",
            "Vulnerabilities matching `FALCON_SPOTLIGHT_FILTER`, with the cve, host_info and remediation facets, "
            "paged with the `after` cursor; an expired cursor resumes from the last `created_timestamp`.",
            "GET /spotlight/combined/vulnerabilities/v1",
            pull=pull_vulnerabilities,
            required_fields=("id", "aid", "status", "cve.id", "created_timestamp"),
            allow_empty=True,
        ),
        DatasetSpec(
            "crowdstrike_zero_trust_assessment",
            "Zero Trust assessments",
            "The Zero Trust assessment of each host in `crowdstrike_hosts` (hosts without one are counted in the log).",
            "GET /zero-trust-assessment/entities/assessments/v1?ids=…",
            pull=pull_zero_trust_assessment,
            deps=("crowdstrike_hosts",),
            required_fields=("aid", "assessment.overall"),
            allow_empty=True,
        ),
    ),
    sandbox_env=_sandbox_env,
)
