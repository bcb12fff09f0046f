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
from dataclasses import dataclass, field
from typing import Any, Final

INSTALL_HINT: Final = "pip install 'zego-exporter[webconfig]'"
HASH_HINT: Final = "make one with: htpasswd -nBC 10 \"\" | tr -d ':\\n'"

_TOP_LEVEL_KEYS: Final = (
    "tls_server_config", "http_server_config", "rate_limit", "basic_auth_users",
)
_TLS_KEYS: Final = (
    "cert",
    "cert_file",
    "key",
    "key_file",
    "client_auth_type",
    "client_ca",
    "client_ca_file",
    "client_allowed_sans",
    "min_version",
    "max_version",
    "cipher_suites",
    "prefer_server_cipher_suites",
)
# What Python's ssl module (or http.server) cannot match, refused rather than silently ignored.
# docs/web-config.md lists these in its table of differences; a test holds the two together.
CANNOT_HONOUR: Final = "cannot be honoured by zego-exporter"
_UNSUPPORTED: Final[Mapping[str, str]] = {
    "tls_server_config.curve_preferences": (
        f"{CANNOT_HONOUR}: Python's ssl module cannot set a list of curves; remove it to use "
        "OpenSSL's default curves"
    ),
}

# client_auth_type -> verify_mode. Python cannot accept a certificate without verifying it:
# RequestClientCert does not ask for one (the exporter never reads an unverified certificate,
# so who gets in is the same), and RequireAnyClientCert needs a client CA to verify against
# (stricter than Go; without one it is refused).
_CLIENT_AUTH: Final[Mapping[str, ssl.VerifyMode]] = {
    "NoClientCert": ssl.CERT_NONE,
    "RequestClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAnyClientCert": ssl.CERT_REQUIRED,
    "RequireClientCert": ssl.CERT_REQUIRED,  # exporter-toolkit's old name of RequireAnyClientCert
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
_UNVERIFIED_CLIENT_AUTH: Final = frozenset({"RequireAnyClientCert", "RequireClientCert"})

_TLS_VERSIONS: Final[Mapping[str, ssl.TLSVersion]] = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}

# Go's crypto/tls names (tls.CipherSuites()) -> OpenSSL names, for TLS 1.2 and below, in Go's
# own preference order (cipherSuitesPreferenceOrder): Go ignores the order of cipher_suites and
# picks by this one, so the configured suites are sorted by it and offered in server order.
_CIPHER_SUITES: Final[Mapping[str, str]] = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
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

