"""`--web.config.file`: TLS and basic auth in the exporter-toolkit format Go exporters use.

Reads and validates the YAML file, builds a server-side `ssl.SSLContext`, checks `Authorization`
headers against bcrypt hashes, and re-reads the file (and the certificate files it names) when
they change. The web layer asks this module "which context, is this request allowed"; this
module knows nothing of HTTP routing and must never log or put into an error message a
password, a password hash or key material.

Differences from prometheus/exporter-toolkit, all forced by Python's `ssl` module or chosen to
fail closed:

- `client_auth_type`: `NoClientCert` and `RequestClientCert` do not ask for a certificate
  (Python cannot accept a certificate without verifying it; the exporter never reads one, so who
  gets in is the same). `VerifyClientCertIfGiven` verifies a certificate when one is sent.
  `RequireAndVerifyClientCert` and `RequireAnyClientCert` (and its old name `RequireClientCert`)
  both require a certificate that chains to `client_ca_file`: stricter than Go for
  `RequireAnyClientCert`, which accepts any certificate. Every verifying type needs
  `client_ca_file` (Go would fall back to the system roots, trusting any public CA).
- `cipher_suites` takes Go's names and is translated to OpenSSL's; TLS 1.3 suites are accepted
  and ignored, as Go does. `prefer_server_cipher_suites` is accepted and ignored, as Go >= 1.18
  does. `min_version: TLS10`/`TLS11` are accepted, but many OpenSSL builds refuse them anyway.
- Not supported, and an error rather than silently ignored: inline `cert`/`key`/`client_ca`,
  `client_allowed_sans`, `curve_preferences`, `rate_limit`.
- A non-empty `tls_server_config` without `cert_file`/`key_file` is an error (Go serves plain
  HTTP).
- `http_server_config.http2` is accepted and ignored (the server speaks HTTP/1.1);
  `http_server_config.headers` is validated as Go does and offered as `response_headers`.

How a changed file applies (`WebConfigWatcher`): users, hashes and headers apply to the next
request. For TLS the web layer has two ways:
- wrap each accepted connection with `watcher.current().ssl_context()`: every change, policy
  included, applies to the next connection;
- wrap the listening socket once with `watcher.ssl_context()`: its `sni_callback` gives each new
  connection the current certificate, key and client CA bundle. The TLS policy
  (`client_auth_type`, versions, cipher suites) and TLS on/off stay as they were when the socket
  was wrapped, because OpenSSL copies them into each connection from the listening context; a
  change to them needs a restart, and the watcher says so in a warning while it keeps serving
  the running certificate.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import re
import ssl
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

log = logging.getLogger(__name__)

INSTALL_HINT: Final = "pip install 'zego-exporter[webconfig]'"
HASH_HINT: Final = "make one with: htpasswd -nBC 10 \"\" | tr -d ':\\n'"

_TOP_LEVEL_KEYS: Final = ("tls_server_config", "http_server_config", "basic_auth_users")
_TLS_KEYS: Final = (
    "cert_file",
    "key_file",
    "client_auth_type",
    "client_ca_file",
    "min_version",
    "max_version",
    "cipher_suites",
    "prefer_server_cipher_suites",
)
# exporter-toolkit keys that Python's ssl module (or this exporter) cannot honour.
_UNSUPPORTED: Final[Mapping[str, str]] = {
    "rate_limit": "not supported by zego-exporter: remove it (rate-limit in a reverse proxy)",
    "tls_server_config.cert": "inline PEM is not supported: put it in a file, use cert_file",
    "tls_server_config.key": "inline PEM is not supported: put it in a file, use key_file",
    "tls_server_config.client_ca": (
        "inline PEM is not supported: put it in a file, use client_ca_file"
    ),
    "tls_server_config.client_allowed_sans": (
        "not supported by zego-exporter: remove it and give client certificates their own CA "
        "(client_ca_file) so the CA is the allow-list"
    ),
    "tls_server_config.curve_preferences": (
        "not supported by zego-exporter (Python's ssl cannot set a curve list): remove it; "
        "OpenSSL's defaults apply"
    ),
}

# client_auth_type -> (verify_mode, needs client_ca_file). See the module docstring.
_CLIENT_AUTH: Final[Mapping[str, tuple[ssl.VerifyMode, bool]]] = {
    "NoClientCert": (ssl.CERT_NONE, False),
    "RequestClientCert": (ssl.CERT_NONE, False),
    "VerifyClientCertIfGiven": (ssl.CERT_OPTIONAL, True),
    "RequireAnyClientCert": (ssl.CERT_REQUIRED, True),
    "RequireClientCert": (ssl.CERT_REQUIRED, True),
    "RequireAndVerifyClientCert": (ssl.CERT_REQUIRED, True),
}

_TLS_VERSIONS: Final[Mapping[str, ssl.TLSVersion]] = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}

# Go's crypto/tls names (tls.CipherSuites()) -> OpenSSL names, for TLS 1.2 and below.
_CIPHER_SUITES: Final[Mapping[str, str]] = {
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
}
# TLS 1.3 suites are not configurable, in Go as in Python: accepted and ignored.
_TLS13_SUITES: Final = frozenset(
    {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}
)

# http_server_config.headers: the headers exporter-toolkit allows, and their allowed values
# (an empty tuple: any value).
_HEADERS: Final[Mapping[str, tuple[str, ...]]] = {
    "Strict-Transport-Security": (),
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": (),
    "Content-Security-Policy": (),
}

_BCRYPT_HASH: Final = re.compile(r"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")
# bcrypt reads only the first 72 bytes; Go and htpasswd truncate, the Python package refuses.
_BCRYPT_MAX_PASSWORD: Final = 72
_MAX_FILE_BYTES: Final = 4 * 1024 * 1024  # web config, certificates and keys are far smaller
_AUTH_CACHE_SIZE: Final = 256
_CONTROL_CHARACTERS: Final = re.compile(r"[\x00-\x1f\x7f]+")


class WebConfigError(Exception):
    """A web config file that cannot be used; the message is one line: file, key, fix."""

    def __init__(self, message: str) -> None:
        super().__init__(_CONTROL_CHARACTERS.sub(" ", message))


def _error(path: str, key: str, problem: str) -> WebConfigError:
    where = f"{key}: " if key else ""
    return WebConfigError(f"web config {path}: {where}{problem}")


@dataclass(frozen=True)
class TLSServerConfig:
    """`tls_server_config` after validation: absolute paths, Python ssl values."""

    cert_file: str
    key_file: str
    client_auth_type: str
    client_ca_file: str | None
    verify_mode: ssl.VerifyMode
    min_version: ssl.TLSVersion
    max_version: ssl.TLSVersion
    openssl_ciphers: tuple[str, ...]
    """OpenSSL names of the configured TLS <= 1.2 suites; empty for OpenSSL's defaults."""

    @property
    def files(self) -> tuple[str, ...]:
        return (self.cert_file, self.key_file) + (
            (self.client_ca_file,) if self.client_ca_file else ()
        )

    @property
    def policy(self) -> tuple[object, ...]:
        """What OpenSSL fixes per connection from the listening context (see module docs)."""
        return (self.verify_mode, self.min_version, self.max_version, self.openssl_ciphers)


