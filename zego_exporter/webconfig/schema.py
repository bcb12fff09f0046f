"""The web config file's schema: read the YAML strictly and validate every key into `Settings`.

This is where exporter-toolkit's names (client_auth_type values, TLS versions, Go cipher suite
names, the configurable headers) become Python values, and where every refusal is worded: one
line naming the file, the key and the fix. It reads only the config file itself; loading the
certificates is `tls.py`'s job. It must never put a password, a password hash or key material
into a message.
"""

from __future__ import annotations

import os
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

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

# client_auth_type -> (verify_mode, needs client_ca_file). Python cannot accept a certificate
# without verifying it: RequestClientCert does not ask for one (the exporter never reads it, so
# who gets in is the same), and RequireAnyClientCert verifies against client_ca_file (stricter).
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
MAX_FILE_BYTES: Final = 4 * 1024 * 1024  # web config, certificates and keys are far smaller
_CONTROL_CHARACTERS: Final = re.compile(r"[\x00-\x1f\x7f]+")


class WebConfigError(Exception):
    """A web config file that cannot be used; the message is one line: file, key, fix."""

    def __init__(self, message: str) -> None:
        super().__init__(_CONTROL_CHARACTERS.sub(" ", message))


def error(path: str, key: str, problem: str) -> WebConfigError:
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


@dataclass(frozen=True)
class Settings:
    """A valid web config file, before its certificates are loaded."""

    tls: TLSServerConfig | None
    basic_auth_users: Mapping[str, bytes]
    """User name -> bcrypt hash."""
    response_headers: Mapping[str, str]


