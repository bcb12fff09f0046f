"""The web config file: validation, basic auth, reloads, and real HTTPS on loopback."""

from __future__ import annotations

import base64
import http.client
import logging
import os
import shutil
import ssl
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import pytest
from certs import certificate, write_key
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from zego_exporter.web import Endpoints, WebServer
from zego_exporter.webconfig import (
    INSTALL_HINT,
    WebConfig,
    WebConfigError,
    WebConfigWatcher,
    load_web_config,
)

PASSWORD = "wonderland"


# ---------------------------------------------------------------------------------------------
# A throwaway PKI and bcrypt hashes, made once per test session.


@dataclass(frozen=True)
class Pki:
    dir: Path
    ca: Path
    server_crt: Path
    server_key: Path
    server2_crt: Path
    server2_key: Path
    client_crt: Path
    client_key: Path
    rogue_client_crt: Path  # signed by a CA the server does not trust
    rogue_client_key: Path
    encrypted_key: Path
    junk: Path
    broken_crt: Path  # has the PEM markers, but not a certificate inside


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")

    def issue(name: str, issuer: str, issuer_key: ec.EllipticCurvePrivateKey, **kind: bool) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = certificate(name, key, issuer, issuer_key, **kind)
        pem = cert.public_bytes(serialization.Encoding.PEM)
        (directory / f"{name}.crt").write_bytes(pem)
        write_key(directory / f"{name}.key", key)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_certificate = certificate("test-ca", ca_key, "test-ca", ca_key, ca=True)
    (directory / "ca.crt").write_bytes(ca_certificate.public_bytes(serialization.Encoding.PEM))
    rogue_ca_key = ec.generate_private_key(ec.SECP256R1())
    issue("server", "test-ca", ca_key, server=True)
    issue("server2", "test-ca", ca_key, server=True)
    issue("client", "test-ca", ca_key)
    issue("rogue-client", "rogue-ca", rogue_ca_key)
    write_key(directory / "encrypted.key", ec.generate_private_key(ec.SECP256R1()), b"secret")
    (directory / "junk.pem").write_text("not a pem file\n")
    (directory / "broken.crt").write_text(
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    )
    return Pki(
        dir=directory,
        ca=directory / "ca.crt",
        server_crt=directory / "server.crt",
        server_key=directory / "server.key",
        server2_crt=directory / "server2.crt",
        server2_key=directory / "server2.key",
        client_crt=directory / "client.crt",
        client_key=directory / "client.key",
        rogue_client_crt=directory / "rogue-client.crt",
        rogue_client_key=directory / "rogue-client.key",
        encrypted_key=directory / "encrypted.key",
        junk=directory / "junk.pem",
        broken_crt=directory / "broken.crt",
    )


@pytest.fixture(scope="session")
def alice_hash() -> str:
    return bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()


