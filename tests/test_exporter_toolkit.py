"""exporter-toolkit's own web config table tests, run against zego-exporter's web layer.

Ported from prometheus/exporter-toolkit `web/tls_config_test.go` (TestYAMLFiles,
TestServerBehaviour, TestUsers, TestConfigReloading, TestTLSConfigIsEnabled), with its test data
copied unchanged into tests/data/exporter-toolkit (Apache-2.0, see the README there). Each case
starts the exporter's real WebServer on loopback with the web config file the way `serve` does
(WebConfigWatcher), sends what the Go test's client sends, and asserts the outcome. Where the
outcome differs from Go's on purpose, `differs` says how and why; docs/web-config.md lists the
same differences.
"""

from __future__ import annotations

import http.client
import shutil
import ssl
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.credentials import basic_auth
from zego_exporter.web import Endpoints, Security, WebServer
from zego_exporter.webconfig import WebConfigError, WebConfigWatcher

DATA = Path(__file__).parent / "data" / "exporter-toolkit"
HELLO = b"Hello World!"

# Outcomes
OK = "ok"  # every request answered 200 with the handler's body
TLS_FAILURE = "tls failure"  # the handshake fails (or the server drops the connection in it)
NOT_HTTP = "not http"  # a plain-HTTP client gets no HTTP answer from the TLS port


@dataclass(frozen=True)
class Case:
    name: str
    """exporter-toolkit's name for the case."""
    config: str | None
    """A file in DATA, or None: no web config file at all."""
    expect: str | int
    """OK, TLS_FAILURE, NOT_HTTP, an HTTP status, or "refused: <what the one line says>"."""
    tls: bool = False
    client_max_version: ssl.TLSVersion | None = None
    client_ciphers: str | None = None  # OpenSSL names of the Go test's client CipherSuites
    cipher: str | None = None  # the suite the handshake must settle on
    client_cert: str | None = None
    user: str | None = None
    password: str | None = None
    requests: int = 1
    differs: str = ""
    """How and why zego-exporter's outcome differs from exporter-toolkit's, if it does."""

    def __str__(self) -> str:
        return self.name


def refused(message: str) -> str:
    return f"refused: {message}"


CURVES_REFUSED = refused("tls_server_config.curve_preferences: cannot be honoured by "
                         "zego-exporter: Python's ssl module cannot set a list of curves")
ANY_CERT_REFUSED = refused("tls_server_config.client_auth_type: RequireAnyClientCert without a "
                           "client CA cannot be honoured by zego-exporter: Python's ssl module "
                           "cannot accept a client certificate without verifying it")
CERT_REQUIRED = refused("tls_server_config.cert_file: required: set cert_file (or cert) and "
                        "key_file (or key)")
KEY_REQUIRED = refused("tls_server_config.key_file: required")

