"""The one HTTP layer every source uses: timeouts, bounded retries with backoff, Retry-After, counters.

Retries are written out here rather than delegated to urllib3's Retry because every attempt must be
counted for the UI, malformed or truncated bodies must be retried like 5xx, vendors name their own
retry headers, and the total time spent waiting must stay inside one budget. The loop itself is
`Retrier`, so SDK-based sources (falconpy) retry, count and budget exactly like `HttpSession` does.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Optional, TypeVar
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import requests

from .errors import AuthError, CollectionError

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


@dataclass
class HttpStats:
    requests: int = 0
    retries: int = 0
    throttled: int = 0  # 429 answers
    bytes: int = 0
    repeated_pages: int = 0
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
    ):
        self.vendor = vendor
        self.settings = settings
        self.log = logger or log
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
                f"{self.vendor}: {where} failed after {attempt + 1} attempts: {cause}. "
                f"The API may be down or overloaded; try again later, or raise COLLECTION_HTTP_MAX_RETRIES.",
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
                f"{self.vendor}: {where} failed: {cause}; waiting {delay:.0f}s more would exceed "
                f"the retry budget of {self.settings.max_total_wait:.0f}s (COLLECTION_HTTP_MAX_WAIT). Try again later.",
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


@dataclass
class HttpResponse:
    status: int
    headers: Mapping[str, str]
    content: bytes
    url: str
    _json: Any = field(default=None, repr=False)

    def json(self) -> Any:
        return self._json

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


def retry_after_seconds(header: Callable[[str], Optional[str]], names: Sequence[str]) -> Optional[float]:
    """The wait the first of the `names` headers asks for; `header(name)` reads one header of the answer.

    An epoch or a date is a moment on the server's clock: it is measured from the answer's Date, so a host whose
    clock is off neither waits for hours nor retries at once into the same 429 (Okta's X-Rate-Limit-Reset,
    Falcon's X-Ratelimit-Retryafter). Without a Date the local clock is all there is.
    """
    server_now = http_date(header("Date"))
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
    """A requests.Session bound to one vendor base URL, with retries, pacing and counters."""

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
        logger: Optional[logging.Logger] = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise CollectionError(f"{vendor}: base URL {base_url!r} must be an http:// or https:// URL")
        self.vendor = vendor
        self.base_url = base_url.rstrip("/") + "/"
        self.settings = settings
        self.auth_hint = auth_hint
        self.retry_after_headers = tuple(retry_after_headers)
        self.error_detail = error_detail
        self.secrets = tuple(s for s in secrets if s)
        self.log = logger or log
        self.retrier = Retrier(vendor, settings, logger=self.log, sleep=sleep)
        self.stats = self.retrier.stats
        self._pacer = Pacer(sleep)
        self.session = requests.Session()
        self.session.headers["User-Agent"] = settings.user_agent
        self.session.headers["Accept"] = "application/json"
        if headers:
            self.session.headers.update(headers)

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

    def _redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def _pace(self) -> None:
        rps = self.settings.max_requests_per_second
        if rps:
            self.retrier.count("paced_seconds", self._pacer.wait(1.0 / rps))

    def _retry_after(self, headers: Mapping[str, str]) -> Optional[float]:
        return retry_after_seconds(headers.get, self.retry_after_headers)

    def _describe_error(self, response: requests.Response, content: bytes) -> str:
        detail = None
        try:
            detail = self.error_detail(json.loads(content))
        except ValueError:
            pass
        if not detail:
            detail = content[:200].decode("utf-8", "replace").strip() or response.reason or ""
        return self._redact(" ".join(detail.split())[:300])

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

        def attempt() -> HttpResponse:
            self._pace()
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
                content = response.content  # a truncated body raises here
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
            where = redact_url(response.url)
            self.retrier.count("bytes", len(content))
            status = response.status_code
            if status in RETRYABLE_STATUS:
                raise RetryableFailure(
                    f"HTTP {status}: {self._describe_error(response, content)}",
                    f"{method} {where}",
                    retry_after=self._retry_after(response.headers),
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
    ) -> Iterator[HttpResponse]:
        """Follow a vendor's next links; a page served twice is dropped, a link that keeps coming back stops the pull."""
        seen_pages: set[str] = set()
        visits: dict[str, int] = {}
        url: Optional[str] = first
        current_params = params
        while url:
            key = self.url(url) + "?" + urlencode(sorted((current_params or {}).items()), doseq=True)
            visits[key] = visits.get(key, 0) + 1
            if visits[key] > max_visits:
                raise CollectionError(
                    f"{self.vendor}: pagination loop: {redact_url(self.url(url))} was returned as the next page "
                    f"{visits[key]} times. The API is repeating itself; the pull stopped rather than duplicate records."
                )
            response = self.request("GET", url, params=current_params)
            if response.digest in seen_pages:
                self.stats.repeated_pages += 1
                self.log.warning(
                    f"{self.vendor}: {redact_url(response.url)} served a page already received; skipped it"
                )
            else:
                seen_pages.add(response.digest)
                yield response
            url = next_url(response)
            current_params = None  # next links carry their own query


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
