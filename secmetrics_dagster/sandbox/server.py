"""Vendor-agnostic core of the local vendor sandbox: threaded HTTP server, route registry, fault injection, stats.

Vendor modules (snyk.py, ...) describe themselves with `Vendor` and `register_vendor`; nothing here knows any vendor.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import re
import socket
import socketserver
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlsplit

_log = logging.getLogger(__name__)

STATUS_KINDS = ("401", "403", "404", "429", "500", "503")
FAULT_KINDS = STATUS_KINDS + ("timeout", "malformed", "truncated", "repeat", "short")

# Appended to a cut-off real body: whatever the cut point, the result cannot parse as JSON.
_GARBAGE = b" <!-- 502 Bad Gateway: upstream connection reset --> \x00\xff"


# --------------------------------------------------------------------------------------------- faults


@dataclass
class Fault:
    """One injected failure. `route` is a route name ("snyk.issues"), "*" (every vendor route) or a glob ("snyk.*").

    The first `after` matching requests go through untouched, then the fault fires `times` times (0 = forever).
    """

    route: str
    kind: str
    times: int = 1
    after: int = 0
    retry_after: int = 1
    delay: float = 5.0

    def __post_init__(self) -> None:
        if not isinstance(self.route, str) or not self.route:
            raise ValueError(f"fault route must be a non-empty string, got {self.route!r}")
        self.kind = str(self.kind)
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {', '.join(FAULT_KINDS)}")
        for name in ("times", "after", "retry_after"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or int(value) != value:
                raise ValueError(f"fault {name} must be a non-negative integer, got {value!r}")
            setattr(self, name, int(value))
        if isinstance(self.delay, bool) or not isinstance(self.delay, (int, float)) or self.delay < 0:
            raise ValueError(f"fault delay must be a non-negative number of seconds, got {self.delay!r}")
        self.delay = float(self.delay)

    def matches(self, route_name: str) -> bool:
        return fnmatchcase(route_name, self.route)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> Fault:
        if not isinstance(data, dict):
            raise ValueError(f"a fault must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown fault field(s) {', '.join(unknown)}; expected {', '.join(sorted(known))}")
        if "route" not in data or "kind" not in data:
            raise ValueError("a fault needs at least 'route' and 'kind'")
        return cls(**data)

    @classmethod
    def parse(cls, spec: str) -> Fault:
        """Parse the CLI form `ROUTE:KIND[:key=value,...]`, e.g. `snyk.issues:429:times=2,retry_after=0`."""
        parts = spec.split(":", 2)
        if len(parts) < 2 or not parts[0] or not parts[1]:
            raise ValueError(f"fault {spec!r} is not ROUTE:KIND[:key=value,...]")
        options: dict[str, Any] = {}
        if len(parts) == 3 and parts[2]:
            for item in parts[2].split(","):
                key, sep, value = item.partition("=")
                key = key.strip()
                if not sep or not key:
                    raise ValueError(f"fault option {item!r} in {spec!r} is not key=value")
                if key not in ("times", "after", "retry_after", "delay"):
                    raise ValueError(f"unknown fault option {key!r} in {spec!r}")
                try:
                    options[key] = float(value) if key == "delay" else int(value)
                except ValueError:
                    raise ValueError(f"fault option {key}={value!r} in {spec!r} is not a number") from None
        return cls(route=parts[0], kind=parts[1], **options)


@dataclass
class _ArmedFault:
    fault: Fault
    seen: int = 0
    fired: int = 0

    def due(self) -> bool:
        return self.seen > self.fault.after and (self.fault.times == 0 or self.fired < self.fault.times)


# ------------------------------------------------------------------------------------- routes, vendors


@dataclass
class Request:
    """What a route handler sees: parsed path, query (ordered pairs, repeats kept), headers, body, path params."""

    method: str
    path: str
    query: list[tuple[str, str]]
    headers: Any  # email.message.Message: case-insensitive .get()
    body: bytes
    params: dict[str, str]
    route: str

    def arg(self, name: str, default: str | None = None) -> str | None:
        for key, value in self.query:
            if key == name:
                return value
        return default

    def has_arg(self, name: str) -> bool:
        return any(key == name for key, _ in self.query)


@dataclass
class Response:
    """A handler's answer. `payload` is serialized as JSON unless `body` is given.

    `records_key` says where this page's records are ("data", or "" when the payload itself is a list) so the
    "short" fault can drop one; `paginated` marks a page of a paginated listing so the "repeat" fault can replay it.
    """

    status: int = 200
    payload: Any = None
    body: bytes | None = None
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    records_key: str | None = None
    paginated: bool = False


Handler = Callable[[Request], Response]
ErrorFactory = Callable[[int, Request], Response]


def generic_error(status: int, request: Request) -> Response:
    # Not a vendor's shape (no source): only routes that no vendor answers use it (the AWS seeding hook).
    return Response(status, {"error": f"HTTP {status}", "path": request.path})


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    name: str
    handler: Handler
    error: ErrorFactory
    # Header an injected 429 carries with the fault's `retry_after` seconds; None where the vendor sends none
    # (Okta announces its window's end in X-Rate-Limit-Reset instead), so the sandbox never invents a header.
    retry_after_header: str | None = "Retry-After"


class Router:
    """Method + regex path -> named handler. The error factory renders injected status faults in the vendor's shape."""

    def __init__(self) -> None:
        self._routes: list[Route] = []
        self._stop_hooks: list[Callable[[], None]] = []

    def on_stop(self, hook: Callable[[], None]) -> None:
        """Run `hook` when the sandbox stops (a vendor's extra servers: the Domains DNS and WHOIS listeners)."""
        self._stop_hooks.append(hook)

    def run_stop_hooks(self) -> None:
        for hook in self._stop_hooks:
            hook()

    def add(
        self,
        method: str,
        pattern: str,
        name: str,
        handler: Handler,
        error: ErrorFactory = generic_error,
        *,
        retry_after_header: str | None = "Retry-After",
    ) -> None:
        if name.startswith("_sandbox"):
            raise ValueError("route names starting with '_sandbox' are reserved for the admin endpoints")
        self._routes.append(Route(method.upper(), re.compile(pattern), name, handler, error, retry_after_header))

    def match(self, method: str, path: str) -> tuple[Route | None, dict[str, str], bool]:
        """(route, path params, path_known): path_known without a route means the method is wrong (405)."""
        path_known = False
        for route in self._routes:
            found = route.pattern.fullmatch(path)
            if found is None:
                continue
            path_known = True
            if route.method == method:
                return route, found.groupdict(), True
        return None, {}, path_known

    def names(self) -> list[str]:
        return [route.name for route in self._routes]


