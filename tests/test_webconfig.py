"""The web config file: validation, basic auth, reloads, and real HTTPS on loopback."""

from __future__ import annotations

import base64
import http.client
import ipaddress
import logging
import os
import shutil
import ssl
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.certs import certificate, write_key
from tests.support.clock import FakeClock
from tests.support.credentials import basic_auth
from zego_exporter import webconfig
from zego_exporter.web import Endpoints, WebServer
from zego_exporter.webconfig import (
    INSTALL_HINT,
    BrokenWebConfig,
    WebConfig,
    WebConfigError,
    WebConfigWatcher,
    load_web_config,
    schema,
)
from zego_exporter.webconfig.auth import DUMMY_HASH
from zego_exporter.webconfig.schema import CANNOT_HONOUR, RateLimit
from zego_exporter.webconfig.throttle import TokenBucket

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
    san_client_crt: Path  # SANs: DNS scraper.example, IP 2001:db8::1, e-mail, URI
    san_client_key: Path
    encrypted_key: Path
    junk: Path
    broken_crt: Path  # has the PEM markers, but not a certificate inside


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")

    def issue(name: str, issuer: str, issuer_key: ec.EllipticCurvePrivateKey,
              **kind: Any) -> None:
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
    issue("san-client", "test-ca", ca_key, sans=[
        x509.DNSName("scraper.example"),
        x509.IPAddress(ipaddress.ip_address("2001:db8::1")),
        x509.RFC822Name("prometheus@example.org"),
        x509.UniformResourceIdentifier("spiffe://example.org/prometheus"),
    ])
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
        san_client_crt=directory / "san-client.crt",
        san_client_key=directory / "san-client.key",
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
    assert not config.auth
    assert config.auth.check(None)
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
        "  http2: false\n"
        "  headers:\n"
        "    X-Frame-Options: deny\n"
        "    Strict-Transport-Security: max-age=31536000\n"
        "    Content-Security-Policy: ''\n"
        "    X-XSS-Protection: 1\n"
    )
    config = load_web_config(write(tmp_path / "web.yml", text))

    assert config.response_headers == {
        "X-Frame-Options": "deny",
        "Strict-Transport-Security": "max-age=31536000",
        "X-XSS-Protection": "1",
    }


@pytest.mark.parametrize(("written", "sent"), [
    ("1", "1"), ("0", "0"), ("1.0", "1.0"), ("0x1F", "0x1F"), ("true", "true"), ("yes", "yes"),
    ("'1; mode=block'", "1; mode=block"), ("~", None), ("", None),
])
def test_header_values_are_sent_as_written_whatever_yaml_types_them(
    tmp_path: Path, written: str, sent: str | None
) -> None:
    """Go's yaml reads a scalar into a string field as its text; PyYAML would give 1.0 or True."""
    text = f"http_server_config:\n  headers:\n    X-XSS-Protection: {written}\n"
    config = load_web_config(write(tmp_path / "web.yml", text))

    assert config.response_headers.get("X-XSS-Protection") == sent


