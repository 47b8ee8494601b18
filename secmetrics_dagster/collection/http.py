"""The one HTTP layer every source uses: timeouts, bounded retries with backoff, Retry-After, counters,
requests held to the configured origin, and errors that carry no secret.

Retries are written out here rather than delegated to urllib3's Retry because every attempt must be
counted for the UI, malformed or truncated bodies must be retried like 5xx, vendors name their own
retry headers, and the total time spent waiting must stay inside one budget. The loop itself is
`Retrier`, so SDK-based sources (falconpy) retry, count and budget exactly like `HttpSession` does;
`require_same_origin` and `SameOriginSession` hold them to their configured origin the same way.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import logging
import math
import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Optional, TypeVar
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import requests
import requests.adapters

from .errors import AuthError, CollectionError
from .redact import RedactingLog, Redactor

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
_SENSITIVE_PARAM = re.compile(r"token|key|secret|password|signature|sig|code|assertion", re.I)


@dataclass(frozen=True)
class HttpSettings:
    """Knobs shared by every vendor; COLLECTION_HTTP_* environment variables set them."""

    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    max_retries: int = 5
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    max_total_wait: float = 300.0
    # Proactive pacing for vendors with a documented request rate (e.g. KnowBe4's 4/s); None = unpaced.
    max_requests_per_second: Optional[float] = None
    user_agent: str = "secmetrics-dagster/0.1"

    def paced(self, per_second: Optional[float]) -> HttpSettings:
        """These settings held to `per_second` too (a vendor's pace setting): the lower of it and
        max_requests_per_second; neither set, unpaced."""
        rate = min(filter(None, (self.max_requests_per_second, per_second)), default=None)
        return replace(self, max_requests_per_second=rate)


@dataclass
class HttpStats:
    requests: int = 0
    retries: int = 0
    throttled: int = 0  # 429 answers
    bytes: int = 0
    repeated_pages: int = 0
    short_pages: int = 0  # shorter than the page size asked for, with a next link, twice in a row
    waited_seconds: float = 0.0  # sleeping before retries: what the retry budget is spent on
    paced_seconds: float = 0.0  # sleeping to stay under a rate limit before being told to

    def as_metadata(self) -> dict[str, Any]:
        data = asdict(self)
        data["waited_seconds"] = round(self.waited_seconds, 3)
        data["paced_seconds"] = round(self.paced_seconds, 3)
        return {f"http_{k}": v for k, v in data.items()}


T = TypeVar("T")


class RetryableFailure(Exception):
    """One attempt failed in a way another attempt may fix: 429, 5xx, a timeout, a body cut short or malformed.

    `where` names the request ("GET https://host/path"), `retry_after` is what the vendor asked for (seconds).
    """

    def __init__(
        self,
        cause: str,
        where: str,
        *,
        retry_after: Optional[float] = None,
        throttled: bool = False,
        status: Optional[int] = None,
    ):
        super().__init__(cause)
        self.cause = cause
        self.where = where
        self.retry_after = retry_after
        self.throttled = throttled
        self.status = status


class Retrier:
    """Runs one request's attempts: bounded retries, backoff with jitter, the vendor's wait, one wait budget.

    An attempt returns its result, raises RetryableFailure to ask for another try, or raises anything else
    to stop at once (auth errors, 4xx). Every attempt is counted in `stats`, which threads may share.
    """

    def __init__(
        self,
        vendor: str,
        settings: HttpSettings,
        *,
        logger: Optional[logging.Logger] = None,
        sleep: Callable[[float], None] = time.sleep,
        stats: Optional[HttpStats] = None,
        redactor: Optional[Redactor] = None,
    ):
        self.vendor = vendor
        self.settings = settings
        self.redactor = redactor if redactor is not None else Redactor()
        self.log = logger or log
        if not isinstance(self.log, RedactingLog):
            self.log = RedactingLog(self.log, self.redactor)
        self.sleep = sleep
        self.stats = stats if stats is not None else HttpStats()
        self._lock = threading.Lock()

    def count(self, name: str, amount: float = 1) -> None:
        with self._lock:
            setattr(self.stats, name, getattr(self.stats, name) + amount)

    def backoff(self, attempt: int) -> float:
        base = min(self.settings.backoff_max, self.settings.backoff_base * (2**attempt))
        return base * random.uniform(0.5, 1.0)  # jitter spreads parallel clients apart

    def call(self, attempt_fn: Callable[[], T]) -> T:
        attempt = 0
        waited = 0.0  # the budget is per request: a long pull that is throttled now and then is not failed by it
        while True:
            self.count("requests")
            try:
                return attempt_fn()
            except RetryableFailure as failure:
                if failure.throttled:
                    self.count("throttled")
                waited += self._before_retry(failure, attempt, waited)
            attempt += 1

    def _before_retry(self, failure: RetryableFailure, attempt: int, waited: float = 0.0) -> float:
        """Wait before the next attempt and return how long, or raise when the retries or this request's wait
        budget are spent."""
        cause, where = failure.cause, failure.where
        if attempt >= self.settings.max_retries:
            raise CollectionError(
                self.redactor.text(
                    f"{self.vendor}: {where} failed after {attempt + 1} attempts: {cause}. "
                    f"The API may be down or overloaded; try again later, or raise COLLECTION_HTTP_MAX_RETRIES."
                ),
                status=failure.status,
            )
        delay = failure.retry_after if failure.retry_after is not None else self.backoff(attempt)
        over = waited + delay > self.settings.max_total_wait
        if not over:
            with self._lock:
                self.stats.retries += 1
                self.stats.waited_seconds += delay  # shown as http_waited_seconds: the whole pull's waiting
        if over:
            raise CollectionError(
                self.redactor.text(
                    f"{self.vendor}: {where} failed: {cause}; waiting {delay:.0f}s more would exceed the retry "
                    f"budget of {self.settings.max_total_wait:.0f}s (COLLECTION_HTTP_MAX_WAIT). Try again later."
                ),
                status=failure.status,
            )
        self.log.warning(
            f"{self.vendor}: {where}: {cause}; retry {attempt + 1}/{self.settings.max_retries} in {delay:.1f}s"
        )
        if delay > 0:
            self.sleep(delay)
        return delay


class Pacer:
    """Spaces calls at least `interval` seconds apart across threads, to stay under a rate limit proactively."""

    def __init__(self, sleep: Callable[[float], None] = time.sleep):
        self.sleep = sleep
        self._lock = threading.Lock()
        self._next_slot = 0.0

    def wait(self, interval: float) -> float:
        """Sleep until this call's slot; returns the seconds slept."""
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next_slot)
            self._next_slot = slot + interval
        if slot > now:
            self.sleep(slot - now)
        return slot - now