def write(path: Path, text: str) -> str:
    """Write a config file, making sure its mtime differs from the previous version."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text)
    after = path.stat().st_mtime_ns
    if after <= before:
        os.utime(path, ns=(before + 1_000_000_000, before + 1_000_000_000))
    return str(path)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def tls_yaml(
    pki: Pki, extra: str = "", *, cert: Path | None = None, key: Path | None = None
) -> str:
    return (
        "tls_server_config:\n"
        f"  cert_file: {cert or pki.server_crt}\n"
        f"  key_file: {key or pki.server_key}\n"
        f"{extra}"
    )


# ---------------------------------------------------------------------------------------------
# Loading and validation


def test_an_empty_file_means_plain_http_and_no_auth(tmp_path: Path) -> None:
    config = load_web_config(write(tmp_path / "web.yml", ""))

    assert config.ssl_context() is None
    assert not config.auth_required
    assert config.check_basic_auth(None)
    assert config.response_headers == {}


def test_relative_paths_are_relative_to_the_config_directory(
    tmp_path: Path, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_dir = tmp_path / "etc"
    config_dir.mkdir()
    shutil.copy(pki.server_crt, config_dir / "tls.crt")
    shutil.copy(pki.server_key, config_dir / "tls.key")
    text = "tls_server_config: {cert_file: tls.crt, key_file: tls.key}"
    path = write(config_dir / "web.yml", text)
    monkeypatch.chdir(tmp_path)  # not the config directory

    config = load_web_config(path)

    assert config.ssl_context() is not None
    assert config.tls is not None
    assert config.tls.cert_file == str(config_dir / "tls.crt")


def test_client_auth_types_map_to_python_verify_modes(tmp_path: Path, pki: Pki) -> None:
    expected = {
        "NoClientCert": ssl.CERT_NONE,
        "RequestClientCert": ssl.CERT_NONE,
        "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
        "RequireAnyClientCert": ssl.CERT_REQUIRED,
        "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
    }
    for client_auth_type, verify_mode in expected.items():
        ca = f"  client_ca_file: {pki.ca}\n" if client_auth_type != "NoClientCert" else ""
        extra = f"  client_auth_type: {client_auth_type}\n{ca}"
        config = load_web_config(write(tmp_path / "web.yml", tls_yaml(pki, extra)))
        context = config.ssl_context()
        assert context is not None
        assert context.verify_mode == verify_mode, client_auth_type


def test_tls_versions_and_go_cipher_suite_names(tmp_path: Path, pki: Pki) -> None:
    extra = (
        "  min_version: TLS12\n"
        "  max_version: TLS13\n"
        "  prefer_server_cipher_suites: false\n"
        "  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_AES_128_GCM_SHA256]\n"
    )
    config = load_web_config(write(tmp_path / "web.yml", tls_yaml(pki, extra)))

    context = config.ssl_context()
    assert context is not None
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.maximum_version == ssl.TLSVersion.TLSv1_3
    tls12 = {c["name"] for c in context.get_ciphers() if c["protocol"] != "TLSv1.3"}
    assert tls12 == {"ECDHE-ECDSA-AES128-GCM-SHA256"}


def test_http_server_config_headers_are_offered_to_the_web_layer(tmp_path: Path) -> None:
    text = (
        "http_server_config:\n"
        "  http2: true\n"
        "  headers:\n"
        "    X-Frame-Options: deny\n"
        "    Strict-Transport-Security: max-age=31536000\n"
        "    Content-Security-Policy: ''\n"
    )
    config = load_web_config(write(tmp_path / "web.yml", text))

    assert config.response_headers == {
        "X-Frame-Options": "deny",
        "Strict-Transport-Security": "max-age=31536000",
    }


# (id, YAML text with {placeholders} for PKI files, the key the message must name)
INVALID_CONFIGS = [
    ("bad-yaml", "tls_server_config: [\n", "invalid YAML: line"),
    ("duplicate-key", "basic_auth_users: {}\nbasic_auth_users: {}\n", "duplicate key"),
    ("not-a-mapping", "- a\n- b\n", "the file must be a YAML mapping"),
    ("unknown-top-key", "tls_config: {}\n", "tls_config: unknown key"),
    ("rate-limit", "rate_limit: {interval: 1s, burst: 2}\n", "rate_limit: not supported"),
    ("tls-not-mapping", "tls_server_config: yes\n", "tls_server_config: must be a mapping"),
    ("tls-typo", "tls_server_config: {cert_fil: a}\n", "tls_server_config.cert_fil: unknown key"),
    ("inline-cert", "tls_server_config: {cert: x}\n", "tls_server_config.cert: inline PEM"),
    ("inline-key", "tls_server_config: {key: x}\n", "tls_server_config.key: inline PEM"),
    ("inline-ca", "tls_server_config: {client_ca: x}\n", "tls_server_config.client_ca: inline"),
    ("sans", "tls_server_config: {client_allowed_sans: [a]}\n", "client_allowed_sans: not supp"),
    ("curves", "tls_server_config: {curve_preferences: [X25519]}\n", "curve_preferences: not"),
    ("cert-not-string", "tls_server_config: {cert_file: 12, key_file: k}\n", "cert_file: must be"),
    ("no-key-file", "tls_server_config: {cert_file: '{cert}'}\n", "key_file: required"),
    ("no-cert-file", "tls_server_config: {key_file: '{key}'}\n", "cert_file: required"),
    ("only-version", "tls_server_config: {min_version: TLS13}\n", "cert_file: required"),
    ("cert-missing", "tls_server_config: {cert_file: nope.crt, key_file: '{key}'}\n",
     'tls_server_config.cert_file: no such file "'),
    ("key-missing", "tls_server_config: {cert_file: '{cert}', key_file: /nope.key}\n",
     'tls_server_config.key_file: no such file "/nope.key"'),
    ("cert-is-dir", "tls_server_config: {cert_file: '{dir}', key_file: '{key}'}\n",
     "tls_server_config.cert_file: cannot read"),
    ("cert-not-pem", "tls_server_config: {cert_file: '{junk}', key_file: '{key}'}\n",
     "tls_server_config.cert_file: no PEM certificate"),
    ("key-not-pem", "tls_server_config: {cert_file: '{cert}', key_file: '{junk}'}\n",
     "tls_server_config.key_file: no PEM private key"),
    ("cert-broken", "tls_server_config: {cert_file: '{broken}', key_file: '{key}'}\n",
     "tls_server_config.cert_file: cannot load"),
    ("key-mismatch", "tls_server_config: {cert_file: '{cert}', key_file: '{key2}'}\n",
     "tls_server_config.key_file:"),
    ("key-encrypted", "tls_server_config: {cert_file: '{cert}', key_file: '{encrypted}'}\n",
     "tls_server_config.key_file:"),
    ("client-auth-unknown", "{tls}  client_auth_type: RequireCert\n",
     "tls_server_config.client_auth_type: unknown value"),
    ("verify-needs-ca", "{tls}  client_auth_type: RequireAndVerifyClientCert\n",
     "tls_server_config.client_ca_file: required"),
    ("any-needs-ca", "{tls}  client_auth_type: RequireAnyClientCert\n",
     "tls_server_config.client_ca_file: required"),
    ("ca-without-auth", "{tls}  client_ca_file: '{ca}'\n",
     "tls_server_config.client_auth_type: client_ca_file is set"),
    ("ca-missing", "{tls}  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: ca.pem\n",
     'tls_server_config.client_ca_file: no such file "'),
    ("ca-not-pem",
     "{tls}  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: '{junk}'\n",
     "tls_server_config.client_ca_file: no PEM certificate"),
    ("min-version", "{tls}  min_version: TLS14\n", "tls_server_config.min_version: unknown TLS"),
    ("max-version", "{tls}  max_version: 1.3\n", "tls_server_config.max_version: must be a str"),
    ("min-above-max", "{tls}  min_version: TLS13\n  max_version: TLS12\n",
     "tls_server_config.min_version: is above max_version"),
    ("prefer-not-bool", "{tls}  prefer_server_cipher_suites: 'yes'\n",
     "tls_server_config.prefer_server_cipher_suites: must be true or false"),
    ("ciphers-not-list", "{tls}  cipher_suites: TLS_AES_128_GCM_SHA256\n",
     "tls_server_config.cipher_suites: must be a list"),
    ("cipher-unknown", "{tls}  cipher_suites: [ECDHE-RSA-AES128-GCM-SHA256]\n",
     "tls_server_config.cipher_suites: unknown cipher suite"),
    ("users-not-mapping", "basic_auth_users: [alice]\n", "basic_auth_users: must be a mapping"),
    ("user-not-string", "basic_auth_users: {123: '{hash}'}\n", "basic_auth_users: user name 123"),
    ("user-colon", "basic_auth_users: {'a:b': '{hash}'}\n", "basic_auth_users.a:b: a user name"),
    ("user-empty", "basic_auth_users: {'': '{hash}'}\n", "basic_auth_users.: a user name"),
    ("hash-plain", "basic_auth_users: {alice: hunter2}\n", "basic_auth_users.alice: not a bcrypt"),
    ("hash-short", "basic_auth_users: {alice: $2y$10$abc}\n", "basic_auth_users.alice: not a bcr"),
    ("hash-not-string", "basic_auth_users: {alice: 12}\n", "basic_auth_users.alice: not a bcr"),
    ("http-not-mapping", "http_server_config: []\n", "http_server_config: must be a mapping"),
    ("http-unknown", "http_server_config: {http3: true}\n", "http_server_config.http3: unknown"),
    ("http2-not-bool", "http_server_config: {http2: 'on'}\n", "http_server_config.http2: must"),
    ("headers-not-mapping", "http_server_config: {headers: [a]}\n", "headers: must be a mapping"),
    ("header-unknown", "http_server_config: {headers: {X-Powered-By: me}}\n",
     "http_server_config.headers.X-Powered-By: cannot be configured"),
    ("header-value", "http_server_config: {headers: {X-Frame-Options: allow}}\n",
     "http_server_config.headers.X-Frame-Options: must be one of deny, sameorigin"),
    ("header-newline", 'http_server_config: {headers: {X-XSS-Protection: "1\\nSet-Cookie: a"}}\n',
     "http_server_config.headers.X-XSS-Protection: must not contain control characters"),
    ("header-not-string", "http_server_config: {headers: {X-XSS-Protection: [1]}}\n",
     "http_server_config.headers.X-XSS-Protection: must be a string"),
]


@pytest.mark.parametrize(
    ("template", "expected"),
    [pytest.param(template, expected, id=name) for name, template, expected in INVALID_CONFIGS],
)
def test_every_invalid_config_is_one_line_naming_file_and_key(
    tmp_path: Path, pki: Pki, alice_hash: str, template: str, expected: str
) -> None:
    values = {
        "tls": tls_yaml(pki),
        "cert": pki.server_crt,
        "key": pki.server_key,
        "key2": pki.server2_key,
        "encrypted": pki.encrypted_key,
        "junk": pki.junk,
        "broken": pki.broken_crt,
        "ca": pki.ca,
        "dir": pki.dir,
        "hash": alice_hash,
    }
    text = template
    for name, value in values.items():
        text = text.replace("{" + name + "}", str(value))
    path = write(tmp_path / "web.yml", text)

    with pytest.raises(WebConfigError) as caught:
        load_web_config(path)

    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"web config {path}: ")
    assert expected in message
    assert alice_hash not in message
    assert "hunter2" not in message


def test_the_config_file_itself_missing_or_unreadable(tmp_path: Path) -> None:
    missing = str(tmp_path / "absent.yml")
    with pytest.raises(WebConfigError, match=r"absent\.yml: no such file: check --web\.config"):
        load_web_config(missing)
    with pytest.raises(WebConfigError, match="cannot read: is a directory"):
        load_web_config(str(tmp_path))


@pytest.mark.parametrize("module", ["yaml", "bcrypt"])
def test_missing_optional_extra_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: str
) -> None:
    path = write(tmp_path / "web.yml", "basic_auth_users: {}\n")
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError

    with pytest.raises(WebConfigError) as caught:
        load_web_config(path)

    assert INSTALL_HINT in str(caught.value)
    assert "pip install 'zego-exporter[webconfig]'" in str(caught.value)


# ---------------------------------------------------------------------------------------------
# Basic auth


@pytest.fixture
def counted_checkpw(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Counts bcrypt verifications; each entry is the hash compared against."""
    calls: list[bytes] = []
    real_checkpw = bcrypt.checkpw

    def checkpw(password: bytes, hashed: bytes) -> bool:
        calls.append(hashed)
        return real_checkpw(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", checkpw)
    return calls


@pytest.fixture
def auth_config(tmp_path: Path, alice_hash: str) -> WebConfig:
    bob_hash = bcrypt.hashpw(b"builder", bcrypt.gensalt(rounds=5)).decode().replace("$2b$", "$2y$")
    text = f"basic_auth_users:\n  alice: '{alice_hash}'\n  bob: '{bob_hash}'\n"
    return load_web_config(write(tmp_path / "web.yml", text))


def test_basic_auth_right_and_wrong_passwords(auth_config: WebConfig) -> None:
    assert auth_config.auth_required
    assert auth_config.check_basic_auth(basic("alice", PASSWORD))
    assert auth_config.check_basic_auth(basic("bob", "builder"))  # htpasswd's $2y$ prefix
    assert not auth_config.check_basic_auth(basic("alice", "wrong"))
    assert not auth_config.check_basic_auth(basic("bob", PASSWORD))
    assert not auth_config.check_basic_auth(basic("Alice", PASSWORD))


def test_unknown_user_costs_one_bcrypt_like_a_known_one(
    auth_config: WebConfig, counted_checkpw: list[bytes]
) -> None:
    assert not auth_config.check_basic_auth(basic("mallory", PASSWORD))

    assert len(counted_checkpw) == 1
    assert counted_checkpw[0].startswith(b"$2y$05$")  # the costliest configured hash


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Basic",
        "Basic ",
        "Bearer abc",
        "Basic !!!notbase64",
        "Basic " + base64.b64encode(b"alice-no-colon").decode(),
        "Basic " + base64.b64encode(b"\xff\xfe:" + PASSWORD.encode()).decode(),
        "Basic " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode()[:-2],
    ],
)
def test_malformed_authorization_is_refused_without_bcrypt(
    auth_config: WebConfig, counted_checkpw: list[bytes], header: str | None
) -> None:
    assert not auth_config.check_basic_auth(header)
    assert counted_checkpw == []