YAML_FILES = [
    Case("path to config yml invalid", "somefile", refused("somefile: no such file")),
    Case("empty config yml", "web_config_empty.yml", OK),
    Case("invalid config yml (invalid structure)", "web_config_junk.yml",
         refused("the file must be a YAML mapping, got a string")),
    Case("invalid config yml (invalid key)", "web_config_junk_key.yml",
         refused("tls_server_config.cert_filse: unknown key")),
    Case("invalid config yml (cert path empty)", "web_config_noAuth_certPath_empty.bad.yml",
         CERT_REQUIRED),
    Case("invalid config yml (cert empty)", "web_config_noAuth_cert_empty.bad.yml",
         CERT_REQUIRED),
    Case("invalid config yml (key path empty)", "web_config_noAuth_keyPath_empty.bad.yml",
         KEY_REQUIRED),
    Case("invalid config yml (key empty)", "web_config_noAuth_key_empty.bad.yml", KEY_REQUIRED),
    Case("invalid config yml (cert path and key path empty)",
         "web_config_noAuth_certPath_keyPath_empty.bad.yml", CERT_REQUIRED),
    Case("invalid config yml (cert path invalid)", "web_config_noAuth_certPath_invalid.bad.yml",
         refused('tls_server_config.cert_file: no such file "')),
    Case("invalid config yml (key path invalid)", "web_config_noAuth_keyPath_invalid.bad.yml",
         refused('tls_server_config.cert_file: no such file "')),  # its cert_file is missing too
    Case("invalid config yml (cert path and key path invalid)",
         "web_config_noAuth_certPath_keyPath_invalid.bad.yml",
         refused('tls_server_config.cert_file: no such file "')),
    Case("invalid config yml (invalid ClientAuth)", "web_config_noAuth.bad.yml",
         refused("client_ca_file is set but client_auth_type is NoClientCert")),
    Case("invalid config yml (invalid ClientCAs filepath)",
         "web_config_auth_clientCAs_invalid.bad.yml",
         refused("client_ca_file is set but client_auth_type is NoClientCert"),
         differs="refused for the missing client_auth_type, which is checked before the file "
                 "(Go reads the file first: 'no such file')"),
    Case("invalid config yml (invalid user list)", "web_config_auth_user_list_invalid.bad.yml",
         refused("basic_auth_users.john: not a bcrypt hash")),
    Case("invalid config yml (bad cipher)", "web_config_noAuth_inventedCiphers.bad.yml",
         refused("tls_server_config.cipher_suites: unknown cipher suite "
                 "'TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA2048'")),
    Case("invalid config yml (bad curves)", "web_config_noAuth_inventedCurves.bad.yml",
         CURVES_REFUSED, differs="any curve_preferences is refused, a valid one too"),
    Case("invalid config yml (bad TLS version)", "web_config_noAuth_wrongTLSVersion.bad.yml",
         refused("tls_server_config.min_version: unknown TLS version 'TLS111'")),
]