def endpoint_family(method: str, path: str) -> str:
    """The rate-limit bucket of a request: its method and path with every segment holding a digit (an id, a
    version) replaced by `*`, so `/api/v1/users/00u1/factors` and `/api/v1/users/00u2/factors` share one."""
    segments = ["*" if any(c.isdigit() for c in segment) else segment for segment in path.strip("/").split("/")]
    return f"{method.upper()} /" + "/".join(segments)


@dataclass
class _Window:
    """What is known of one rate-limit bucket's current window: the server's quota and this session's use of it."""

    limit: Optional[int] = None
    remaining: Optional[int] = None  # the server's count, less the requests sent since; None: not known
    window: float = 0.0  # the server's reset value: identifies the window an answer belongs to
    reset_at: float = 0.0  # local monotonic time the window reopens
    reserve: int = 0
    paused_until: float = 0.0
    waited_window: float = 0.0  # the last window whose reset every thread was made to wait for
    in_flight: int = 0  # requests sent and not answered yet: a new window's first answer has not counted them


class RateLimiter:
    """One pace for every thread of a session, per rate-limit bucket (an endpoint family, or a whole API key).

    Two signals pace it. A vendor's quota headers (limit, remaining, reset) give a budget per window that is
    counted down as requests leave, so workers running at once cannot overshoot it between two answers; when it
    falls to the reserve, every thread waits for the reset. A 429's Retry-After (`hold`) pauses every thread on the
    bucket, not only the one that was told. Each pause is counted once, in `pauses` and `paused_seconds`.
    """

    def __init__(
        self,
        vendor: str,
        *,
        log: Any = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        count: Optional[Callable[[str, float], None]] = None,
        max_pause: float = 120.0,
    ):
        self.vendor = vendor
        self.log = log or globals()["log"]
        self.sleep = sleep
        self.clock = clock
        self.count = count
        self.max_pause = max_pause
        self.pauses = 0  # waits for a window's reset, the quota down to its reserve
        self.paused_seconds = 0.0
        self.holds = 0  # 429s that made every thread on their bucket wait
        self._lock = threading.Lock()
        self._local = threading.local()
        self._windows: dict[str, _Window] = {}

    def _window(self, family: str) -> _Window:
        window = self._windows.get(family)
        if window is None:
            window = self._windows[family] = _Window()
        return window

    def _paused(self, seconds: float) -> None:
        self.pauses += 1
        self.paused_seconds += seconds
        if self.count is not None:
            self.count("paced_seconds", seconds)  # http_paced_seconds; not charged to any request's retry budget

    def _served(self) -> dict[str, float]:
        served = getattr(self._local, "served", None)
        if served is None:
            served = self._local.served = {}
        return served

    def before(self, family: str) -> float:
        """Wait until a request on `family` may leave, and claim one unit of its window; returns the seconds slept.

        A thread waits out each pause once (the one told by a 429 has its retry wait for it already), so an injected
        sleep that returns at once cannot spin here."""
        slept = 0.0
        served = self._served()
        while True:
            message = None
            with self._lock:
                state = self._window(family)
                now = self.clock()
                if state.remaining is not None and now >= state.reset_at:
                    state.remaining = None  # the window is over: the next answer tells the new one
                if state.remaining is not None and state.remaining <= state.reserve and state.paused_until <= now:
                    wait = min(state.reset_at - now, self.max_pause)
                    state.paused_until = now + wait
                    state.waited_window = state.window  # its late answers must not start the wait again
                    state.remaining = None
                    self._paused(wait)
                    message = (
                        f"{self.vendor}: {state.reserve} or fewer of {state.limit} requests left in this rate-limit "
                        f"window of {family} (the reserve); pausing {wait:.1f}s until it resets"
                    )
                until = state.paused_until
                if until <= now or until <= served.get(family, 0.0):
                    if state.remaining is not None:
                        state.remaining -= 1
                    state.in_flight += 1
                    return slept
                served[family] = until
            if message:
                self.log.info(message)
            self.sleep(until - now)
            slept += until - now

    def quota(self, family: str, limit: int, remaining: int, window: float, reset_in: float, reserve: int) -> None:
        """What an answer said of its window: `window` is the server's reset value (newer windows have larger ones),
        `reset_in` the seconds until it reopens."""
        with self._lock:
            state = self._window(family)
            state.limit, state.reserve = limit, reserve
            if window < state.window or window <= state.waited_window:
                return  # a late answer from a window already over, or already waited out
            if window > state.window or state.remaining is None:
                # The first answer of a window: the requests still in flight beside this one were sent without a
                # count (or against the old window) and may all land in this one: charged to it, so workers that
                # left together at the reset cannot overshoot the window by as many again.
                state.window = window
                state.remaining = max(0, remaining - max(0, state.in_flight - 1))
                state.reset_at = self.clock() + max(0.0, reset_in)
            else:
                state.remaining = min(state.remaining, remaining)

    def done(self, family: str) -> None:
        """A request that `before` let leave has its answer (its quota already read) or has failed."""
        with self._lock:
            state = self._window(family)
            state.in_flight = max(0, state.in_flight - 1)

    def hold(self, family: str, seconds: float) -> None:
        """The vendor asked for `seconds` of quiet (a 429's Retry-After): every thread on `family` waits them out;
        the calling thread's own retry waits for it, so this thread does not wait again."""
        seconds = min(max(0.0, seconds), self.max_pause)
        with self._lock:
            state = self._window(family)
            now = self.clock()
            until = now + seconds
            if until > state.paused_until + 0.05:  # a second 429 of the same burst extends it, not a new pause
                # Counted in `holds`, not http_paced_seconds: the told thread's wait is its retry's (waited_seconds).
                self.holds += 1
                state.paused_until = until
            self._served()[family] = max(until, self._served().get(family, 0.0))