def test_scheme_is_case_insensitive(auth_config: WebConfig) -> None:
    token = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    assert auth_config.check_basic_auth(f"basic {token}")
    assert auth_config.check_basic_auth(f"BASIC  {token} ")


def test_passwords_beyond_72_bytes_are_truncated_like_go_and_htpasswd(tmp_path: Path) -> None:
    long_password = "x" * 72
    hashed = bcrypt.hashpw(long_password.encode(), bcrypt.gensalt(rounds=4)).decode()
    config = load_web_config(write(tmp_path / "web.yml", f"basic_auth_users: {{u: '{hashed}'}}"))

    assert config.check_basic_auth(basic("u", long_password + "ignored"))
    assert not config.check_basic_auth(basic("u", "x" * 71))


def test_successful_verifications_are_cached_failures_are_not(
    auth_config: WebConfig, counted_checkpw: list[bytes]
) -> None:
    assert auth_config.check_basic_auth(basic("alice", PASSWORD))
    assert auth_config.check_basic_auth(basic("alice", PASSWORD))
    assert auth_config.check_basic_auth(basic("alice", PASSWORD))
    assert len(counted_checkpw) == 1

    assert not auth_config.check_basic_auth(basic("alice", "wrong"))
    assert not auth_config.check_basic_auth(basic("alice", "wrong"))
    assert len(counted_checkpw) == 3

    # The cache is per user: bob with alice's password is not a hit.
    assert not auth_config.check_basic_auth(basic("bob", PASSWORD))
    assert len(counted_checkpw) == 4


