"""The HTTP layer and the environment: proxies (HTTP_PROXY, NO_PROXY) and the CA bundle are honoured as requests
honours them, read once per origin; ~/.netrc never replaces the credential a source sets. Two local servers stand
in for a proxy and a vendor, so nothing leaves 127.0.0.1."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from secmetrics_dagster.collection import HttpSession, HttpSettings

FAST = HttpSettings(read_timeout=2, connect_timeout=2, max_retries=0)


class _Recorder(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.seen: list[tuple[str, dict]] = []  # (request line, headers)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        self.server.seen.append((self.requestline, dict(self.headers)))
        body = json.dumps({"ok": True}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def servers():
    started = [_Recorder(), _Recorder()]
    for server in started:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield started
    for server in started:
        server.shutdown()
        server.server_close()


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("NETRC", raising=False)
    return monkeypatch


def _session(base_url):
    return HttpSession("Acme", base_url, settings=FAST, headers={"Authorization": "token t0ken"}, secrets=["t0ken"])


def test_requests_go_through_the_proxy_the_environment_names(servers, clean_env):
    proxy, _vendor = servers
    clean_env.setenv("HTTP_PROXY", proxy.url)
    # A host no resolver knows: only the proxy can answer it, so the answer proves the request went through it.
    with _session("http://api.acme.invalid/") as http:
        assert http.get_json("things", {"page": "1"}) == {"ok": True}
        assert http.get_json("things", {"page": "2"}) == {"ok": True}
    lines = [line for line, _headers in proxy.seen]
    assert lines == [
        "GET http://api.acme.invalid/things?page=1 HTTP/1.1",
        "GET http://api.acme.invalid/things?page=2 HTTP/1.1",
    ]
    assert all(headers["Authorization"] == "token t0ken" for _line, headers in proxy.seen)


def test_no_proxy_sends_the_vendors_host_direct(servers, clean_env):
    proxy, vendor = servers
    clean_env.setenv("HTTP_PROXY", proxy.url)
    clean_env.setenv("NO_PROXY", "127.0.0.1")
    with _session(vendor.url) as http:
        assert http.get_json("things") == {"ok": True}
    assert proxy.seen == [] and [line for line, _ in vendor.seen] == ["GET /things HTTP/1.1"]


def test_a_netrc_entry_for_the_vendors_host_never_replaces_the_sources_credential(servers, clean_env, tmp_path):
    _proxy, vendor = servers
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine 127.0.0.1 login someone password elsewhere\n")
    netrc.chmod(0o600)
    clean_env.setenv("NETRC", str(netrc))
    with _session(vendor.url) as http:
        http.get_json("things")
    ((_line, headers),) = vendor.seen
    assert headers["Authorization"] == "token t0ken"  # requests' trust_env would have sent Basic someone:elsewhere


def test_the_ca_bundle_of_the_environment_is_the_one_verified_against(clean_env, tmp_path):
    bundle = tmp_path / "corporate-ca.pem"
    bundle.write_text("")
    clean_env.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    with _session("https://api.acme.invalid/") as http:
        settings = http.session.merge_environment_settings("https://api.acme.invalid/x", {}, None, None, None)
        assert settings["verify"] == str(bundle)
        # Verification switched off by the caller stays off, as with requests' own environment handling.
        assert (
            http.session.merge_environment_settings("https://api.acme.invalid/x", {}, None, False, None)["verify"]
            is False
        )


def test_a_no_proxy_list_the_caller_passes_is_applied_to_the_environments_proxies(clean_env):
    # As requests does: an SDK may hand its own no_proxy to the session with the request's proxies.
    clean_env.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    with _session("https://api.acme.invalid/") as http:
        merged = http.session.merge_environment_settings
        assert merged("https://api.acme.invalid/x", {}, None, None, None)["proxies"]["https"] == "http://127.0.0.1:9"
        bypassed = merged("https://api.acme.invalid/x", {"no_proxy": "acme.invalid"}, None, None, None)["proxies"]
        assert "https" not in bypassed