SERVER_BEHAVIOUR = [
    Case("empty string YAMLConfigPath and default client", None, OK),
    Case("empty string YAMLConfigPath and TLS client", None, TLS_FAILURE, tls=True),
    Case("valid tls config yml and default client", "web_config_noAuth.good.yml", NOT_HTTP),
    Case("valid tls config yml and tls client", "web_config_noAuth.good.yml", OK, tls=True),
    Case("valid tls config yml (cert and key inline) and tls client",
         "web_config_noAuth_tlsInline.good.yml", OK, tls=True),
    Case("valid tls config yml with TLS 1.1 client", "web_config_noAuth.good.yml", TLS_FAILURE,
         tls=True, client_max_version=ssl.TLSVersion.TLSv1_1),
    Case("valid tls config yml with all ciphers", "web_config_noAuth_allCiphers.good.yml", OK,
         tls=True),
    Case("valid tls config yml with some ciphers", "web_config_noAuth_someCiphers.good.yml", OK,
         tls=True, client_ciphers="ECDHE-RSA-AES128-GCM-SHA256"),
    Case("valid tls config yml with no common cipher", "web_config_noAuth_someCiphers.good.yml",
         TLS_FAILURE, tls=True, client_ciphers="ECDHE-RSA-AES256-SHA"),
    Case("valid tls config yml with multiple client ciphers",
         "web_config_noAuth_someCiphers.good.yml", OK, tls=True,
         client_ciphers="ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384",
         cipher="ECDHE-RSA-AES128-GCM-SHA256"),
    Case("valid tls config yml with multiple client ciphers, client chooses cipher",
         "web_config_noAuth_someCiphers_noOrder.good.yml", OK, tls=True,
         client_ciphers="ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384",
         cipher="ECDHE-RSA-AES128-GCM-SHA256"),
    Case("valid tls config yml with all curves", "web_config_noAuth_allCurves.good.yml",
         CURVES_REFUSED, tls=True, differs="Python's ssl module cannot set a list of curves"),
    Case("valid tls config yml with some curves", "web_config_noAuth_someCurves.good.yml",
         CURVES_REFUSED, tls=True, differs="Python's ssl module cannot set a list of curves"),
    Case("valid tls config yml with no common curves", "web_config_noAuth_someCurves.good.yml",
         CURVES_REFUSED, tls=True, differs="Python's ssl module cannot set a list of curves"),
    Case("valid tls config yml with non-http2 ciphers", "web_config_noAuth_noHTTP2.good.yml", OK,
         tls=True),
    Case("valid tls config yml with non-http2 ciphers but http2 enabled",
         "web_config_noAuth_noHTTP2Cipher.bad.yml", OK, tls=True,
         differs="accepted: zego-exporter speaks HTTP/1.1 only, so no cipher suite HTTP/2 needs "
                 "can be missing (Go refuses the file)"),
    Case("valid headers config", "web_config_headers.good.yml", OK),
    Case("invalid X-Content-Type-Options headers config",
         "web_config_headers_content_type_options.bad.yml",
         refused("http_server_config.headers.X-Content-Type-Options: must be one of nosniff")),
    Case("invalid X-Frame-Options headers config", "web_config_headers_frame_options.bad.yml",
         refused("http_server_config.headers.X-Frame-Options: must be one of deny, sameorigin")),
    Case("HTTP header that can not be overridden", "web_config_headers_extra_header.bad.yml",
         refused("http_server_config.headers.Content-Type: cannot be configured")),
    Case("valid tls config yml and tls client with RequireAnyClientCert (present certificate)",
         "tls_config_noAuth.requireanyclientcert.good.yml", ANY_CERT_REFUSED, tls=True,
         client_cert="client_selfsigned",
         differs="Python's ssl module cannot accept a client certificate without verifying it"),
    # Go's table names this case but runs the file above again; this runs the file it names.
    Case("valid tls config yml (cert from file, key inline) and tls client with "
         "RequireAnyClientCert (present certificate)",
         "tls_config_noAuth.requireanyclientcertkeyinline.good.yml", ANY_CERT_REFUSED, tls=True,
         client_cert="client_selfsigned",
         differs="Python's ssl module cannot accept a client certificate without verifying it"),
    Case("valid tls config yml and tls client with RequireAndVerifyClientCert (present "
         "certificate)", "tls_config_noAuth.requireandverifyclientcert.good.yml", OK, tls=True,
         client_cert="client_selfsigned"),
    Case("valid tls config yml and tls client with VerifyPeerCertificate (present good SAN DNS "
         "entry)", "web_config_auth_client_san.good.yaml", OK, tls=True,
         client_cert="client2_selfsigned"),
    Case("valid tls config yml and tls client with VerifyPeerCertificate (present invalid SAN "
         "DNS entries)", "web_config_auth_client_san.bad.yaml", 403, tls=True,
         client_cert="client2_selfsigned",
         differs="refused with 403 after the handshake (Go fails the handshake: bad certificate)"),
    Case("valid rate limiter (no rate limiter set up) that doesn't block",
         "web_config_rate_limiter_nonblocking.yaml", OK, requests=11),
    Case("valid rate limiter with an interval of one second",
         "web_config_rate_limiter_one_second.yaml", 429, requests=11),
]

USERS = [
    Case("without basic auth", "web_config_users_noTLS.good.yml", 401),
    Case("with correct basic auth", "web_config_users_noTLS.good.yml", OK, user="dave",
         password="dave123"),
    Case("without basic auth and TLS", "web_config_users.good.yml", 401, tls=True),
    Case("with correct basic auth and TLS", "web_config_users.good.yml", OK, tls=True,
         user="dave", password="dave123"),
    Case("with another correct basic auth and TLS", "web_config_users.good.yml", OK, tls=True,
         user="carol", password="carol123"),
    Case("with bad password and TLS", "web_config_users.good.yml", 401, tls=True, user="dave",
         password="bad"),
    Case("with bad username and TLS", "web_config_users.good.yml", 401, tls=True,
         user="nonexistent", password="nonexistent"),
]