def test_a_reloaded_config_starts_with_an_empty_cache(
    tmp_path: Path, alice_hash: str, counted_checkpw: list[bytes]
) -> None:
    path = write(tmp_path / "web.yml", f"basic_auth_users: {{alice: '{alice_hash}'}}")
    assert load_web_config(path).check_basic_auth(basic("alice", PASSWORD))
    assert load_web_config(path).check_basic_auth(basic("alice", PASSWORD))
    assert len(counted_checkpw) == 2


# ---------------------------------------------------------------------------------------------
# The watcher


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float = 1.5) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def counting_stat(calls: list[str]) -> Callable[[str], os.stat_result]:
    def stat(path: str) -> os.stat_result:
        calls.append(path)
        return os.stat(path)

    return stat


def test_watcher_stats_at_most_once_per_second(tmp_path: Path, clock: FakeClock) -> None:
    calls: list[str] = []
    path = write(tmp_path / "web.yml", "")
    watcher = WebConfigWatcher(path, clock=clock, stat=counting_stat(calls))
    calls.clear()

    first = watcher.current()
    clock.advance(0.5)
    assert watcher.current() is first
    assert calls == []

    clock.advance(0.6)
    assert watcher.current() is first  # unchanged file: same object, no reload
    assert calls == [path]


def test_watcher_reloads_a_changed_file(tmp_path: Path, clock: FakeClock, alice_hash: str) -> None:
    path = write(tmp_path / "web.yml", "")
    watcher = WebConfigWatcher(path, clock=clock)
    assert not watcher.current().auth_required

    write(tmp_path / "web.yml", f"basic_auth_users: {{alice: '{alice_hash}'}}\n")
    assert not watcher.current().auth_required  # not stat'ed yet: within the second
    clock.advance()

    assert watcher.current().auth_required
    assert watcher.current().check_basic_auth(basic("alice", PASSWORD))