# (id, YAML text with {placeholders} for PKI files, the key the message must name)
INVALID_CONFIGS = [
    ("bad-yaml", "tls_server_config: [\n", "invalid YAML: line"),
    ("duplicate-key", "basic_auth_users: {}\nbasic_auth_users: {}\n", "duplicate key"),
    # PyYAML types these scalars and then fails to build them (ValueError, not a YAMLError).
    ("impossible-date", "basic_auth_users: {alice: 2001-13-01}\n", "invalid YAML: a value"),
    ("tag-on-text", "rate_limit: {burst: !!int many}\n", "invalid YAML: a value"),
    ("nested-too-deep", "a: " + "[" * 5000 + "]" * 5000 + "\n", "invalid YAML: nested"),
    ("unhashable-key", "? [a, b]\n: 1\n", "invalid YAML: line 1 column 3: found unhashable key"),
    ("not-a-mapping", "- a\n- b\n", "the file must be a YAML mapping"),
    ("unknown-top-key", "tls_config: {}\n", "tls_config: unknown key"),
    ("rate-limit-not-mapping", "rate_limit: 1s\n", "rate_limit: must be a mapping"),
    ("rate-limit-unknown", "rate_limit: {every: 1s}\n", "rate_limit.every: unknown key"),
    ("rate-limit-bare-number", "rate_limit: {interval: 5, burst: 2}\n",
     "rate_limit.interval: must be a duration with a unit"),
    ("rate-limit-not-duration", "rate_limit: {interval: 1 second}\n",
     "rate_limit.interval: '1 second' is not a duration"),
    ("rate-limit-days", "rate_limit: {interval: 1d}\n", "rate_limit.interval: '1d' is not a"),
    ("rate-limit-negative", "rate_limit: {interval: -1s, burst: 1}\n",
     "rate_limit.interval: must not be negative"),
    ("rate-limit-burst", "rate_limit: {interval: 1s, burst: -1}\n", "rate_limit.burst: must"),
    ("rate-limit-burst-bool", "rate_limit: {interval: 1s, burst: true}\n", "rate_limit.burst"),
    ("tls-not-mapping", "tls_server_config: yes\n", "tls_server_config: must be a mapping"),
    ("tls-typo", "tls_server_config: {cert_fil: a}\n", "tls_server_config.cert_fil: unknown key"),
    ("cert-and-cert-file", "{tls}  cert: x\n", "tls_server_config.cert: set cert (inline PEM) "
     "or cert_file, not both"),
    ("key-and-key-file", "{tls}  key: x\n", "tls_server_config.key: set key (inline PEM) or"),
    ("ca-and-ca-file", "{tls}  client_auth_type: RequireAndVerifyClientCert\n"
     "  client_ca_file: '{ca}'\n  client_ca: x\n", "tls_server_config.client_ca: set client_ca"),
    ("inline-cert-not-pem", "tls_server_config: {cert: not a pem, key_file: '{key}'}\n",
     "tls_server_config.cert: no PEM certificate in the inline PEM"),
    ("inline-key-not-pem", "tls_server_config: {cert_file: '{cert}', key: not a pem}\n",
     "tls_server_config.key: no PEM private key in the inline PEM"),
    ("inline-ca-not-pem", "{tls}  client_auth_type: RequireAndVerifyClientCert\n"
     "  client_ca: not a pem\n", "tls_server_config.client_ca: no PEM certificate in the inline"),
    ("sans-without-verification", "{tls}  client_allowed_sans: [a]\n",
     "tls_server_config.client_allowed_sans: needs a verified client certificate, which "
     "client_auth_type NoClientCert does not ask for"),
    ("sans-request-only", "{tls}  client_auth_type: RequestClientCert\n"
     "  client_allowed_sans: [a]\n", "client_auth_type RequestClientCert does not ask for"),
    ("sans-empty", "{tls}  client_auth_type: RequireAndVerifyClientCert\n"
     "  client_allowed_sans: []\n", "client_allowed_sans: is empty"),
    ("sans-not-strings", "{tls}  client_auth_type: RequireAndVerifyClientCert\n"
     "  client_allowed_sans: [[a]]\n", "client_allowed_sans: must be a list of SANs"),
    ("curves", "tls_server_config: {curve_preferences: [X25519]}\n",
     "tls_server_config.curve_preferences: cannot be honoured by zego-exporter: Python's ssl"),
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
    ("any-needs-ca", "{tls}  client_auth_type: RequireAnyClientCert\n",
     "tls_server_config.client_auth_type: RequireAnyClientCert without a client CA cannot be "
     "honoured by zego-exporter: Python's ssl module cannot accept a client certificate without "
     "verifying it"),
    ("old-any-needs-ca", "{tls}  client_auth_type: RequireClientCert\n",
     "RequireClientCert without a client CA cannot be honoured"),
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
    ("cipher-not-string", "{tls}  cipher_suites: [[TLS_AES_128_GCM_SHA256]]\n",
     "tls_server_config.cipher_suites: unknown cipher suite ['TLS_AES_128_GCM_SHA256']"),
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
    ("http2-true", "http_server_config: {http2: true}\n", "http_server_config.http2: true cannot "
     "be honoured by zego-exporter: it serves HTTP/1.1 only"),
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
    assert "not a pem" not in message  # inline values, a key among them, are never echoed


# Values of every YAML type, and a few that each key takes, so that validation gets far.
_YAML_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
    | st.sampled_from(["1s", "TLS12", "RequireAndVerifyClientCert", "deny", "2001-13-01",
                       "TLS_AES_128_GCM_SHA256", "$2y$10$" + "a" * 53]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                max_size=3),
    max_leaves=6,
)
# Each key of the format, beside settings that let validation reach it.
_KEYS = [
    *(("tls_server_config", key) for key in (
        "cert", "cert_file", "key", "key_file", "client_auth_type", "client_ca",
        "client_ca_file", "client_allowed_sans", "min_version", "max_version", "cipher_suites",
        "prefer_server_cipher_suites", "curve_preferences")),
    ("http_server_config", "http2"), ("http_server_config", "headers"),
    ("rate_limit", "interval"), ("rate_limit", "burst"), ("basic_auth_users", "alice"),
]
_BESIDE = {"tls_server_config": {"cert_file": "c.crt", "key_file": "c.key",
                                 "client_auth_type": "RequireAndVerifyClientCert"}}