# TestTLSConfigIsEnabled, as files: what each TLSConfig in Go's table reads as.
TLS_ENABLED = [
    ("empty config", "tls_server_config: {}\n", OK),
    ("only non-enabling fields set",
     "tls_server_config: {min_version: TLS12, prefer_server_cipher_suites: true}\n",
     refused("tls_server_config.cert_file: required: set cert_file (or cert) and key_file (or "
             "key), or remove tls_server_config for plain HTTP")),
    ("cert_file and key_file set",
     "tls_server_config: {cert_file: server.crt, key_file: server.key}\n", "tls"),
    ("only client CA file set", "tls_server_config: {client_ca_file: client_selfsigned.pem}\n",
     CERT_REQUIRED),
    ("only client auth type set",
     "tls_server_config: {client_auth_type: RequireAndVerifyClientCert}\n", CERT_REQUIRED),
]


# ---------------------------------------------------------------------------------------------


def hello_endpoints() -> Endpoints:
    """The Go test's handler: "Hello World!" for every path (here: the landing page)."""
    return Endpoints(
        telemetry_path="/metrics",
        render_metrics=lambda accept, timeout: (iter([HELLO]), "text/plain"),
        is_ready=lambda: True,
        landing_html=HELLO.decode,
    )


@contextmanager
def serving(security: Callable[[], Security | None]) -> Iterator[int]:
    server = WebServer("127.0.0.1:0", hello_endpoints(), security)
    server.start()
    try:
        yield server.port
    finally:
        server.stop()


def tls_client(case: Case) -> ssl.SSLContext:
    """The Go test's getTLSClient: verifies the server, may present a certificate.

    Go's client trusts tls-ca-chain.pem; OpenSSL refuses that chain for a server certificate
    (its CA allows "any extended key usage", which OpenSSL does not take for serverAuth and Go
    does), so this client pins the server's certificate itself instead: as strict a check."""
    context = ssl.create_default_context(cafile=str(DATA / "server.crt"))
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    if case.client_cert:
        context.load_cert_chain(str(DATA / f"{case.client_cert}.pem"),
                                str(DATA / f"{case.client_cert}.key"))
    if case.client_max_version is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = ssl.TLSVersion.TLSv1
            context.maximum_version = case.client_max_version
    if case.client_ciphers:
        context.maximum_version = ssl.TLSVersion.TLSv1_2  # Go's CipherSuites: TLS <= 1.2 only
        context.set_ciphers(case.client_ciphers)
    return context


@dataclass
class Answer:
    status: int
    body: bytes
    cipher: str | None


def get(port: int, case: Case) -> Answer:
    headers = {}
    if case.user is not None:
        headers["Authorization"] = basic_auth(case.user, str(case.password))
    connection: http.client.HTTPConnection
    if case.tls:
        connection = http.client.HTTPSConnection("127.0.0.1", port, context=tls_client(case),
                                                 timeout=10)
    else:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/", headers=headers)
        cipher = None
        if isinstance(connection.sock, ssl.SSLSocket):
            negotiated = connection.sock.cipher()
            cipher = negotiated[0] if negotiated else None
        response = connection.getresponse()
        return Answer(response.status, response.read(), cipher)
    finally:
        connection.close()


def run(case: Case, config: Path | None) -> None:
    """Serve `config` as `serve --web.config.file` would, and check the case's outcome."""
    expect = case.expect
    if isinstance(expect, str) and expect.startswith("refused: "):
        assert config is not None
        with pytest.raises(WebConfigError) as caught:
            WebConfigWatcher(str(config))
        message = str(caught.value)
        assert expect.removeprefix("refused: ") in message, message
        assert message.startswith(f"web config {config}: ") and "\n" not in message
        assert "PRIVATE KEY" not in message
        return
    security: Callable[[], Security | None] = (
        WebConfigWatcher(str(config)).current if config is not None else lambda: None)
    with serving(security) as port:
        if expect == TLS_FAILURE:
            with pytest.raises((ssl.SSLError, ConnectionError)):
                get(port, case)
            return
        if expect == NOT_HTTP:
            with pytest.raises((ConnectionError, http.client.HTTPException, ssl.SSLError)):
                get(port, case)
            return
        statuses = []
        for _ in range(case.requests):
            answer = get(port, case)
            statuses.append(answer.status)
            if answer.status == 200:
                assert answer.body == HELLO
                if case.cipher is not None:
                    assert answer.cipher == case.cipher
        if expect == OK:
            assert statuses == [200] * case.requests
        else:
            assert expect in statuses, statuses
            assert set(statuses) <= {200, expect}