def test_watcher_keeps_the_last_good_config_and_warns_once(
    tmp_path: Path, clock: FakeClock, alice_hash: str, caplog: pytest.LogCaptureFixture
) -> None:
    good = f"basic_auth_users: {{alice: '{alice_hash}'}}\n"
    path = write(tmp_path / "web.yml", good)
    watcher = WebConfigWatcher(path, clock=clock)
    last_good = watcher.current()

    write(tmp_path / "web.yml", "basic_auth_users: {alice: hunter2}\n")
    with caplog.at_level(logging.WARNING, logger="zego_exporter.webconfig"):
        for _ in range(3):
            clock.advance()
            assert watcher.current() is last_good

    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "keeping the last good one" in warnings[0].getMessage()
    fields = {k: str(v) for k, v in vars(warnings[0]).items()}
    assert fields["web_config_file"] == path
    assert "basic_auth_users.alice: not a bcrypt hash" in fields["error"]
    for value in [warnings[0].getMessage(), *fields.values()]:
        assert "hunter2" not in value
        assert alice_hash not in value

    bob_hash = bcrypt.hashpw(b"builder", bcrypt.gensalt(rounds=4)).decode()
    write(tmp_path / "web.yml", f"basic_auth_users: {{bob: '{bob_hash}'}}\n")
    clock.advance()
    assert watcher.current().check_basic_auth(basic("bob", "builder"))
    assert not watcher.current().check_basic_auth(basic("alice", PASSWORD))