@dataclass
class HttpResponse:
    status: int
    headers: Mapping[str, str]
    content: bytes
    url: str
    _json: Any = field(default=None, repr=False)

    def json(self) -> Any:
        return self._json

    def json_array(self, vendor: str, path: str) -> list:
        """The body of an endpoint the vendor documents as answering a JSON array, or a CollectionError saying what
        came instead (e.g. an object from a proxy's error page or a changed API)."""
        body = self._json
        if not isinstance(body, list):
            raise CollectionError(
                f"{vendor}: GET /{path} answered with {type(body).__name__} where {vendor} sends a JSON array; "
                "a proxy or an API change is in the way"
            )
        return body

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


def redact_url(url: str) -> str:
    """A URL safe for logs and errors: credentials in the query or userinfo are masked."""
    parts = urlsplit(url)
    query = urlencode(
        [(k, "***" if _SENSITIVE_PARAM.search(k) else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    )
    netloc = parts.hostname or ""
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str) -> Optional[tuple[str, str, int]]:
    """(scheme, host, port) of an http(s) URL, with the scheme's default port filled in; None for anything else."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # a port that is not a number
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    return scheme, parts.hostname.lower().rstrip("."), port if port is not None else _DEFAULT_PORTS[scheme]


def origin_text(url: str) -> str:
    found = origin_of(url)
    if found is None:
        return "no http(s) origin"
    scheme, host, port = found
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}" + ("" if port == _DEFAULT_PORTS[scheme] else f":{port}")


def require_same_origin(vendor: str, base_url: str, url: str, *, trusted: Sequence[str] = ()) -> str:
    """Return `url` if it is on the origin (scheme, host, port) of `base_url` or of a `trusted` URL; otherwise raise
    CollectionError. Call it before following any URL a server handed over (a next link, a download location):
    the credentials a session carries must never reach another origin."""
    allowed = [origin_of(u) for u in (base_url, *trusted)]
    if origin_of(url) in allowed and origin_of(url) is not None:
        return url
    expected = " or ".join(dict.fromkeys(origin_text(u) for u in (base_url, *trusted)))
    raise CollectionError(
        f"{vendor}: refused to send a request to {redact_url(url)}: its origin {origin_text(url)} is not the "
        f"configured {expected}. Nothing was sent there, so the credentials stayed with the configured origin. "
        "If the vendor really serves this from another host, point the vendor's endpoint setting at it."
    )


class SameOriginSession(requests.Session):
    """A requests.Session that refuses, before anything is sent, every request and redirect to another origin.

    Redirects matter: requests drops `Authorization` on a redirect to another host, but not the other headers
    vendors authenticate with (X-APIKeys, a cookie). SDK-based sources pass this session to the SDK.
    """

    def __init__(self, vendor: str, base_url: str, *, trusted: Sequence[str] = ()):
        super().__init__()
        self.vendor = vendor
        self.base_url = base_url
        self.trusted = tuple(trusted)
        # The environment's proxies (HTTPS_PROXY, NO_PROXY, ...) and CA bundle (REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE)
        # are read once per origin, not on every request as requests does with trust_env (0.2 ms a request here).
        # ~/.netrc is never read: with trust_env, requests lets a netrc entry for the vendor's host replace the
        # Authorization header the source set (Session.prepare_request), so a valid token would be refused.
        self.trust_env = False
        self._environment: dict[tuple[Any, Any], tuple[dict[str, str], Optional[str]]] = {}

    def merge_environment_settings(self, url: str, proxies: Any, stream: Any, verify: Any, cert: Any) -> dict[str, Any]:
        no_proxy = (proxies or {}).get("no_proxy")  # a caller's own no_proxy list, as requests reads it
        key = (origin_of(url), no_proxy)
        if key not in self._environment:
            bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or None
            self._environment[key] = (requests.utils.get_environ_proxies(url, no_proxy=no_proxy), bundle)
        env_proxies, bundle = self._environment[key]
        proxies = {**env_proxies, **(proxies or {})}  # a proxy the caller passes wins, as with trust_env
        if (verify is True or verify is None) and bundle:
            verify = bundle
        return super().merge_environment_settings(url, proxies, stream, verify, cert)

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        require_same_origin(self.vendor, self.base_url, request.url or "", trusted=self.trusted)
        return super().send(request, **kwargs)


def http_date(value: Optional[str]) -> Optional[float]:
    """An HTTP date (a Date or Retry-After header) as epoch seconds, or None when missing or unreadable."""
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value.strip()).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


def parse_retry_after(value: Optional[str], now: Optional[float] = None) -> Optional[float]:
    """Seconds to wait from a Retry-After-style header: delta seconds, an HTTP date, or epoch seconds."""
    if value is None:
        return None
    value = value.strip()
    now = time.time() if now is None else now
    try:
        number = float(value)
    except ValueError:
        when = http_date(value)
        return None if when is None else max(0.0, when - now)
    if number > 1_000_000_000:  # CrowdStrike's X-Ratelimit-Retryafter is an epoch timestamp
        return max(0.0, number - now)
    return max(0.0, number)


def server_clock(date: Optional[str], now: Optional[float] = None) -> float:
    """The server's time from its Date header: the local clock where both agree to within Date's one-second
    resolution (it is then the finer reading), the header's otherwise (a host whose clock is off)."""
    now = time.time() if now is None else now
    server_now = http_date(date)
    if server_now is None or -1.0 < now - server_now < 2.0:
        return now
    return server_now


def retry_after_seconds(header: Callable[[str], Optional[str]], names: Sequence[str]) -> Optional[float]:
    """The wait the first of the `names` headers asks for; `header(name)` reads one header of the answer.

    An epoch or a date is a moment on the server's clock: it is measured from the answer's Date, so a host whose
    clock is off neither waits for hours nor retries at once into the same 429 (Okta's X-Rate-Limit-Reset,
    Falcon's X-Ratelimit-Retryafter). Without a Date the local clock is all there is.
    """
    server_now = server_clock(header("Date"))
    for name in names:
        seconds = parse_retry_after(header(name), now=server_now)
        if seconds is not None:
            return seconds
    return None


def default_error_detail(body: Any) -> Optional[str]:
    """Pull a human message out of the error bodies vendors send (JSON:API, OAuth, Okta, Falcon, v1)."""
    if isinstance(body, dict):
        errors = body.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            e = errors[0]
            parts = [str(e[k]) for k in ("title", "detail", "message", "code") if e.get(k)]
            if parts:
                return " - ".join(dict.fromkeys(parts))
        for key in ("errorSummary", "error_description", "message", "detail", "error"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value
            if isinstance(value, dict) and value.get("message"):
                return str(value["message"])
    return None


class HttpSession:
    """A requests.Session bound to one vendor base URL, with retries, pacing and counters.

    It talks to the base URL's origin only (and to `trusted_origins`, such as an OAuth token endpoint the
    user configured): an absolute URL elsewhere, a next link or a redirect included, fails the pull before
    anything is sent. Every exception that leaves it, whatever raised it, has every secret masked and no
    chain of causes that could still quote one.
    """

    def __init__(
        self,
        vendor: str,
        base_url: str,
        *,
        settings: HttpSettings = HttpSettings(),
        headers: Optional[Mapping[str, str]] = None,
        auth_hint: str = "check the credentials",
        retry_after_headers: Sequence[str] = ("Retry-After",),
        error_detail: Callable[[Any], Optional[str]] = default_error_detail,
        secrets: Sequence[str] = (),
        trusted_origins: Sequence[str] = (),
        logger: Optional[logging.Logger] = None,
        sleep: Callable[[float], None] = time.sleep,
        quota_headers: Optional[tuple[str, str, str]] = None,
        quota_reserve_percent: float = 0.0,
        rate_limit_family: Callable[[str, str], str] = endpoint_family,
        max_quota_pause: float = 120.0,
        pool_size: int = 10,
    ):
        """`quota_headers` name the (limit, remaining, reset epoch) headers of a vendor that reports its quota on
        every answer (Okta's X-Rate-Limit-*); `quota_reserve_percent` of each window is left unused. Requests are
        paced per `rate_limit_family(method, path)` (by default an endpoint family), shared by every thread of the
        session; `pool_size` keeps that many connections open for threads that share the session."""
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise CollectionError(f"{vendor}: base URL {redact_url(base_url)!r} must be an http:// or https:// URL")
        self.vendor = vendor
        self.base_url = base_url.rstrip("/") + "/"
        self.trusted_origins = tuple(trusted_origins)
        self.settings = settings
        self.auth_hint = auth_hint
        self.retry_after_headers = tuple(retry_after_headers)
        self.error_detail = error_detail
        self.redactor = Redactor()
        self.secrets = secrets
        self.log = RedactingLog(logger or log, self.redactor)
        self.retrier = Retrier(vendor, settings, logger=self.log, sleep=sleep, redactor=self.redactor)
        self.stats = self.retrier.stats
        self._pacer = Pacer(sleep)
        self.quota_headers = quota_headers
        self.quota_reserve_percent = quota_reserve_percent
        self.rate_limit_family = rate_limit_family
        self.limiter = RateLimiter(
            vendor, log=self.log, sleep=sleep, count=self.retrier.count, max_pause=max_quota_pause
        )
        self.session = SameOriginSession(vendor, self.base_url, trusted=self.trusted_origins)
        if pool_size > 10:  # requests' default pool keeps 10 connections; more threads would reconnect every time
            adapter = requests.adapters.HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size)
            self.session.mount("http://", adapter)
            self.session.mount("https://", adapter)
        self.session.headers["User-Agent"] = settings.user_agent
        self.session.headers["Accept"] = "application/json"
        if headers:
            self.session.headers.update(headers)

    @property
    def secrets(self) -> tuple[str, ...]:
        return self._secrets

    @secrets.setter
    def secrets(self, values: Sequence[str]) -> None:
        # Sources add tokens they obtain during the pull (an OAuth access token); each is masked from then on.
        self._secrets = tuple(s for s in values if s)
        self.redactor.add(*self._secrets)

    def __enter__(self) -> HttpSession:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.session.close()

    def url(self, path_or_url: str) -> str:
        if path_or_url.startswith(("http://", "https://")):
            return path_or_url
        return urljoin(self.base_url, path_or_url.lstrip("/"))

    def require_same_origin(self, url: str) -> str:
        """`url` if this session may send to it; a CollectionError naming both origins otherwise."""
        return require_same_origin(self.vendor, self.base_url, url, trusted=self.trusted_origins)

    def _redact(self, text: str) -> str:
        return self.redactor.text(text)

    def _leaving(self, exc: Exception, what: str) -> CollectionError:
        """The error to raise in place of `exc` as it leaves the session: secrets masked, no chain.

        A CollectionError keeps its class and status; anything else (requests refusing a header value, an
        invalid URL, a decoder) becomes a CollectionError that names the request.
        """
        if isinstance(exc, CollectionError):
            exc.args = (self.redactor.text(str(exc)),)
            failure = exc
        else:
            hint = ""
            if isinstance(exc, requests.exceptions.InvalidHeader):
                hint = (
                    ". A header value has surrounding whitespace or a line break, usually a credential pasted "
                    "with its newline: remove it from the variable"
                )
            failure = CollectionError(
                f"{self.vendor}: {what} could not be sent: {type(exc).__name__}: {self.redactor.error(exc)}{hint}"
            )
        # The causes (requests' exceptions quote URLs and header values) would still reach the event log.
        failure.__cause__ = None
        failure.__context__ = None
        failure.__suppress_context__ = True
        return failure

    def _pace(self) -> None:
        rps = self.settings.max_requests_per_second
        if rps:
            self.retrier.count("paced_seconds", self._pacer.wait(1.0 / rps))

    def _retry_after(self, headers: Mapping[str, str]) -> Optional[float]:
        return retry_after_seconds(headers.get, self.retry_after_headers)

    def _observe_quota(self, family: str, headers: Mapping[str, str]) -> None:
        if self.quota_headers is None:
            return
        limit_name, remaining_name, reset_name = self.quota_headers
        try:
            limit = int(headers[limit_name])
            remaining = int(headers[remaining_name])
            reset = float(headers[reset_name])
        except (KeyError, TypeError, ValueError):
            return
        # The reset is the server's clock: measured against its Date, a skewed local clock cannot shorten the wait.
        reset_in = reset - server_clock(headers.get("Date"))
        reserve = math.ceil(limit * self.quota_reserve_percent / 100)
        self.limiter.quota(family, limit, remaining, reset, reset_in, reserve)

    def _describe_error(self, response: requests.Response, content: bytes) -> str:
        detail = None
        try:
            detail = self.error_detail(json.loads(content))
        except ValueError:
            pass
        if not detail:
            detail = content[:200].decode("utf-8", "replace").strip() or response.reason or ""
        return self._redact(" ".join(detail.split())[:300])

    def _send(
        self, method: str, url: str, params: Any, json_body: Any, data: Any, headers: Optional[Mapping[str, str]]
    ) -> tuple[requests.Response, bytes]:
        """One request on the wire: the response and its whole body, or a RetryableFailure naming what went wrong."""
        try:
            response = self.session.request(
                method,
                url,
                params=params,
                json=json_body,
                data=data,
                headers=headers,
                timeout=(self.settings.connect_timeout, self.settings.read_timeout),
            )
            return response, response.content  # a truncated body raises here
        except requests.Timeout as exc:
            raise RetryableFailure(
                f"timed out ({type(exc).__name__}; connect {self.settings.connect_timeout}s, read {self.settings.read_timeout}s)",
                f"{method} {redact_url(url)}",
            ) from None
        except (
            requests.ConnectionError,
            requests.exceptions.ChunkedEncodingError,
            requests.exceptions.ContentDecodingError,
        ) as exc:
            raise RetryableFailure(
                f"connection failed or body cut short ({type(exc).__name__})", f"{method} {redact_url(url)}"
            ) from None

    def request(
        self,
        method: str,
        path_or_url: str,
        *,
        params: Any = None,
        json_body: Any = None,
        data: Any = None,
        headers: Optional[Mapping[str, str]] = None,
        expect_json: bool = True,
    ) -> HttpResponse:
        url = self.url(path_or_url)
        failure: Optional[CollectionError] = None
        try:
            self.require_same_origin(url)
            return self._request(method, url, params, json_body, data, headers, expect_json)
        except Exception as exc:  # noqa: BLE001 - every exception leaves through _leaving, translated
            failure = self._leaving(exc, f"{method} {redact_url(url)}")
        raise failure  # outside the except block, so no __context__ is attached to it

    def _request(
        self,
        method: str,
        url: str,
        params: Any,
        json_body: Any,
        data: Any,
        headers: Optional[Mapping[str, str]],
        expect_json: bool,
    ) -> HttpResponse:
        family = self.rate_limit_family(method, urlsplit(url).path)

        def attempt() -> HttpResponse:
            self._pace()
            self.limiter.before(family)
            try:
                response, content = self._send(method, url, params, json_body, data, headers)
                self._observe_quota(family, response.headers)
            finally:
                self.limiter.done(family)
            where = redact_url(response.url)
            self.retrier.count("bytes", len(content))
            status = response.status_code
            if status in RETRYABLE_STATUS:
                retry_after = self._retry_after(response.headers)
                if status == 429:  # the whole bucket is over its limit, not only this thread's request
                    self.limiter.hold(family, retry_after if retry_after is not None else self.settings.backoff_base)
                raise RetryableFailure(
                    f"HTTP {status}: {self._describe_error(response, content)}",
                    f"{method} {where}",
                    retry_after=retry_after,
                    throttled=status == 429,
                    status=status,
                )
            if status in (401, 403):
                raise AuthError(
                    f"{self.vendor}: {method} {where} was refused with HTTP {status} "
                    f"({self._describe_error(response, content)}). {self.auth_hint}.",
                    status=status,
                )
            if status >= 400:
                raise CollectionError(
                    f"{self.vendor}: {method} {where} failed with HTTP {status}: "
                    f"{self._describe_error(response, content)}",
                    status=status,
                )
            if not expect_json:
                return HttpResponse(status, response.headers, content, response.url)
            try:
                parsed = json.loads(content) if content else None
            except ValueError as exc:
                raise RetryableFailure(
                    f"malformed JSON in a {status} answer ({exc})", f"{method} {where}", status=status
                ) from None
            return HttpResponse(status, response.headers, content, response.url, parsed)

        return self.retrier.call(attempt)

    def get_json(self, path_or_url: str, params: Any = None) -> Any:
        return self.request("GET", path_or_url, params=params).json()

    def iter_pages(
        self,
        first: str,
        params: Any,
        next_url: Callable[[HttpResponse], Optional[str]],
        *,
        max_visits: int = 3,
        page_size: Optional[int] = None,
        items: Optional[Callable[[HttpResponse], int]] = None,
    ) -> Iterator[HttpResponse]:
        """Follow a vendor's next links; a page served twice is dropped, a link that keeps coming back stops the pull.

        With `page_size` (what the request asked for) and `items` (the records in an answer), a page that is
        shorter yet has a next link is asked for again once and that answer is used in its place (so nothing is
        counted twice); still short, it is counted in `short_pages` and warned about: a vendor that drops a
        record from a page loses it for good, as the cursor moves on past it. `next_url` is then called for
        both answers, so it must not count pages itself.
        """
        seen_pages: set[str] = set()
        visits: dict[str, int] = {}
        url: Optional[str] = first
        current_params = params
        check_short = page_size is not None and items is not None
        while url:
            key = self.url(url) + "?" + urlencode(sorted((current_params or {}).items()), doseq=True)
            visits[key] = visits.get(key, 0) + 1
            if visits[key] > max_visits:
                raise CollectionError(
                    self.redactor.text(
                        f"{self.vendor}: pagination loop: {redact_url(self.url(url))} was returned as the next page "
                        f"{visits[key]} times. The API is repeating itself; the pull stopped rather than duplicate "
                        "records."
                    )
                )
            response = self.request("GET", url, params=current_params)
            if check_short:
                response, link = self._unless_short(url, current_params, response, next_url, page_size, items)
            if response.digest in seen_pages:
                self.stats.repeated_pages += 1
                self.log.warning(
                    f"{self.vendor}: {redact_url(response.url)} served a page already received; skipped it"
                )
            else:
                seen_pages.add(response.digest)
                yield response
            if not check_short:
                link = next_url(response)
            url = link
            current_params = None  # next links carry their own query

    def _unless_short(
        self,
        url: str,
        params: Any,
        response: HttpResponse,
        next_url: Callable[[HttpResponse], Optional[str]],
        page_size: int,
        items: Callable[[HttpResponse], int],
    ) -> tuple[HttpResponse, Optional[str]]:
        """The page to use and its next link: a short page with a next link is asked for once more."""
        link = next_url(response)
        if not link or items(response) >= page_size:
            return response, link
        first_count = items(response)
        again = self.request("GET", url, params=params)
        link = next_url(again)
        count = items(again)
        if link and count < page_size:
            self.stats.short_pages += 1
            self.log.warning(
                f"{self.vendor}: {redact_url(again.url)} returned {count} records where {page_size} were asked for "
                f"(twice; {first_count} the first time), yet has a next page: the vendor may have left records out "
                "of this page, and they would be missing from this collection (counted as http_short_pages)"
            )
        return again, link


def normalize_base_url(value: str, *, strip_suffixes: Sequence[str] = ()) -> str:
    """Accept 'host', 'https://host', 'http://host:port/prefix/'; drop API suffixes users paste by habit."""
    value = (value or "").strip()
    if not value:
        raise CollectionError("empty base URL")
    if "://" not in value:
        value = "https://" + value
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CollectionError(f"base URL {value!r} must be an http:// or https:// URL")
    path = parts.path.rstrip("/")
    for suffix in strip_suffixes:
        if path.endswith(suffix):
            path = path[: -len(suffix)]
            break
    return urlunsplit((parts.scheme, parts.netloc, path + "/", "", ""))