@pytest.mark.parametrize(("section", "key"), _KEYS, ids=[".".join(k) for k in _KEYS])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=_YAML_VALUES | st.dictionaries(st.sampled_from(
    ["X-Frame-Options", "X-XSS-Protection", "Foo"]), _YAML_VALUES, max_size=2))
def test_any_value_of_any_key_loads_or_is_one_line_naming_the_file(
    tmp_path_factory: pytest.TempPathFactory, section: str, key: str, value: object
) -> None:
    """Whatever a key holds, loading ends in a WebConfig or a WebConfigError, never another
    exception (that was a traceback at start, and a reload that ended the accept loop)."""
    import yaml

    path = tmp_path_factory.mktemp("any") / "web.yml"
    path.write_text(yaml.safe_dump({section: {**_BESIDE.get(section, {}), key: value}}))
    try:
        load_web_config(str(path))
    except WebConfigError as caught:
        assert str(caught).startswith(f"web config {path}: ") and "\n" not in str(caught)


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
    assert auth_config.auth
    assert auth_config.auth.check(basic_auth("alice", PASSWORD))
    assert auth_config.auth.check(basic_auth("bob", "builder"))  # htpasswd's $2y$ prefix
    assert not auth_config.auth.check(basic_auth("alice", "wrong"))
    assert not auth_config.auth.check(basic_auth("bob", PASSWORD))
    assert not auth_config.auth.check(basic_auth("Alice", PASSWORD))


def test_no_password_hash_in_the_printed_config(auth_config: WebConfig, alice_hash: str) -> None:
    for printed in (repr(auth_config), repr(auth_config.settings), repr(auth_config.auth)):
        assert "$2" not in printed and alice_hash not in printed


def test_unknown_user_costs_one_bcrypt_at_a_fixed_cost_whatever_the_file_holds(
    auth_config: WebConfig, counted_checkpw: list[bytes]
) -> None:
    assert not auth_config.auth.check(basic_auth("mallory", PASSWORD))

    # exporter-toolkit's way: a fixed cost-10 hash, not the costliest user's (a cost-16 user
    # in the file made every unknown user cost seconds).
    assert counted_checkpw == [DUMMY_HASH]
    assert DUMMY_HASH.startswith(b"$2b$10$") and len(DUMMY_HASH) == 60


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
    assert not auth_config.auth.check(header)
    assert counted_checkpw == []


def test_scheme_is_case_insensitive(auth_config: WebConfig) -> None:
    token = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    assert auth_config.auth.check(f"basic {token}")
    assert auth_config.auth.check(f"BASIC  {token} ")


def test_passwords_beyond_72_bytes_are_truncated_like_go_and_htpasswd(tmp_path: Path) -> None:
    long_password = "x" * 72
    hashed = bcrypt.hashpw(long_password.encode(), bcrypt.gensalt(rounds=4)).decode()
    config = load_web_config(write(tmp_path / "web.yml", f"basic_auth_users: {{u: '{hashed}'}}"))

    assert config.auth.check(basic_auth("u", long_password + "ignored"))
    assert not config.auth.check(basic_auth("u", "x" * 71))


def test_results_are_remembered_per_user_and_password(
    auth_config: WebConfig, counted_checkpw: list[bytes]
) -> None:
    assert auth_config.auth.check(basic_auth("alice", PASSWORD))
    assert auth_config.auth.check(basic_auth("alice", PASSWORD))
    assert auth_config.auth.check(basic_auth("alice", PASSWORD))
    assert len(counted_checkpw) == 1

    # A failure is remembered too (a scraper with a stale password costs one check), and a
    # wrong password never matches a remembered success.
    assert not auth_config.auth.check(basic_auth("alice", "wrong"))
    assert not auth_config.auth.check(basic_auth("alice", "wrong"))
    assert len(counted_checkpw) == 2
    assert not auth_config.auth.check(basic_auth("alice", PASSWORD + "x"))
    assert len(counted_checkpw) == 3

    # Per user: bob with alice's password is not a hit.
    assert not auth_config.auth.check(basic_auth("bob", PASSWORD))
    assert len(counted_checkpw) == 4
    assert auth_config.auth.check(basic_auth("alice", PASSWORD))
    assert len(counted_checkpw) == 4