def test_watcher_retries_a_broken_file_that_names_a_file_not_there_yet(
    tmp_path: Path, pki: Pki, clock: FakeClock
) -> None:
    path = write(tmp_path / "web.yml", "")
    watcher = WebConfigWatcher(path, clock=clock)
    new_cert = tmp_path / "late.crt"
    write(tmp_path / "web.yml", tls_yaml(pki, cert=new_cert))
    clock.advance()
    assert watcher.current().tls is None

    shutil.copy(pki.server_crt, new_cert)  # the config file itself does not change again
    clock.advance()

    assert watcher.current().tls is not None


def test_watcher_refuses_a_broken_file_at_start(tmp_path: Path, clock: FakeClock) -> None:
    path = write(tmp_path / "web.yml", "nope: 1\n")
    with pytest.raises(WebConfigError, match="nope: unknown key"):
        WebConfigWatcher(path, clock=clock)


def test_watcher_notices_a_rotated_certificate_without_a_config_change(
    tmp_path: Path, pki: Pki, clock: FakeClock
) -> None:
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    shutil.copy(pki.server_crt, cert)
    shutil.copy(pki.server_key, key)
    path = write(tmp_path / "web.yml", tls_yaml(pki, cert=cert, key=key))
    watcher = WebConfigWatcher(path, clock=clock)
    before = watcher.current()

    rotate(pki.server2_crt, pki.server2_key, cert, key)
    clock.advance()

    assert watcher.current() is not before