@pytest.mark.parametrize("case", YAML_FILES + SERVER_BEHAVIOUR + USERS, ids=str)
def test_exporter_toolkit_case(case: Case) -> None:
    run(case, DATA / case.config if case.config is not None else None)


def test_headers_config_sends_the_headers_as_written() -> None:
    """web_config_headers.good.yml: `X-XSS-Protection: 1` is a YAML number, sent as "1"."""
    watcher = WebConfigWatcher(str(DATA / "web_config_headers.good.yml"))
    with serving(watcher.current) as port:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            connection.request("GET", "/")
            response = connection.getresponse()
            response.read()
            headers = dict(response.getheaders())
        finally:
            connection.close()
    assert {name: headers.get(name) for name in (
        "X-Frame-Options", "Strict-Transport-Security", "X-Content-Type-Options",
        "X-XSS-Protection", "Content-Security-Policy")} == {
        "X-Frame-Options": "deny",
        "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
        "X-Content-Type-Options": "nosniff",
        "X-XSS-Protection": "1",
        "Content-Security-Policy": "default-src 'self' *.test.example.net",
    }


@pytest.mark.parametrize(("name", "text", "expect"), TLS_ENABLED, ids=[c[0] for c in TLS_ENABLED])
def test_tls_config_is_enabled(tmp_path: Path, name: str, text: str, expect: str) -> None:
    for file in ("server.crt", "server.key", "client_selfsigned.pem", "tls-ca-chain.pem"):
        shutil.copy(DATA / file, tmp_path / file)
    config = tmp_path / "web.yml"
    config.write_text(text)
    case = Case(name, "web.yml", OK if expect == "tls" else expect, tls=expect == "tls",
                differs="a tls_server_config without a certificate is refused (Go serves plain "
                        "HTTP)" if name == "only non-enabling fields set" else "")
    run(case, config)


def test_config_reloading(tmp_path: Path) -> None:
    """TestConfigReloading: a client refused under the blocking file gets in once the file is
    swapped for the good one, without a restart."""
    for file in DATA.iterdir():
        shutil.copy(file, tmp_path / file.name)
    config = tmp_path / "web.yml"
    config.write_bytes((DATA / "web_config_noAuth.good.blocking.yml").read_bytes())
    now = [0.0]
    watcher = WebConfigWatcher(str(config), clock=lambda: now[0])
    client = Case("reload", "web.yml", OK, tls=True)

    with serving(watcher.current) as port:
        with pytest.raises((ssl.SSLError, ConnectionError)):  # RequireAndVerifyClientCert
            get(port, client)
        config.write_bytes((DATA / "web_config_noAuth.good.yml").read_bytes())
        now[0] += 1.0
        answer = get(port, client)
        assert (answer.status, answer.body) == (200, HELLO)


def test_the_deviations_are_the_documented_ones() -> None:
    """Every case whose outcome differs from exporter-toolkit's says so, and only those."""
    differing = {case.name for case in YAML_FILES + SERVER_BEHAVIOUR + USERS if case.differs}
    assert differing == {
        "invalid config yml (invalid ClientCAs filepath)",
        "invalid config yml (bad curves)",
        "valid tls config yml with all curves",
        "valid tls config yml with some curves",
        "valid tls config yml with no common curves",
        "valid tls config yml with non-http2 ciphers but http2 enabled",
        "valid tls config yml and tls client with RequireAnyClientCert (present certificate)",
        "valid tls config yml (cert from file, key inline) and tls client with "
        "RequireAnyClientCert (present certificate)",
        "valid tls config yml and tls client with VerifyPeerCertificate (present invalid SAN "
        "DNS entries)",
    }