def test_a_reload_carries_results_over_only_for_an_unchanged_hash(
    tmp_path: Path, alice_hash: str, counted_checkpw: list[bytes]
) -> None:
    path = write(tmp_path / "web.yml", f"basic_auth_users: {{alice: '{alice_hash}'}}")
    first = load_web_config(path)
    assert first.auth.check(basic_auth("alice", PASSWORD))
    assert load_web_config(path, previous=first).auth.check(basic_auth("alice", PASSWORD))
    assert len(counted_checkpw) == 1  # a certificate rotation costs no scraper a check

    new_hash = bcrypt.hashpw(b"rotated", bcrypt.gensalt(rounds=4)).decode()
    write(tmp_path / "web.yml", f"basic_auth_users: {{alice: '{new_hash}'}}")
    rotated = load_web_config(path, previous=first)
    assert not rotated.auth.check(basic_auth("alice", PASSWORD))  # the old password is gone
    assert rotated.auth.check(basic_auth("alice", "rotated"))
    assert len(counted_checkpw) == 3


def test_a_reloaded_config_starts_with_an_empty_cache(
    tmp_path: Path, alice_hash: str, counted_checkpw: list[bytes]
) -> None:
    path = write(tmp_path / "web.yml", f"basic_auth_users: {{alice: '{alice_hash}'}}")
    assert load_web_config(path).auth.check(basic_auth("alice", PASSWORD))
    assert load_web_config(path).auth.check(basic_auth("alice", PASSWORD))
    assert len(counted_checkpw) == 2


# ---------------------------------------------------------------------------------------------
# The watcher


PAST_RECHECK = 1.5  # seconds: past the watcher's once-a-second look at the file


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


def loaded(watcher: WebConfigWatcher) -> WebConfig:
    """The watcher's current config, which the test expects to have loaded (not broken)."""
    config = watcher.current()
    assert isinstance(config, WebConfig), config
    return config


def test_watcher_reloads_a_changed_file(tmp_path: Path, clock: FakeClock, alice_hash: str) -> None:
    path = write(tmp_path / "web.yml", "")
    watcher = WebConfigWatcher(path, clock=clock)
    assert not loaded(watcher).auth

    write(tmp_path / "web.yml", f"basic_auth_users: {{alice: '{alice_hash}'}}\n")
    assert not loaded(watcher).auth  # not stat'ed yet: within the second
    clock.advance(PAST_RECHECK)

    assert loaded(watcher).auth
    assert loaded(watcher).auth.check(basic_auth("alice", PASSWORD))


def test_a_broken_file_fails_closed_with_one_error_until_it_is_fixed(
    tmp_path: Path, clock: FakeClock, alice_hash: str, caplog: pytest.LogCaptureFixture
) -> None:
    good = f"basic_auth_users: {{alice: '{alice_hash}'}}\n"
    path = write(tmp_path / "web.yml", good)
    reads: list[bool] = []
    watcher = WebConfigWatcher(path, clock=clock, on_reload=reads.append)
    assert watcher.current().admit(basic_auth("alice", PASSWORD), None) is None
    assert reads == [True]

    # The edit that removes alice also breaks the file: she must not keep getting in.
    write(tmp_path / "web.yml", "basic_auth_users: {bob: hunter2}\n")
    with caplog.at_level(logging.INFO, logger="zego_exporter.webconfig"):
        for _ in range(3):
            clock.advance(PAST_RECHECK)
            current = watcher.current()
            assert isinstance(current, BrokenWebConfig)
            assert current.admit(basic_auth("alice", PASSWORD), None) == 500
            assert current.admit(None, None, login=False) == 500  # the callback too
    assert reads == [True, False, False, False]

    errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(errors) == 1
    assert errors[0].levelno == logging.ERROR
    assert "every request but /-/healthy is answered 500" in errors[0].getMessage()
    fields = {k: str(v) for k, v in vars(errors[0]).items()}
    assert fields["web_config_file"] == path
    assert "basic_auth_users.bob: not a bcrypt hash" in fields["error"]
    for value in [errors[0].getMessage(), *fields.values()]:
        assert "hunter2" not in value
        assert alice_hash not in value

    bob_hash = bcrypt.hashpw(b"builder", bcrypt.gensalt(rounds=4)).decode()
    write(tmp_path / "web.yml", f"basic_auth_users: {{bob: '{bob_hash}'}}\n")
    clock.advance(PAST_RECHECK)
    with caplog.at_level(logging.INFO, logger="zego_exporter.webconfig"):
        assert watcher.current().admit(basic_auth("bob", "builder"), None) is None
    assert watcher.current().admit(basic_auth("alice", PASSWORD), None) == 401
    assert reads[-1] is True
    assert "web config valid again" in caplog.records[-1].getMessage()