def rotate(new_cert: Path, new_key: Path, cert: Path, key: Path) -> None:
    """Replace certificate and key the way cert-manager or a script does: write, then rename."""
    shutil.copy(new_cert, str(cert) + ".tmp")
    shutil.copy(new_key, str(key) + ".tmp")
    os.replace(str(cert) + ".tmp", cert)
    os.replace(str(key) + ".tmp", key)


# ---------------------------------------------------------------------------------------------
# Real HTTPS on loopback


@contextmanager
def https_server(security: Callable[[], WebConfig]) -> Iterator[int]:
    """The exporter's own web server on loopback, wrapping each connection as production does:
    with `security().ssl_context()` at the time it is accepted."""
    endpoints = Endpoints(
        telemetry_path="/metrics",
        render_metrics=lambda accept, timeout: (b"", "text/plain"),
        is_ready=lambda: True,
        landing_html=lambda: "ok\n",
    )
    server = WebServer("127.0.0.1:0", endpoints, security)
    server.start()
    try:
        yield server.port
    finally:
        server.stop()


def fixed(config: WebConfig) -> Callable[[], WebConfig]:
    return lambda: config


def client_context(pki: Pki, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca))
    if cert and key:
        context.load_cert_chain(str(cert), str(key))
    return context


def fetch(port: int, context: ssl.SSLContext) -> tuple[int, str]:
    """GET / over HTTPS: the status and the common name of the server's certificate."""
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=5)
    try:
        connection.request("GET", "/")
        assert isinstance(connection.sock, ssl.SSLSocket)
        der = connection.sock.getpeercert(binary_form=True)
        response = connection.getresponse()
        response.read()
        assert der is not None
        subject = x509.load_der_x509_certificate(der).subject
        return response.status, str(subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)
    finally:
        connection.close()


def test_https_handshake(tmp_path: Path, pki: Pki) -> None:
    config = load_web_config(write(tmp_path / "web.yml", tls_yaml(pki)))
    assert config.ssl_context() is not None

    with https_server(fixed(config)) as port:
        assert fetch(port, client_context(pki)) == (200, "server")


def test_mutual_tls_requires_a_certificate_from_the_client_ca(tmp_path: Path, pki: Pki) -> None:
    extra = f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {pki.ca}\n"
    config = load_web_config(write(tmp_path / "web.yml", tls_yaml(pki, extra)))
    assert config.ssl_context() is not None

    with https_server(fixed(config)) as port:
        with pytest.raises((ssl.SSLError, ConnectionError)):
            fetch(port, client_context(pki))
        with pytest.raises((ssl.SSLError, ConnectionError)):
            fetch(port, client_context(pki, pki.rogue_client_crt, pki.rogue_client_key))
        assert fetch(port, client_context(pki, pki.client_crt, pki.client_key)) == (200, "server")


def test_verify_client_cert_if_given(tmp_path: Path, pki: Pki) -> None:
    extra = f"  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: {pki.ca}\n"
    config = load_web_config(write(tmp_path / "web.yml", tls_yaml(pki, extra)))
    assert config.ssl_context() is not None

    with https_server(fixed(config)) as port:
        assert fetch(port, client_context(pki))[0] == 200
        assert fetch(port, client_context(pki, pki.client_crt, pki.client_key))[0] == 200
        with pytest.raises((ssl.SSLError, ConnectionError)):
            fetch(port, client_context(pki, pki.rogue_client_crt, pki.rogue_client_key))