def read_settings(path: str) -> Settings:
    """Read and validate the file. Raises WebConfigError."""
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read(MAX_FILE_BYTES + 1)  # bounded: /dev/zero must not eat memory
    except FileNotFoundError:
        raise error(path, "", "no such file: check --web.config.file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(path, "", f"cannot read: {os_reason(exc)}") from None
    if len(text) > MAX_FILE_BYTES:
        raise error(path, "", f"larger than {MAX_FILE_BYTES // 2**20} MiB: check "
                              "--web.config.file")
    _require_extras(path)
    document = _parse_yaml(path, text)
    if document is None:
        document = {}
    top = _mapping(path, "", document, "the file must be a YAML mapping")
    _reject_unknown(path, "", top, _TOP_LEVEL_KEYS)
    return Settings(
        tls=_tls_server_config(path, top.get("tls_server_config")),
        basic_auth_users=_basic_auth_users(path, top.get("basic_auth_users")),
        response_headers=_http_server_config(path, top.get("http_server_config")),
    )


def os_reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return type(exc).__name__


def _require_extras(path: str) -> None:
    try:
        import bcrypt  # noqa: F401, PLC0415  (optional extra)
        import yaml  # noqa: F401, PLC0415
    except ImportError:
        raise error(path, "", f"reading it needs PyYAML and bcrypt: {INSTALL_HINT}") from None


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
        raise error(path, "", f"invalid YAML: {where}{problem}") from None


def _mapping(path: str, key: str, value: object, problem: str) -> dict[Any, Any]:
    if not isinstance(value, dict):
        raise error(path, key, f"{problem}, got {_type_name(value)}")
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
            raise error(path, name, _UNSUPPORTED[name])
        if key not in known:
            raise error(path, name, f"unknown key: valid keys are {', '.join(known)}")


def _string(path: str, key: str, value: object) -> str | None:
    """An optional string setting; None (YAML `~` or empty) and "" mean "not set"."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise error(path, key, f"must be a string, got {_type_name(value)}")
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
        raise error(
            path,
            f"tls_server_config.{missing}",
            "required: set cert_file and key_file, or remove tls_server_config for plain HTTP",
        )

    client_auth_type = setting("client_auth_type") or "NoClientCert"
    if client_auth_type not in _CLIENT_AUTH:
        raise error(
            path,
            "tls_server_config.client_auth_type",
            f"unknown value {client_auth_type!r}: use one of {', '.join(_CLIENT_AUTH)}",
        )
    verify_mode, needs_ca = _CLIENT_AUTH[client_auth_type]
    client_ca_file = setting("client_ca_file")
    if needs_ca and client_ca_file is None:
        raise error(
            path,
            "tls_server_config.client_ca_file",
            f"required with client_auth_type {client_auth_type}: set it to the CA bundle "
            "that signs client certificates",
        )
    if client_ca_file is not None and client_auth_type == "NoClientCert":
        raise error(
            path,
            "tls_server_config.client_auth_type",
            "client_ca_file is set but client_auth_type is NoClientCert: "
            "use RequireAndVerifyClientCert, or remove client_ca_file",
        )

    min_version = _tls_version(path, "min_version", setting("min_version") or "TLS12")
    max_version = _tls_version(path, "max_version", setting("max_version") or "TLS13")
    if min_version > max_version:
        raise error(path, "tls_server_config.min_version", "is above max_version: swap them")

    prefer = section.get("prefer_server_cipher_suites")
    if prefer is not None and not isinstance(prefer, bool):
        raise error(
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
        raise error(
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
        raise error(path, key, f"must be a list of cipher suite names, got {_type_name(value)}")
    names: list[str] = []
    for suite in value:
        if suite in _TLS13_SUITES:
            continue
        if not isinstance(suite, str) or suite not in _CIPHER_SUITES:
            raise error(
                path,
                key,
                f"unknown cipher suite {suite!r}: use Go's names, e.g. "
                "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            )
        names.append(_CIPHER_SUITES[suite])
    return tuple(names)


def _basic_auth_users(path: str, value: object) -> dict[str, bytes]:
    if value is None:
        return {}
    section = _mapping(path, "basic_auth_users", value, "must be a mapping of user: bcrypt hash")
    users: dict[str, bytes] = {}
    for user, hashed in section.items():
        if not isinstance(user, str):
            raise error(
                path,
                "basic_auth_users",
                f"user name {user!r} is not a string: quote it in the YAML",
            )
        key = f"basic_auth_users.{user}"
        if ":" in user or not user:
            raise error(
                path, key, "a user name must be non-empty and cannot contain ':' (Basic auth)"
            )
        # Never echo the value: it is a password hash, or a password pasted by mistake.
        if not isinstance(hashed, str) or not _BCRYPT_HASH.fullmatch(hashed):
            raise error(path, key, f"not a bcrypt hash ($2y$10$ and 53 characters): {HASH_HINT}")
        users[user] = hashed.encode("ascii")
    return users


def _http_server_config(path: str, value: object) -> dict[str, str]:
    if value is None:
        return {}
    section = _mapping(path, "http_server_config", value, "must be a mapping")
    _reject_unknown(path, "http_server_config.", section, ("http2", "headers"))
    http2 = section.get("http2")
    if http2 is not None and not isinstance(http2, bool):
        raise error(path, "http_server_config.http2", "must be true or false")
    raw_headers = section.get("headers")
    if raw_headers is None:
        return {}
    headers_section = _mapping(path, "http_server_config.headers", raw_headers, "must be a mapping")
    headers: dict[str, str] = {}
    for name, header_value in headers_section.items():
        key = f"http_server_config.headers.{name}"
        if name not in _HEADERS:
            raise error(path, key, f"cannot be configured: use one of {', '.join(_HEADERS)}")
        header_text = _string(path, key, header_value)
        if header_text is None:
            continue  # "Unset if blank", as in exporter-toolkit
        allowed = _HEADERS[name]
        if allowed and header_text not in allowed:
            raise error(path, key, f"must be one of {', '.join(allowed)}")
        if _CONTROL_CHARACTERS.search(header_text):
            raise error(path, key, "must not contain control characters or line breaks")
        headers[name] = header_text
    return headers