def test_a_different_problem_is_logged_again(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path / "web.yml", "")
    watcher = WebConfigWatcher(path, clock=clock)
    with caplog.at_level(logging.ERROR, logger="zego_exporter.webconfig"):
        write(tmp_path / "web.yml", "nope: 1\n")
        clock.advance(PAST_RECHECK)
        watcher.current()
        write(tmp_path / "web.yml", "tls_server_config: [\n")
        clock.advance(PAST_RECHECK)
        watcher.current()
    assert [r.error for r in caplog.records] == [  # type: ignore[attr-defined]
        f"web config {path}: nope: unknown key: valid keys are tls_server_config, "
        "http_server_config, rate_limit, basic_auth_users",
        f"web config {path}: invalid YAML: line 2 column 1: expected the node content, "
        "but found '<stream end>'",
    ]


def test_an_unexpected_error_while_reloading_fails_closed_and_is_retried(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Whatever a reload raises, the watcher answers with a config: `current()` runs in the
    server's accept loop, which an exception would end, and a reload that left nothing behind
    but a changed stat would keep the old users in."""
    path = write(tmp_path / "web.yml", "")
    watcher = WebConfigWatcher(path, clock=clock)

    def explode(path: str, *, previous: WebConfig | None = None) -> WebConfig:
        raise RuntimeError("a bug while loading")

    monkeypatch.setattr(webconfig, "load_web_config", explode)
    write(tmp_path / "web.yml", "# changed\n")
    with caplog.at_level(logging.ERROR, logger="zego_exporter.webconfig"):
        for _ in range(2):
            clock.advance(PAST_RECHECK)
            current = watcher.current()
            assert isinstance(current, BrokenWebConfig)
            assert current.admit(None, None) == 500
    assert len(caplog.records) == 1
    assert "RuntimeError" in caplog.records[0].error  # type: ignore[attr-defined]
    assert "a bug while loading" not in caplog.text  # its message might quote the file

    monkeypatch.undo()
    clock.advance(PAST_RECHECK)
    assert isinstance(watcher.current(), WebConfig)  # retried although the file is unchanged


def test_a_file_that_yaml_cannot_build_fails_closed_while_serving(
    tmp_path: Path, clock: FakeClock, alice_hash: str
) -> None:
    path = write(tmp_path / "web.yml", f"basic_auth_users: {{alice: '{alice_hash}'}}\n")
    watcher = WebConfigWatcher(path, clock=clock)
    endpoints = Endpoints(telemetry_path="/metrics",
                          render_metrics=lambda accept, timeout: (iter([b"m 1\n"]), "text/plain"),
                          is_ready=lambda: True, landing_html=lambda: "ok\n")
    server = WebServer("127.0.0.1:0", endpoints, watcher.current)
    server.start()
    try:
        def get(path: str) -> int:
            connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
            try:
                connection.request("GET", path, headers={"Authorization": basic_auth("alice",
                                                                                 PASSWORD)})
                response = connection.getresponse()
                response.read()
                return response.status
            finally:
                connection.close()

        assert get("/metrics") == 200
        write(tmp_path / "web.yml", "basic_auth_users: {bob: 2001-13-01}\n")
        clock.advance(PAST_RECHECK)
        assert get("/metrics") == 500  # alice, removed in the broken edit, is not let in
        assert get("/-/healthy") == 200
    finally:
        server.stop()


def test_watcher_retries_a_broken_file_that_names_a_file_not_there_yet(
    tmp_path: Path, pki: Pki, clock: FakeClock
) -> None:
    path = write(tmp_path / "web.yml", "")
    watcher = WebConfigWatcher(path, clock=clock)
    new_cert = tmp_path / "late.crt"
    write(tmp_path / "web.yml", tls_yaml(pki, cert=new_cert))
    clock.advance(PAST_RECHECK)
    broken = watcher.current()
    assert isinstance(broken, BrokenWebConfig)
    assert broken.ssl_context() is None  # the last good transport: plain HTTP

    shutil.copy(pki.server_crt, new_cert)  # the config file itself does not change again
    clock.advance(PAST_RECHECK)

    current = watcher.current()
    assert isinstance(current, WebConfig) and current.tls is not None


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
    clock.advance(PAST_RECHECK)

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
def https_server(security: Callable[[], WebConfig | BrokenWebConfig]) -> Iterator[int]:
    """The exporter's own web server on loopback, wrapping each connection as production does:
    with `security().ssl_context()` at the time it is accepted."""
    endpoints = Endpoints(
        telemetry_path="/metrics",
        render_metrics=lambda accept, timeout: (iter([b""]), "text/plain"),
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


def fetch(port: int, context: ssl.SSLContext, path: str = "/") -> tuple[int, str]:
    """GET over HTTPS: the status and the common name of the server's certificate."""
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=5)
    try:
        connection.request("GET", path)
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
        clock.advance(PAST_RECHECK)
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
        clock.advance(PAST_RECHECK)
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
        clock.advance(PAST_RECHECK)
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
        clock.advance(PAST_RECHECK)
        context = watcher.current().ssl_context()

    assert context is not None
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert not any(r.levelno >= logging.WARNING for r in caplog.records)