class WebConfig:
    """One loaded web config file. Build it with `load_web_config`; it never changes."""

    def __init__(
        self,
        path: str,
        *,
        tls: TLSServerConfig | None,
        context: ssl.SSLContext | None,
        basic_auth_users: Mapping[str, bytes],
        response_headers: Mapping[str, str],
    ) -> None:
        self.path = path
        self.tls = tls
        self.response_headers: Mapping[str, str] = dict(response_headers)
        """Extra headers (http_server_config.headers) the web layer sends on every response."""
        self._context = context
        self._users = dict(basic_auth_users)
        # An unknown user is checked against a real hash of the highest cost, so that it takes
        # as long as a known one (the result is discarded).
        self._dummy_hash = max(self._users.values(), key=lambda h: h[4:6], default=b"")
        self._verified: dict[tuple[str, bytes], None] = {}
        self._verified_lock = threading.Lock()
        # bcrypt is CPU-bound by design: one at a time, as exporter-toolkit does, so a burst of
        # bad passwords costs one core, not all of them.
        self._bcrypt_lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"WebConfig(path={self.path!r}, tls={self.tls is not None}, "
            f"users={len(self._users)})"
        )

    @property
    def files(self) -> tuple[str, ...]:
        """The config file and every file it names: what a watcher must stat."""
        return (self.path, *(self.tls.files if self.tls else ()))

    def ssl_context(self) -> ssl.SSLContext | None:
        """The server-side context (the same object on every call), or None without TLS."""
        return self._context

    @property
    def auth_required(self) -> bool:
        return bool(self._users)

    def check_basic_auth(self, authorization_header: str | None) -> bool:
        """True when the request may pass: no users configured, or valid Basic credentials."""
        if not self._users:
            return True
        credentials = _parse_basic_authorization(authorization_header)
        if credentials is None:
            return False
        user, password = credentials
        password = password[:_BCRYPT_MAX_PASSWORD]
        cache_key = (user, hashlib.sha256(password).digest())
        with self._verified_lock:
            if cache_key in self._verified:
                return True
        known_hash = self._users.get(user)
        import bcrypt  # noqa: PLC0415  (optional extra; load_web_config checked it is there)

        with self._bcrypt_lock:
            try:
                matches = bcrypt.checkpw(password, known_hash or self._dummy_hash)
            except ValueError:  # a hash that passed the pattern but not bcrypt itself
                matches = False
        if known_hash is None or not matches:
            return False
        with self._verified_lock:
            if len(self._verified) >= _AUTH_CACHE_SIZE:
                del self._verified[next(iter(self._verified))]
            self._verified[cache_key] = None
        return True