# Go's time.ParseDuration, which exporter-toolkit's rate_limit.interval goes through. Not the
# CLI's flag durations: Go knows ns/us/µs and no days, and yaml.v2 reads a bare number as ns.
_GO_DURATION: Final = re.compile(r"[-+]?((\d+(\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h))+")
_GO_DURATION_PART: Final = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_GO_UNIT_SECONDS: Final[Mapping[str, float]] = {
    "ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0,
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


@dataclass(frozen=True, kw_only=True)
class TLSServerConfig:
    """`tls_server_config` after validation: absolute paths, Python ssl values.

    The certificate, key and client CA each come from a file or inline; exactly one of the pair
    is set for the certificate and key, at most one for the client CA.
    """

    cert_file: str | None
    cert_pem: str | None = field(repr=False)
    key_file: str | None
    key_pem: str | None = field(repr=False)  # key material: never printed
    client_auth_type: str
    client_ca_file: str | None
    client_ca_pem: str | None = field(repr=False)
    verify_mode: ssl.VerifyMode
    min_version: ssl.TLSVersion
    max_version: ssl.TLSVersion
    openssl_ciphers: tuple[str, ...]
    """OpenSSL names of the configured TLS <= 1.2 suites, in Go's preference order; empty for
    OpenSSL's defaults."""
    client_allowed_sans: tuple[str, ...] | None
    """When set, a request passes only if its client certificate has one of these SANs."""

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(
            file for file in (self.cert_file, self.key_file, self.client_ca_file) if file
        )

    @property
    def trusts_system_cas(self) -> bool:
        """Client certificates are verified against the system's CA store (no client CA set:
        exporter-toolkit does the same)."""
        return self.verify_mode != ssl.CERT_NONE and not (self.client_ca_file or self.client_ca_pem)


@dataclass(frozen=True)
class RateLimit:
    """`rate_limit`: `burst` requests at once, then one per `interval` seconds."""

    interval: float
    burst: int


@dataclass(frozen=True)
class Settings:
    """A valid web config file, before its certificates are loaded."""

    tls: TLSServerConfig | None
    basic_auth_users: Mapping[str, bytes] = field(repr=False)  # hashes: never printed
    """User name -> bcrypt hash."""
    response_headers: Mapping[str, str]
    rate_limit: RateLimit | None
    """None when off (no rate_limit, or an interval of 0, as in exporter-toolkit)."""


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
        response_headers=_http_server_config(path, top.get("http_server_config"), text),
        rate_limit=_rate_limit(path, top.get("rate_limit")),
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
                if not isinstance(key, str | int | float | bool):
                    continue
                if key in seen:
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
    except ValueError:
        # PyYAML reads `2001-13-01` as a date and `!!int many` as a number, then cannot build
        # them. Its message may quote the value (a hash, a password pasted by mistake): not
        # repeated here.
        raise error(path, "", "invalid YAML: a value cannot be read as the type YAML gives "
                              "it (an impossible date, or a !!tag on the wrong text): quote "
                              "it") from None
    except RecursionError:
        raise error(path, "", "invalid YAML: nested too deeply") from None


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

    def file_or_inline(file_key: str, inline_key: str) -> tuple[str | None, str | None]:
        file, inline = setting(file_key), setting(inline_key)
        if file is not None and inline is not None:
            raise error(path, f"tls_server_config.{inline_key}",
                        f"set {inline_key} (inline PEM) or {file_key}, not both")
        return file, inline

    cert_file, cert_pem = file_or_inline("cert_file", "cert")
    key_file, key_pem = file_or_inline("key_file", "key")
    for file, inline, name in ((cert_file, cert_pem, "cert"), (key_file, key_pem, "key")):
        if file is None and inline is None:
            raise error(
                path,
                f"tls_server_config.{name}_file",
                "required: set cert_file (or cert) and key_file (or key), or remove "
                "tls_server_config for plain HTTP",
            )

    client_auth_type = setting("client_auth_type") or "NoClientCert"
    if client_auth_type not in _CLIENT_AUTH:
        raise error(
            path,
            "tls_server_config.client_auth_type",
            f"unknown value {client_auth_type!r}: use one of {', '.join(_CLIENT_AUTH)}",
        )
    verify_mode = _CLIENT_AUTH[client_auth_type]
    client_ca_file, client_ca_pem = file_or_inline("client_ca_file", "client_ca")
    has_client_ca = client_ca_file is not None or client_ca_pem is not None
    if client_auth_type in _UNVERIFIED_CLIENT_AUTH and not has_client_ca:
        raise error(
            path,
            "tls_server_config.client_auth_type",
            f"{client_auth_type} without a client CA {CANNOT_HONOUR}: Python's ssl module "
            "cannot accept a client certificate without verifying it; set client_ca_file to the "
            "CA that signs client certificates, or use RequireAndVerifyClientCert",
        )
    if has_client_ca and client_auth_type == "NoClientCert":
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

    def absolute(file: str | None) -> str | None:
        return os.path.join(config_dir, file) if file else None

    return TLSServerConfig(
        cert_file=absolute(cert_file),
        cert_pem=cert_pem,
        key_file=absolute(key_file),
        key_pem=key_pem,
        client_auth_type=client_auth_type,
        client_ca_file=absolute(client_ca_file),
        client_ca_pem=client_ca_pem,
        verify_mode=verify_mode,
        min_version=min_version,
        max_version=max_version,
        openssl_ciphers=_cipher_suites(path, section.get("cipher_suites")),
        client_allowed_sans=_client_allowed_sans(
            path, section.get("client_allowed_sans"), client_auth_type, verify_mode
        ),
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
    chosen: set[str] = set()
    for suite in value:
        if isinstance(suite, str) and suite in _TLS13_SUITES:
            continue
        if not isinstance(suite, str) or suite not in _CIPHER_SUITES:
            raise error(
                path,
                key,
                f"unknown cipher suite {suite!r}: use Go's names, e.g. "
                "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            )
        chosen.add(suite)
    return tuple(openssl for go, openssl in _CIPHER_SUITES.items() if go in chosen)


def _client_allowed_sans(
    path: str, value: object, client_auth_type: str, verify_mode: ssl.VerifyMode
) -> tuple[str, ...] | None:
    key = "tls_server_config.client_allowed_sans"
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(san, str) and san for san in value):
        raise error(path, key, "must be a list of SANs (DNS names, IP addresses, e-mail "
                               "addresses or URIs) as strings")
    if not value:
        raise error(path, key, "is empty, which would refuse every client: list the SANs "
                               "to allow, or remove the key")
    if verify_mode == ssl.CERT_NONE:
        raise error(
            path,
            key,
            f"needs a verified client certificate, which client_auth_type {client_auth_type} "
            "does not ask for: use RequireAndVerifyClientCert",
        )
    return tuple(value)


def _rate_limit(path: str, value: object) -> RateLimit | None:
    if value is None:
        return None
    section = _mapping(path, "rate_limit", value, "must be a mapping")
    _reject_unknown(path, "rate_limit.", section, ("interval", "burst"))
    interval = _go_duration(path, "rate_limit.interval", section.get("interval", 0))
    burst = section.get("burst", 0)
    if isinstance(burst, bool) or not isinstance(burst, int) or burst < 0:
        raise error(path, "rate_limit.burst", "must be a whole number of requests, 0 or more")
    if interval == 0:
        return None  # exporter-toolkit's way of turning it off
    return RateLimit(interval=interval, burst=burst)


def _go_duration(path: str, key: str, value: object) -> float:
    """Seconds, from a Go duration string ("1s", "1m30s", "250ms") or the number 0."""
    if value is None or (value == 0 and not isinstance(value, bool)):
        return 0.0
    if not isinstance(value, str):
        raise error(path, key, "must be a duration with a unit, e.g. 1s or 500ms (a bare "
                               "number means nanoseconds in exporter-toolkit)")
    text = value.strip()
    if text in ("0", "+0", "-0"):
        return 0.0
    if not _GO_DURATION.fullmatch(text):
        raise error(path, key, f"{text!r} is not a duration: write e.g. 1s, 500ms or 1m30s")
    if text.startswith("-"):
        raise error(path, key, "must not be negative: 0 turns rate limiting off")
    return sum(float(number) * _GO_UNIT_SECONDS[unit]
               for number, unit in _GO_DURATION_PART.findall(text))


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


def _http_server_config(path: str, value: object, text: str) -> dict[str, str]:
    if value is None:
        return {}
    section = _mapping(path, "http_server_config", value, "must be a mapping")
    _reject_unknown(path, "http_server_config.", section, ("http2", "headers"))
    http2 = section.get("http2")
    if http2 is not None and not isinstance(http2, bool):
        raise error(path, "http_server_config.http2", "must be true or false")
    if http2:
        raise error(
            path,
            "http_server_config.http2",
            f"true {CANNOT_HONOUR}: it serves HTTP/1.1 only (Python's http.server); set it to "
            "false or remove it",
        )
    raw_headers = section.get("headers")
    if raw_headers is None:
        return {}
    headers_section = _mapping(path, "http_server_config.headers", raw_headers, "must be a mapping")
    headers: dict[str, str] = {}
    for name, typed_value in headers_section.items():
        key = f"http_server_config.headers.{name}"
        if name not in _HEADERS:
            raise error(path, key, f"cannot be configured: use one of {', '.join(_HEADERS)}")
        header_value = typed_value
        if isinstance(typed_value, bool | int | float):
            # Go's yaml reads `X-XSS-Protection: 1` into a string as it is written: "1".
            header_value = _scalar_as_written(text, typed_value, "http_server_config", "headers",
                                              name)
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


def _scalar_as_written(text: str, typed: bool | float, *keys: str) -> str:
    """The text of a scalar in the YAML document, untyped (`1.0` stays "1.0", `yes` "yes")."""
    import yaml  # noqa: PLC0415  (optional extra, checked by _require_extras)

    value: object = yaml.load(text, Loader=yaml.BaseLoader)  # noqa: S506  (no objects built)
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    if isinstance(value, str):
        return value
    # Not found untyped (a YAML merge key on the way): write the value as Go would.
    return str(typed).lower() if isinstance(typed, bool) else str(typed)