@dataclass(frozen=True)
class VendorContext:
    """Sandbox-wide settings a vendor's routes derive their data and credentials from."""

    seed: int
    token: str


@dataclass(frozen=True)
class Vendor:
    """A vendor module's entry: `Sandbox(<name>=<volume_type>(...))` configures it, `install` adds its routes.

    The volume dataclass's int fields also become CLI flags `--<name>-<field>` in `python -m ...sandbox`.
    """

    name: str
    volume_type: type
    install: Callable[[Router, VendorContext, Any], None]


def throttled(response: Response, wait: float) -> Response:
    """The vendor's 429 `response`, with Retry-After: the whole seconds until its quota window has room (at least 1)."""
    response.headers = {**response.headers, "Retry-After": str(max(1, math.ceil(wait)))}
    return response


_VENDORS: dict[str, Vendor] = {}


def register_vendor(vendor: Vendor) -> None:
    _VENDORS[vendor.name] = vendor


def registered_vendors() -> dict[str, Vendor]:
    return dict(_VENDORS)


# -------------------------------------------------------------------------------------------- sandbox


@dataclass
class _Reply:
    status: int
    content_type: str
    headers: dict[str, str]
    body: bytes
    truncate: bool = False


def _json_bytes(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode("utf-8")


class WindowTake(NamedTuple):
    allowed: bool
    used: int  # requests counted in the window, this one included when allowed
    reset: int  # epoch second the window ends
    wait: float  # seconds from now until then


class FixedWindowQuota:
    """Requests per bucket in fixed windows aligned to the clock (limit 0: unlimited); each vendor's subclass says
    whose limit it models and cites where that comes from."""

    def __init__(self, limit: int, window: int, clock: Callable[[], float] = time.time) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._lock = threading.Lock()
        self._used: dict[str, tuple[int, int]] = {}  # bucket -> (window start, requests)

    def current_reset(self) -> int:
        return int(self.clock() // self.window) * self.window + self.window

    def count(self, bucket: str) -> WindowTake:
        """Count one request of `bucket` if the window has room."""
        with self._lock:
            now = self.clock()
            start = int(now // self.window) * self.window
            window_start, used = self._used.get(bucket, (start, 0))
            if window_start != start:
                used = 0
            allowed = not self.limit or used < self.limit
            if allowed:
                used += 1
                self._used[bucket] = (start, used)
            return WindowTake(allowed, used, start + self.window, start + self.window - now)


class Sandbox:
    """Fake vendor APIs on 127.0.0.1 with deterministic data and injectable faults.

    >>> with Sandbox(seed=7, snyk=SnykVolume(orgs=2)) as sb:
    ...     requests.get(sb.url + "/rest/orgs", params={"version": "2024-10-15"},
    ...                  headers={"Authorization": "token sandbox-token"})
    """

    def __init__(
        self,
        seed: int = 42,
        token: str = "sandbox-token",
        latency_ms: int | float = 0,
        *,
        port: int = 0,
        **volumes: Any,
    ) -> None:
        unknown = sorted(set(volumes) - set(_VENDORS))
        if unknown:
            raise TypeError(f"unknown vendor(s) {', '.join(unknown)}; registered: {', '.join(sorted(_VENDORS))}")
        self.seed = int(seed)
        self.token = str(token)
        self.latency_ms = float(latency_ms)
        self.port = int(port)
        self.volumes: dict[str, Any] = {}
        self._router = Router()
        context = VendorContext(self.seed, self.token)
        for name, vendor in sorted(_VENDORS.items()):
            volume = volumes.get(name)
            if volume is None:
                volume = vendor.volume_type()
            elif not isinstance(volume, vendor.volume_type):
                raise TypeError(f"{name}= expects a {vendor.volume_type.__name__}, got {type(volume).__name__}")
            self.volumes[name] = volume
            vendor.install(self._router, context, volume)

        self._lock = threading.Lock()
        self._faults: list[_ArmedFault] = []
        self._stats: Counter[str] = Counter()
        # Requests being served per route now, the most at once since the last reset, and when each arrived (monotonic
        # seconds): what tests of concurrent clients and shared rate limits assert on.
        self._in_flight: Counter[str] = Counter()
        self._peak: Counter[str] = Counter()
        self._arrivals: dict[str, list[tuple[float, float, int | None]]] = {}
        # Last page body served per (route, path): what the "repeat" fault replays, one page per collection.
        self._pages: dict[tuple[str, str], _Reply] = {}
        self._connections: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # lifecycle

    def start(self) -> Sandbox:
        if self._httpd is not None:
            return self
        self._stopping.clear()
        self._httpd = _HTTPServer(("127.0.0.1", self.port), self)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name=f"sandbox:{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        # Wake handlers sleeping in latency/timeout faults first, so nothing holds the shutdown.
        self._stopping.set()
        httpd.shutdown()
        httpd.server_close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._router.run_stop_hooks()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("sandbox is not running; call start() first")
        return f"http://127.0.0.1:{self.port}"

    def route_names(self) -> list[str]:
        return self._router.names()

    # faults and stats

    def set_faults(self, faults: list[Fault]) -> None:
        armed = [_ArmedFault(self._check_fault(f)) for f in faults]
        with self._lock:
            self._faults = armed

    def add_fault(self, fault: Fault) -> None:
        armed = _ArmedFault(self._check_fault(fault))
        with self._lock:
            self._faults.append(armed)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults = []

    def faults(self) -> list[dict[str, Any]]:
        with self._lock:
            return [{**a.fault.to_dict(), "seen": a.seen, "fired": a.fired} for a in self._faults]

    def stats(self) -> dict[str, int]:
        with self._lock:
            return dict(self._stats)

    def reset_stats(self) -> None:
        with self._lock:
            self._stats.clear()
            self._peak.clear()
            self._arrivals.clear()

    def peak_in_flight(self) -> dict[str, int]:
        """Per route, the most requests served at the same time since the sandbox started or its stats were reset."""
        with self._lock:
            return dict(self._peak)

    def arrivals(self, route: str) -> list[tuple[float, float, int | None]]:
        """(arrived, answered, status) of every request of `route` answered so far, times in time.monotonic() seconds,
        in the order they were answered; status None: dropped unanswered (the sandbox stopping)."""
        with self._lock:
            return list(self._arrivals.get(route, ()))

    @staticmethod
    def _check_fault(fault: Fault) -> Fault:
        if not isinstance(fault, Fault):
            raise TypeError(f"expected a Fault, got {type(fault).__name__}")
        return dataclasses.replace(fault)  # a copy: later edits by the caller do not change armed faults

    def _take_fault(self, route: str, path: str) -> tuple[Fault | None, _Reply | None]:
        """Count this request against every matching fault; the first one due fires (list order breaks ties).

        A due "repeat" with no previous page for this collection does not fire, so it keeps its shot.
        """
        with self._lock:
            chosen: _ArmedFault | None = None
            replay: _Reply | None = None
            for armed in self._faults:
                if not armed.fault.matches(route):
                    continue
                armed.seen += 1
                if chosen is not None or not armed.due():
                    continue
                if armed.fault.kind == "repeat":
                    replay = self._pages.get((route, path))
                    if replay is None:
                        continue
                chosen = armed
            if chosen is None:
                return None, None
            chosen.fired += 1
            return chosen.fault, replay

    # request pipeline

    def _wait(self, seconds: float) -> bool:
        """Sleep unless the sandbox stops meanwhile; False means stopping (drop the request)."""
        return seconds <= 0 or not self._stopping.wait(seconds)

    def _serve_vendor(self, request: Request, route: Route) -> _Reply | None:
        arrived = time.monotonic()
        with self._lock:
            self._stats[route.name] += 1
            self._in_flight[route.name] += 1
            self._peak[route.name] = max(self._peak[route.name], self._in_flight[route.name])
        reply = None
        try:
            reply = self._serve_vendor_counted(request, route)
            return reply
        finally:
            status = reply.status if reply is not None else None
            with self._lock:
                self._in_flight[route.name] -= 1
                self._arrivals.setdefault(route.name, []).append((arrived, time.monotonic(), status))

    def _serve_vendor_counted(self, request: Request, route: Route) -> _Reply | None:
        if not self._wait(self.latency_ms / 1000.0):
            return None
        fault, replay = self._take_fault(route.name, request.path)
        kind = fault.kind if fault else None

        if kind in STATUS_KINDS:
            response = route.error(int(kind), request)
            if kind == "429" and route.retry_after_header:
                # Delta-seconds form (RFC 9110 section 10.2.3); vendors with another convention render it in
                # their error factory and register the route with retry_after_header=None.
                response.headers = {**response.headers, route.retry_after_header: str(fault.retry_after)}
            return self._render(response)
        if kind == "timeout" and not self._wait(fault.delay):
            return None
        if kind == "repeat" and replay is not None:
            return dataclasses.replace(replay, headers=dict(replay.headers))

        try:
            response = route.handler(request)
        except Exception as exc:  # a sandbox bug must not look like a vendor answer
            _log.exception("sandbox route %s crashed on %s", route.name, request.path)
            return self._render(Response(500, {"sandbox_error": f"{type(exc).__name__}: {exc}"}))

        if kind == "short" and response.status == 200 and response.records_key is not None:
            records = response.payload if response.records_key == "" else response.payload.get(response.records_key)
            if isinstance(records, list) and records:
                records.pop()
        reply = self._render(response)
        if response.paginated and response.status == 200:
            with self._lock:
                self._pages[(route.name, request.path)] = dataclasses.replace(reply, headers=dict(reply.headers))
        if kind == "malformed":
            reply.status = 200
            reply.body = reply.body[: max(1, len(reply.body) // 2)] + _GARBAGE
        elif kind == "truncated":
            reply.truncate = True
        return reply

    @staticmethod
    def _render(response: Response) -> _Reply:
        body = response.body if response.body is not None else _json_bytes(response.payload)
        return _Reply(response.status, response.content_type, dict(response.headers), body)

    def _serve_admin(self, method: str, path: str, body: bytes) -> _Reply:
        def reply(status: int, payload: Any) -> _Reply:
            return _Reply(status, "application/json", {}, _json_bytes(payload))

        if path == "/_sandbox/health" and method == "GET":
            return reply(200, {"status": "ok"})
        if path == "/_sandbox/stats":
            if method == "GET":
                return reply(200, self.stats())
            if method == "DELETE":
                self.reset_stats()
                return reply(200, {})
        if path == "/_sandbox/faults":
            if method == "GET":
                return reply(200, self.faults())
            if method == "DELETE":
                self.clear_faults()
                return reply(200, [])
            if method == "POST":
                try:
                    items = json.loads(body or b"null")
                    if isinstance(items, dict):
                        items = [items]
                    if not isinstance(items, list):
                        raise ValueError("expected a JSON list of fault objects")
                    faults = [Fault.from_dict(item) for item in items]
                except (ValueError, TypeError) as exc:
                    return reply(400, {"error": str(exc)})
                self.set_faults(faults)
                return reply(200, self.faults())
        return reply(404, {"error": f"no admin endpoint {method} {path}"})

    def _track(self, conn: socket.socket, opened: bool) -> None:
        with self._lock:
            if opened:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        super().__init__(address, _RequestHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn) that can stall in a sandboxed network.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return  # clients that hung up (timeouts, truncation, stop()) are part of the job
        _log.exception("sandbox connection from %s failed", client_address)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "secmetrics-sandbox/1.0"
    sys_version = ""
    timeout = 120  # an idle keep-alive connection gives its thread back eventually
    # Headers and body go out in two writes; with Nagle on, the client's delayed ACK adds ~40 ms to every answer.
    disable_nagle_algorithm = True
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def version_string(self) -> str:
        return self.server_version

    def setup(self) -> None:
        super().setup()
        self.server.sandbox._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.sandbox._track(self.connection, False)

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_GET

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            self.close_connection = True  # not needed by any client here; give up on the stream rather than desync
            return b""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        return self.rfile.read(length) if length > 0 else b""

    def _dispatch(self) -> None:
        sandbox = self.server.sandbox
        split = urlsplit(self.path)
        path = split.path
        query = parse_qsl(split.query, keep_blank_values=True)
        body = self._read_body()
        method = self.command.upper()

        if path.startswith("/_sandbox/"):
            self._write(sandbox._serve_admin(method, path, body))
            return
        route, params, path_known = sandbox._router.match(method, path)
        if route is None:
            status = 405 if path_known else 404
            message = "method not allowed" if path_known else "no sandbox route"
            self._write(_Reply(status, "application/json", {}, _json_bytes({"error": f"{message}: {method} {path}"})))
            return
        request = Request(method, path, query, self.headers, body, params, route.name)
        reply = sandbox._serve_vendor(request, route)
        if reply is None:  # the sandbox is stopping: hang up without an answer
            self.close_connection = True
            return
        self._write(reply)

    def _write(self, reply: _Reply) -> None:
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if self.command == "HEAD":
            # RFC 9110 section 9.3.2: the headers a GET would send (a route gives the Content-Length), no content.
            self.end_headers()
            self.wfile.flush()
            return
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        if reply.truncate:
            # Announce the full length, send half, hang up: the client sees an incomplete read.
            self.wfile.write(reply.body[: len(reply.body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(reply.body)
        self.wfile.flush()