def _parse_basic_authorization(header: str | None) -> tuple[str, bytes] | None:
    if not header:
        return None
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
        user, colon, password = decoded.partition(b":")
        if not colon:
            return None
        return user.decode("utf-8"), password
    except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
        return None


# ---------------------------------------------------------------------------------------------
# Loading


def _require_extras(path: str) -> None:
    try:
        import bcrypt  # noqa: F401, PLC0415  (optional extra)
        import yaml  # noqa: F401, PLC0415
    except ImportError:
        raise _error(path, "", f"reading it needs PyYAML and bcrypt: {INSTALL_HINT}") from None


def _parse_yaml(path: str, text: str) -> object:
    import yaml  # noqa: PLC0415  (optional extra, checked by _require_extras)
    from yaml.nodes import MappingNode  # noqa: PLC0415

    class StrictLoader(yaml.SafeLoader):
        """SafeLoader that refuses duplicate keys, as Go's yaml.UnmarshalStrict does."""

        def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
            self.flatten_mapping(node)
            seen: set[object] = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                # Unhashable keys (lists, mappings) are SafeLoader's to report.
                if isinstance(key, str | int | float | bool) and key in seen:
                    raise WebConfigError(
                        f"web config {path}: line {key_node.start_mark.line + 1}: "
                        f"duplicate key {key!r}: keep one"
                    )
                seen.add(key)
            return super().construct_mapping(node, deep)

    try:
        return yaml.load(text, Loader=StrictLoader)  # noqa: S506  (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1} column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or "cannot parse"
        raise _error(path, "", f"invalid YAML: {where}{problem}") from None