def test_min_version_refuses_older_clients(tmp_path: Path, pki: Pki) -> None:
    extra = "  min_version: TLS13\n"
    config = load_web_config(write(tmp_path / "web.yml", tls_yaml(pki, extra)))
    assert config.ssl_context() is not None
    old_client = client_context(pki)
    old_client.maximum_version = ssl.TLSVersion.TLSv1_2

    with https_server(fixed(config)) as port:
        with pytest.raises((ssl.SSLError, ConnectionError)):
            fetch(port, old_client)
        assert fetch(port, client_context(pki))[0] == 200


def test_rotated_certificate_serves_new_connections(
    tmp_path: Path, pki: Pki, clock: FakeClock
) -> None:
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    shutil.copy(pki.server_crt, cert)
    shutil.copy(pki.server_key, key)
    path = write(tmp_path / "web.yml", tls_yaml(pki, cert=cert, key=key))
    watcher = WebConfigWatcher(path, clock=clock)

    with https_server(watcher.current) as port:
        assert fetch(port, client_context(pki)) == (200, "server")
        rotate(pki.server2_crt, pki.server2_key, cert, key)
        assert fetch(port, client_context(pki)) == (200, "server")  # checked once a second
        clock.advance()
        assert fetch(port, client_context(pki)) == (200, "server2")
        assert fetch(port, client_context(pki)) == (200, "server2")


def test_rotated_client_ca_applies_to_new_connections(
    tmp_path: Path, pki: Pki, clock: FakeClock
) -> None:
    client_ca = tmp_path / "clients.pem"
    shutil.copy(pki.ca, client_ca)
    extra = f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {client_ca}\n"
    watcher = WebConfigWatcher(write(tmp_path / "web.yml", tls_yaml(pki, extra)), clock=clock)
    with_client_cert = client_context(pki, pki.client_crt, pki.client_key)

    with https_server(watcher.current) as port:
        assert fetch(port, with_client_cert)[0] == 200
        # The client CA bundle is replaced by one that does not contain the test CA.
        shutil.copy(pki.server_crt, str(client_ca) + ".tmp")
        os.replace(str(client_ca) + ".tmp", client_ca)
        clock.advance()
        with pytest.raises((ssl.SSLError, ConnectionError)):
            fetch(port, with_client_cert)


def test_a_tls_policy_change_applies_to_new_connections_without_a_restart(
    tmp_path: Path, pki: Pki, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path / "web.yml", tls_yaml(pki))
    watcher = WebConfigWatcher(path, clock=clock)

    with https_server(watcher.current) as port, caplog.at_level(logging.WARNING):
        assert fetch(port, client_context(pki)) == (200, "server")
        extra = f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {pki.ca}\n"
        write(tmp_path / "web.yml", tls_yaml(pki, extra, cert=pki.server2_crt, key=pki.server2_key))
        clock.advance()
        # The whole new policy at once: a client certificate asked for, the new certificate.
        with pytest.raises((ssl.SSLError, ConnectionError)):
            fetch(port, client_context(pki))
        assert fetch(port, client_context(pki, pki.client_crt, pki.client_key)) == (
            200, "server2")

    assert not any(r.levelno >= logging.WARNING for r in caplog.records)


def test_per_connection_wrapping_applies_a_policy_change_without_restart(
    tmp_path: Path, pki: Pki, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """What the web layer wraps the next connection with follows the file at once."""
    watcher = WebConfigWatcher(write(tmp_path / "web.yml", tls_yaml(pki)), clock=clock)
    extra = f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {pki.ca}\n"
    with caplog.at_level(logging.WARNING):
        write(tmp_path / "web.yml", tls_yaml(pki, extra))
        clock.advance()
        context = watcher.current().ssl_context()

    assert context is not None
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert not any(r.levelno >= logging.WARNING for r in caplog.records)