# ---------------------------------------------------------------------------------------------
# exporter-toolkit's other settings: inline PEM, client SANs, system CAs, rate limit; and a file
# that breaks while serving HTTPS.


def indented(path: Path) -> str:
    return "".join(f"    {line}\n" for line in path.read_text().splitlines())


def test_inline_cert_key_and_client_ca_serve_like_files(tmp_path: Path, pki: Pki) -> None:
    text = (
        "tls_server_config:\n"
        f"  cert: |\n{indented(pki.server_crt)}"
        f"  key: |\n{indented(pki.server_key)}"
        "  client_auth_type: RequireAndVerifyClientCert\n"
        f"  client_ca: |\n{indented(pki.ca)}"
    )
    config = load_web_config(write(tmp_path / "web.yml", text))
    assert config.files == (config.path,)  # nothing else to watch: the file holds it all
    assert "PRIVATE KEY" not in repr(config) + repr(config.tls)

    with https_server(fixed(config)) as port:
        assert fetch(port, client_context(pki, pki.client_crt, pki.client_key)) == (200, "server")
        with pytest.raises((ssl.SSLError, ConnectionError)):
            fetch(port, client_context(pki, pki.rogue_client_crt, pki.rogue_client_key))


def test_inline_pem_without_an_anonymous_memory_file_goes_through_a_private_temporary_one(
    tmp_path: Path, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delattr(os, "memfd_create", raising=False)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(scratch))
    text = tls_yaml(pki).replace(f"  key_file: {pki.server_key}\n",
                                 f"  key: |\n{indented(pki.server_key)}")

    config = load_web_config(write(tmp_path / "web.yml", text))

    assert config.ssl_context() is not None
    assert list(scratch.iterdir()) == []  # the key did not stay on disk


@pytest.mark.parametrize(("allowed", "passes"), [
    ("[scraper.example]", True),
    ("['2001:db8::1']", True),  # Go's notation; Python prints it 2001:DB8:0:0:0:0:0:1
    ("[prometheus@example.org]", True),
    ("['spiffe://example.org/prometheus']", True),
    ("[other.example, scraper.example]", True),
    ("[other.example]", False),
    ("[san-client]", False),  # the common name is no SAN
    ("['2001:DB8:0:0:0:0:0:1']", False),  # compared as Go writes it, as exporter-toolkit does
])
def test_client_allowed_sans_are_checked_on_the_verified_certificate(
    tmp_path: Path, pki: Pki, allowed: str, passes: bool
) -> None:
    extra = (f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {pki.ca}\n"
             f"  client_allowed_sans: {allowed}\n")
    config = load_web_config(write(tmp_path / "web.yml", tls_yaml(pki, extra)))

    with https_server(fixed(config)) as port:
        status, _ = fetch(port, client_context(pki, pki.san_client_crt, pki.san_client_key))
        assert status == (200 if passes else 403)
        assert fetch(port, client_context(pki, pki.client_crt, pki.client_key))[0] == 403
        assert fetch(port, client_context(pki, pki.client_crt, pki.client_key),
                     "/-/healthy")[0] == 200