def load_web_config(path: str) -> WebConfig:
    """Read, validate and load a web config file (certificates included).

    Raises WebConfigError, whose message is one line naming the file, the key and the fix.
    """
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read(_MAX_FILE_BYTES + 1)  # bounded: /dev/zero must not eat memory
    except FileNotFoundError:
        raise _error(path, "", "no such file: check --web.config.file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _error(path, "", f"cannot read: {_os_reason(exc)}") from None
    if len(text) > _MAX_FILE_BYTES:
        raise _error(path, "", f"larger than {_MAX_FILE_BYTES // 2**20} MiB: check "
                               "--web.config.file")
    _require_extras(path)
    document = _parse_yaml(path, text)
    if document is None:
        document = {}
    top = _mapping(path, "", document, "the file must be a YAML mapping")
    _reject_unknown(path, "", top, _TOP_LEVEL_KEYS)

    tls = _tls_server_config(path, top.get("tls_server_config"))
    users = _basic_auth_users(path, top.get("basic_auth_users"))
    headers = _http_server_config(path, top.get("http_server_config"))
    return WebConfig(
        path,
        tls=tls,
        context=_ssl_context(path, tls) if tls else None,  # last: it reads the files
        basic_auth_users=users,
        response_headers=headers,
    )


def _os_reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return type(exc).__name__


def _mapping(path: str, key: str, value: object, problem: str) -> dict[Any, Any]:
    if not isinstance(value, dict):
        raise _error(path, key, f"{problem}, got {_type_name(value)}")
    return value


def _type_name(value: object) -> str:
    return {
        str: "a string",
        int: "a number",
        float: "a number",
        bool: "true/false",
        list: "a list",
        dict: "a mapping",
    }.get(type(value), type(value).__name__)


def _reject_unknown(
    path: str, prefix: str, section: Mapping[Any, Any], known: tuple[str, ...]
) -> None:
    for key in section:
        name = f"{prefix}{key}"
        if name in _UNSUPPORTED:
            raise _error(path, name, _UNSUPPORTED[name])
        if key not in known:
            raise _error(path, name, f"unknown key: valid keys are {', '.join(known)}")


def _string(path: str, key: str, value: object) -> str | None:
    """An optional string setting; None (YAML `~` or empty) and "" mean "not set"."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise _error(path, key, f"must be a string, got {_type_name(value)}")
    return value or None


def _tls_server_config(path: str, value: object) -> TLSServerConfig | None:
    if value is None or value == {}:
        return None
    section = _mapping(path, "tls_server_config", value, "must be a mapping")
    _reject_unknown(path, "tls_server_config.", section, _TLS_KEYS)

    def setting(key: str) -> str | None:
        return _string(path, f"tls_server_config.{key}", section.get(key))

    cert_file, key_file = setting("cert_file"), setting("key_file")
    if cert_file is None or key_file is None:
        missing = "cert_file" if cert_file is None else "key_file"
        raise _error(
            path,
            f"tls_server_config.{missing}",
            "required: set cert_file and key_file, or remove tls_server_config for plain HTTP",
        )

    client_auth_type = setting("client_auth_type") or "NoClientCert"
    if client_auth_type not in _CLIENT_AUTH:
        raise _error(
            path,
            "tls_server_config.client_auth_type",
            f"unknown value {client_auth_type!r}: use one of {', '.join(_CLIENT_AUTH)}",
        )
    verify_mode, needs_ca = _CLIENT_AUTH[client_auth_type]
    client_ca_file = setting("client_ca_file")
    if needs_ca and client_ca_file is None:
        raise _error(
            path,
            "tls_server_config.client_ca_file",
            f"required with client_auth_type {client_auth_type}: set it to the CA bundle "
            "that signs client certificates",
        )
    if client_ca_file is not None and client_auth_type == "NoClientCert":
        raise _error(
            path,
            "tls_server_config.client_auth_type",
            "client_ca_file is set but client_auth_type is NoClientCert: "
            "use RequireAndVerifyClientCert, or remove client_ca_file",
        )

    min_version = _tls_version(path, "min_version", setting("min_version") or "TLS12")
    max_version = _tls_version(path, "max_version", setting("max_version") or "TLS13")
    if min_version > max_version:
        raise _error(path, "tls_server_config.min_version", "is above max_version: swap them")

    prefer = section.get("prefer_server_cipher_suites")
    if prefer is not None and not isinstance(prefer, bool):
        raise _error(
            path, "tls_server_config.prefer_server_cipher_suites", "must be true or false"
        )

    config_dir = os.path.dirname(path)
    return TLSServerConfig(
        cert_file=os.path.join(config_dir, cert_file),
        key_file=os.path.join(config_dir, key_file),
        client_auth_type=client_auth_type,
        client_ca_file=os.path.join(config_dir, client_ca_file) if client_ca_file else None,
        verify_mode=verify_mode,
        min_version=min_version,
        max_version=max_version,
        openssl_ciphers=_cipher_suites(path, section.get("cipher_suites")),
    )


def _tls_version(path: str, key: str, name: str) -> ssl.TLSVersion:
    if name not in _TLS_VERSIONS:
        raise _error(
            path,
            f"tls_server_config.{key}",
            f"unknown TLS version {name!r}: use one of {', '.join(_TLS_VERSIONS)}",
        )
    return _TLS_VERSIONS[name]


def _cipher_suites(path: str, value: object) -> tuple[str, ...]:
    key = "tls_server_config.cipher_suites"
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _error(path, key, f"must be a list of cipher suite names, got {_type_name(value)}")
    names: list[str] = []
    for suite in value:
        if suite in _TLS13_SUITES:
            continue
        if not isinstance(suite, str) or suite not in _CIPHER_SUITES:
            raise _error(
                path,
                key,
                f"unknown cipher suite {suite!r}: use Go's names, e.g. "
                "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            )
        names.append(_CIPHER_SUITES[suite])
    return tuple(names)


def _read_file(path: str, key: str, file: str) -> bytes:
    try:
        with open(file, "rb") as handle:
            data = handle.read(_MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise _error(path, key, f'no such file "{file}"') from None
    except OSError as exc:
        raise _error(path, key, f'cannot read "{file}": {_os_reason(exc)}') from None
    if len(data) > _MAX_FILE_BYTES:
        raise _error(path, key, f'"{file}" is larger than {_MAX_FILE_BYTES // 2**20} MiB')
    return data


class _EncryptedKey(Exception):
    pass


def _refuse_password() -> str:
    # Without a callback OpenSSL would prompt on the terminal and hang a service.
    raise _EncryptedKey


def _ssl_context(path: str, tls: TLSServerConfig) -> ssl.SSLContext:
    cert_pem = _read_file(path, "tls_server_config.cert_file", tls.cert_file)
    key_pem = _read_file(path, "tls_server_config.key_file", tls.key_file)
    if b"-----BEGIN CERTIFICATE-----" not in cert_pem:
        raise _error(
            path, "tls_server_config.cert_file", f'no PEM certificate in "{tls.cert_file}"'
        )
    if b"PRIVATE KEY-----" not in key_pem:
        raise _error(path, "tls_server_config.key_file", f'no PEM private key in "{tls.key_file}"')

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with warnings.catch_warnings():
        # TLS10/TLS11 are deprecated in Python; exporter-toolkit still accepts them.
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = tls.min_version
        context.maximum_version = tls.max_version
    if tls.openssl_ciphers:
        try:
            context.set_ciphers(":".join(tls.openssl_ciphers))
        except ssl.SSLError:
            raise _error(
                path,
                "tls_server_config.cipher_suites",
                "the system OpenSSL supports none of these suites: add more, or remove the key",
            ) from None
    try:
        context.load_cert_chain(tls.cert_file, tls.key_file, password=_refuse_password)
    except _EncryptedKey:
        raise _error(
            path,
            "tls_server_config.key_file",
            f'"{tls.key_file}" is encrypted: store it unencrypted (openssl pkey -in KEY -out NEW) '
            "and protect it with file permissions",
        ) from None
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise _error(
                path,
                "tls_server_config.key_file",
                f'"{tls.key_file}" is not the key of the certificate in "{tls.cert_file}"',
            ) from None
        raise _error(
            path,
            "tls_server_config.cert_file",
            f'cannot load "{tls.cert_file}" with "{tls.key_file}" ({exc.reason or exc}): '
            "check both are PEM, certificate first in cert_file",
        ) from None
    except OSError as exc:
        reason = _os_reason(exc)
        raise _error(path, "tls_server_config.cert_file", f"cannot load: {reason}") from None

    if tls.client_ca_file:
        ca_key = "tls_server_config.client_ca_file"
        _read_file(path, ca_key, tls.client_ca_file)
        try:
            context.load_verify_locations(cafile=tls.client_ca_file)
        except ssl.SSLError:
            raise _error(path, ca_key, f'no PEM certificate in "{tls.client_ca_file}"') from None
        except OSError as exc:
            raise _error(path, ca_key, f"cannot load: {_os_reason(exc)}") from None
    context.verify_mode = tls.verify_mode
    return context


def _basic_auth_users(path: str, value: object) -> dict[str, bytes]:
    if value is None:
        return {}
    section = _mapping(path, "basic_auth_users", value, "must be a mapping of user: bcrypt hash")
    users: dict[str, bytes] = {}
    for user, hashed in section.items():
        if not isinstance(user, str):
            raise _error(
                path,
                "basic_auth_users",
                f"user name {user!r} is not a string: quote it in the YAML",
            )
        key = f"basic_auth_users.{user}"
        if ":" in user or not user:
            raise _error(
                path, key, "a user name must be non-empty and cannot contain ':' (Basic auth)"
            )
        # Never echo the value: it is a password hash, or a password pasted by mistake.
        if not isinstance(hashed, str) or not _BCRYPT_HASH.fullmatch(hashed):
            raise _error(path, key, f"not a bcrypt hash ($2y$10$ and 53 characters): {HASH_HINT}")
        users[user] = hashed.encode("ascii")
    return users


def _http_server_config(path: str, value: object) -> dict[str, str]:
    if value is None:
        return {}
    section = _mapping(path, "http_server_config", value, "must be a mapping")
    _reject_unknown(path, "http_server_config.", section, ("http2", "headers"))
    http2 = section.get("http2")
    if http2 is not None and not isinstance(http2, bool):
        raise _error(path, "http_server_config.http2", "must be true or false")
    raw_headers = section.get("headers")
    if raw_headers is None:
        return {}
    headers_section = _mapping(path, "http_server_config.headers", raw_headers, "must be a mapping")
    headers: dict[str, str] = {}
    for name, header_value in headers_section.items():
        key = f"http_server_config.headers.{name}"
        if name not in _HEADERS:
            raise _error(path, key, f"cannot be configured: use one of {', '.join(_HEADERS)}")
        header_text = _string(path, key, header_value)
        if header_text is None:
            continue  # "Unset if blank", as in exporter-toolkit
        allowed = _HEADERS[name]
        if allowed and header_text not in allowed:
            raise _error(path, key, f"must be one of {', '.join(allowed)}")
        if _CONTROL_CHARACTERS.search(header_text):
            raise _error(path, key, "must not contain control characters or line breaks")
        headers[name] = header_text
    return headers


# ---------------------------------------------------------------------------------------------
# Watching

_Fingerprint = tuple[tuple[int, int, int, int] | None, ...]


class WebConfigWatcher:
    """The current web config, re-read when its file or a file it names changes.

    `current()` is cheap enough for every request: it stats the files at most once per
    `check_interval` seconds. A new file that does not load keeps the last good config, logs
    one warning per distinct error, and is retried every interval until it loads.

    A broken file at construction raises WebConfigError: at startup, fail.
    """

    def __init__(
        self,
        path: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        stat: Callable[[str], os.stat_result] = os.stat,
        check_interval: float = 1.0,
    ) -> None:
        self.path = path
        self._clock = clock
        self._stat = stat
        self._check_interval = check_interval
        self._lock = threading.Lock()
        fingerprint = self._fingerprint((path,))
        self._config = load_web_config(path)
        self._fingerprint_seen = fingerprint + self._fingerprint(self._config.files[1:])
        self._listening: WebConfig | None = None
        """The config whose context wraps the listening socket, once ssl_context() is used."""
        self._last_check = clock()
        self._last_error: str | None = None

    def current(self) -> WebConfig:
        """The config to apply to this request."""
        with self._lock:
            now = self._clock()
            if now - self._last_check < self._check_interval:
                return self._config
            self._last_check = now
            files = self._config.files
            fingerprint = self._fingerprint(files)
            if fingerprint != self._fingerprint_seen or self._last_error is not None:
                self._reload(files, fingerprint)
            return self._config

    def ssl_context(self) -> ssl.SSLContext | None:
        """The context to wrap the listening socket with, or None when it serves plain HTTP.

        Its `sni_callback` runs on every handshake (with or without SNI) and hands the
        connection the current config's certificate, key and client CA bundle.
        """
        with self._lock:
            self._listening = self._config
        context = self._listening.ssl_context()
        if context is not None:
            context.sni_callback = self._choose_context
        return context

    def _choose_context(
        self,
        connection: ssl.SSLSocket | ssl.SSLObject,
        server_name: str | None,
        listening_context: ssl.SSLContext,
    ) -> None:
        try:
            config = self.current()
            context = config.ssl_context()
            if (
                context is not None
                and context is not connection.context
                and self._same_tls_policy(config)
            ):
                connection.context = context
        except Exception:
            # Never fail a handshake over a reload problem: the listening context still works.
            log.exception(
                "cannot switch to the current TLS certificate, using the running one",
                extra={"web_config_file": self.path},
            )

    def _same_tls_policy(self, config: WebConfig) -> bool:
        if self._listening is None:
            return True
        running, new = self._listening.tls, config.tls
        if running is None or new is None:
            return running is None and new is None
        return running.policy == new.policy

    def _fingerprint(self, files: tuple[str, ...]) -> _Fingerprint:
        stats: list[tuple[int, int, int, int] | None] = []
        for file in files:
            try:
                result = self._stat(file)
            except OSError:
                stats.append(None)
            else:
                stats.append((result.st_mtime_ns, result.st_size, result.st_ino, result.st_dev))
        return tuple(stats)

    def _reload(self, files: tuple[str, ...], fingerprint: _Fingerprint) -> None:
        try:
            config = load_web_config(self.path)
        except WebConfigError as exc:
            if str(exc) != self._last_error:
                log.warning(
                    "web config not reloaded, keeping the last good one",
                    extra={"web_config_file": self.path, "error": str(exc)},
                )
            self._last_error = str(exc)
            return
        if config.files != files:
            fingerprint = self._fingerprint(config.files)
        self._config = config
        self._fingerprint_seen = fingerprint
        self._last_error = None
        log.info("web config reloaded", extra={"web_config_file": self.path})
        if not self._same_tls_policy(config):
            log.warning(
                "web config changed TLS on/off, client_auth_type, min/max_version or "
                "cipher_suites: restart zego-exporter to apply; until then new connections "
                "keep the running TLS settings and certificate",
                extra={"web_config_file": self.path},
            )