def test_client_allowed_sans_refuse_a_connection_without_a_certificate(
    tmp_path: Path, pki: Pki
) -> None:
    extra = (f"  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: {pki.ca}\n"
             "  client_allowed_sans: [scraper.example]\n")
    config = load_web_config(write(tmp_path / "web.yml", tls_yaml(pki, extra)))

    with https_server(fixed(config)) as port:
        assert fetch(port, client_context(pki))[0] == 403
        assert fetch(port, client_context(pki, pki.san_client_crt, pki.san_client_key))[0] == 200


@pytest.mark.parametrize("client_auth_type", ["VerifyClientCertIfGiven",
                                              "RequireAndVerifyClientCert"])
def test_without_a_client_ca_client_certificates_are_verified_against_the_system_store(
    tmp_path: Path, pki: Pki, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
    client_auth_type: str,
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(pki.ca))  # OpenSSL's default store, for this test
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path))
    extra = f"  client_auth_type: {client_auth_type}\n"
    with caplog.at_level(logging.WARNING, logger="zego_exporter.webconfig"):
        config = load_web_config(write(tmp_path / "web.yml", tls_yaml(pki, extra)))
    assert config.tls is not None and config.tls.trusts_system_cas
    assert any("system's CA store" in r.getMessage() for r in caplog.records)

    with https_server(fixed(config)) as port:
        assert fetch(port, client_context(pki, pki.client_crt, pki.client_key))[0] == 200
        with pytest.raises((ssl.SSLError, ConnectionError)):
            fetch(port, client_context(pki, pki.rogue_client_crt, pki.rogue_client_key))
        if client_auth_type == "RequireAndVerifyClientCert":
            with pytest.raises((ssl.SSLError, ConnectionError)):
                fetch(port, client_context(pki))
        else:
            assert fetch(port, client_context(pki))[0] == 200


def test_cipher_suites_are_chosen_in_gos_order_whatever_the_files_order(
    tmp_path: Path, pki: Pki
) -> None:
    extra = (
        "  max_version: TLS12\n"
        "  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,"
        " TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]\n"
    )
    config = load_web_config(write(tmp_path / "web.yml", tls_yaml(pki, extra)))
    client = client_context(pki)
    client.set_ciphers("ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256")

    with https_server(fixed(config)) as port:
        connection = http.client.HTTPSConnection("127.0.0.1", port, context=client, timeout=5)
        try:
            connection.request("GET", "/")
            assert isinstance(connection.sock, ssl.SSLSocket)
            cipher = connection.sock.cipher()
            connection.getresponse().read()
        finally:
            connection.close()
    assert cipher is not None and cipher[0] == "ECDHE-ECDSA-AES128-GCM-SHA256"


def test_a_file_that_breaks_while_serving_https_fails_closed_but_stays_healthy(
    tmp_path: Path, pki: Pki, clock: FakeClock
) -> None:
    path = write(tmp_path / "web.yml", tls_yaml(pki))
    watcher = WebConfigWatcher(path, clock=clock)

    with https_server(watcher.current) as port:
        assert fetch(port, client_context(pki)) == (200, "server")
        write(tmp_path / "web.yml", tls_yaml(pki, "  min_version: TLS14\n"))
        clock.advance(PAST_RECHECK)
        # Still HTTPS with the last good certificate, so that the probe reaches /-/healthy.
        assert fetch(port, client_context(pki), "/-/healthy") == (200, "server")
        for path_ in ("/", "/metrics", "/-/ready"):
            assert fetch(port, client_context(pki), path_)[0] == 500
        write(tmp_path / "web.yml", tls_yaml(pki))
        clock.advance(PAST_RECHECK)
        assert fetch(port, client_context(pki)) == (200, "server")


# ---------------------------------------------------------------------------------------------
# rate_limit


def test_rate_limit_lets_a_burst_through_then_one_per_interval(clock: FakeClock) -> None:
    bucket = TokenBucket(RateLimit(interval=2.0, burst=3), clock=clock)
    assert [bucket.allow() for _ in range(4)] == [True, True, True, False]
    clock.advance(1.0)
    assert not bucket.allow()
    clock.advance(1.0)
    assert bucket.allow()
    assert not bucket.allow()
    clock.advance(60.0)  # a long quiet spell refills the burst, not more
    assert [bucket.allow() for _ in range(4)] == [True, True, True, False]


def test_a_burst_of_zero_refuses_everything_as_in_exporter_toolkit(clock: FakeClock) -> None:
    bucket = TokenBucket(RateLimit(interval=1.0, burst=0), clock=clock)
    assert not bucket.allow()
    clock.advance(10.0)
    assert not bucket.allow()


@pytest.mark.parametrize(("written", "expected"), [
    ("{interval: 1s, burst: 5}", RateLimit(1.0, 5)),
    ("{interval: 1m30s, burst: 1}", RateLimit(90.0, 1)),
    ("{interval: 250ms}", RateLimit(0.25, 0)),
    ("{interval: 1.5h, burst: 2}", RateLimit(5400.0, 2)),
    ("{interval: 500us, burst: 2}", RateLimit(0.0005, 2)),
    ("{interval: 0, burst: 5}", None),  # exporter-toolkit: an interval of 0 turns it off
    ("{interval: 0s}", None),
    ("{burst: 5}", None),
    ("{}", None),
])
def test_rate_limit_reads_go_durations(
    tmp_path: Path, written: str, expected: RateLimit | None
) -> None:
    config = load_web_config(write(tmp_path / "web.yml", f"rate_limit: {written}\n"))
    assert config.settings.rate_limit == expected
    assert (config.limiter is None) == (expected is None)


def test_rate_limit_refuses_with_429_before_the_login_and_spares_health(
    tmp_path: Path, alice_hash: str
) -> None:
    text = f"rate_limit: {{interval: 1h, burst: 2}}\nbasic_auth_users: {{alice: '{alice_hash}'}}\n"
    config = load_web_config(write(tmp_path / "web.yml", text))

    assert config.admit(basic_auth("alice", PASSWORD), None) is None
    assert config.admit(basic_auth("alice", "wrong"), None) == 401
    assert config.admit(basic_auth("alice", PASSWORD), None) == 429
    assert config.admit(None, None, login=False) == 429  # the callback is counted too


def test_a_reload_keeps_the_bucket_unless_the_limit_changes(
    tmp_path: Path, clock: FakeClock
) -> None:
    path = write(tmp_path / "web.yml", "rate_limit: {interval: 1h, burst: 1}\n")
    watcher = WebConfigWatcher(path, clock=clock)
    first = watcher.current()
    assert first.admit(None, None) is None
    assert first.admit(None, None) == 429

    write(tmp_path / "web.yml", "rate_limit: {interval: 1h, burst: 1}\n# touched\n")
    clock.advance(PAST_RECHECK)
    touched = watcher.current()
    assert touched is not first
    assert touched.admit(None, None) == 429  # a reload is no way around the limit

    write(tmp_path / "web.yml", "rate_limit: {interval: 1h, burst: 2}\n")
    clock.advance(PAST_RECHECK)
    assert watcher.current().admit(None, None) is None  # a new limit: a new, full bucket


# ---------------------------------------------------------------------------------------------
# What Python cannot match: refused at start, and listed in docs/web-config.md


DOCS_PAGE = Path(__file__).resolve().parent.parent / "docs" / "web-config.md"
# (how the docs table's row starts, a file that asks for it)
CANNOT_MATCH = [
    ("| `curve_preferences` |", "tls_server_config: {curve_preferences: [X25519]}\n"),
    ("| `client_auth_type: RequireAnyClientCert` (or its old name `RequireClientCert`) without",
     "{tls}  client_auth_type: RequireAnyClientCert\n"),
    ("| `client_auth_type: RequireAnyClientCert` (or its old name `RequireClientCert`) without",
     "{tls}  client_auth_type: RequireClientCert\n"),
    ("| `http_server_config.http2: true` |", "http_server_config: {http2: true}\n"),
]


def differences_table() -> list[str]:
    text = DOCS_PAGE.read_text("utf-8")
    section = text.split("\n## Differences from exporter-toolkit\n", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("| `")]


def test_what_python_cannot_match_is_refused_at_start_and_in_the_docs_table(
    tmp_path: Path, pki: Pki
) -> None:
    rows = differences_table()
    matched = set()
    for row_start, template in CANNOT_MATCH:
        path = write(tmp_path / "web.yml", template.replace("{tls}", tls_yaml(pki)))
        with pytest.raises(WebConfigError, match=CANNOT_HONOUR):
            load_web_config(path)
        (row,) = [row for row in rows if row.startswith(row_start)]
        assert "cannot be honoured, refused at start" in row
        matched.add(row)

    # Both ways: no other row claims it, and the code has no other such refusal.
    assert {row for row in rows if "cannot be honoured" in row} == matched
    schema_source = Path(schema.__file__).read_text("utf-8")
    assert schema_source.count("{CANNOT_HONOUR}") == len({start for start, _ in CANNOT_MATCH})
