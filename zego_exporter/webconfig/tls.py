"""The server-side TLS context of a validated `tls_server_config`, and its client SAN check.

It reads the certificate, key and client CA (from files or inline PEM), checks they hold what
they should, and builds one `ssl.SSLContext`; it also says whether a verified client certificate
carries one of `client_allowed_sans`. A key with a passphrase is refused rather than prompted for
(a prompt would hang a service). It must never put key material into a message or onto disk, and
it knows nothing of HTTP.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import ssl
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

from zego_exporter.webconfig.schema import (
    MAX_FILE_BYTES,
    TLSServerConfig,
    error,
    os_reason,
)

log = logging.getLogger(__name__)

_CERT = "tls_server_config.cert"
_KEY = "tls_server_config.key"
_CLIENT_CA = "tls_server_config.client_ca"


def server_context(path: str, tls: TLSServerConfig) -> ssl.SSLContext:
    """The context for `tls` (from the web config file at `path`). Raises WebConfigError."""
    cert_pem, cert_key, cert_where = _material(path, _CERT, tls.cert_file, tls.cert_pem)
    key_pem, key_key, key_where = _material(path, _KEY, tls.key_file, tls.key_pem)
    if b"-----BEGIN CERTIFICATE-----" not in cert_pem:
        raise error(path, cert_key, f"no PEM certificate in {cert_where}")
    if b"PRIVATE KEY-----" not in key_pem:
        raise error(path, key_key, f"no PEM private key in {key_where}")

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
            raise error(
                path,
                "tls_server_config.cipher_suites",
                "the system OpenSSL supports none of these suites: add more, or remove the key",
            ) from None
    try:
        with _as_file(tls.cert_file, cert_pem) as cert_file, _as_file(tls.key_file, key_pem) as (
            key_file
        ):
            context.load_cert_chain(cert_file, key_file, password=_refuse_password)
    except _EncryptedKey:
        raise error(
            path,
            key_key,
            f"{key_where} is encrypted: store it unencrypted (openssl pkey -in KEY -out NEW) "
            "and protect it with file permissions",
        ) from None
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise error(
                path, key_key, f"{key_where} is not the key of the certificate in {cert_where}"
            ) from None
        raise error(
            path,
            cert_key,
            f"cannot load {cert_where} with {key_where} ({exc.reason or exc}): "
            "check both are PEM, certificate first",
        ) from None
    except OSError as exc:
        raise error(path, cert_key, f"cannot load: {os_reason(exc)}") from None

    if tls.client_ca_file or tls.client_ca_pem:
        ca_pem, ca_key, ca_where = _material(
            path, _CLIENT_CA, tls.client_ca_file, tls.client_ca_pem
        )
        try:
            context.load_verify_locations(cadata=ca_pem.decode("ascii", "replace"))
        except (ssl.SSLError, ValueError):
            raise error(path, ca_key, f"no PEM certificate in {ca_where}") from None
    elif tls.trusts_system_cas:
        context.load_default_certs(ssl.Purpose.CLIENT_AUTH)
        log.warning(
            "client certificates are verified against the system's CA store, as exporter-toolkit "
            "does without client_ca_file: a certificate from any public CA is accepted; set "
            "client_ca_file to trust only your own CA",
            extra={"web_config_file": path, "client_auth_type": tls.client_auth_type},
        )
    context.verify_mode = tls.verify_mode
    return context


def client_certificate_allowed(
    certificate: Mapping[str, Any] | None, allowed_sans: tuple[str, ...]
) -> bool:
    """True when the verified client certificate (as `SSLSocket.getpeercert()` gives it) has a
    DNS name, e-mail address, IP address or URI among `allowed_sans`, compared as exporter-toolkit
    does: as strings, IP addresses in Go's notation."""
    if not certificate:
        return False  # none sent, or not verified (getpeercert() is then empty)
    for kind, value in certificate.get("subjectAltName", ()):
        if kind == "IP Address":
            as_go_writes_it = _go_ip_text(value)
        elif kind in ("DNS", "email", "URI"):
            as_go_writes_it = value
        else:
            continue  # DirName, othername, ...: Go's VerifyPeerCertificate ignores them too
        if as_go_writes_it in allowed_sans:
            return True
    return False


def _go_ip_text(text: str) -> str:
    """Python prints an IPv6 SAN in full upper case ("2001:DB8:0:0:0:0:0:1"); Go's net.IP
    compresses it ("2001:db8::1") and prints an IPv4-mapped address as IPv4."""
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return text
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def _material(path: str, key: str, file: str | None, inline: str | None) -> tuple[bytes, str, str]:
    """(PEM bytes, the key to name in a message, how to name the source in a message)."""
    if file is None:
        assert inline is not None  # schema.py requires one of them
        return inline.encode("utf-8"), key, "the inline PEM"
    file_key = f"{key}_file"
    try:
        with open(file, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise error(path, file_key, f'no such file "{file}"') from None
    except OSError as exc:
        raise error(path, file_key, f'cannot read "{file}": {os_reason(exc)}') from None
    if len(data) > MAX_FILE_BYTES:
        raise error(path, file_key, f'"{file}" is larger than {MAX_FILE_BYTES // 2**20} MiB')
    return data, file_key, f'"{file}"'


@contextlib.contextmanager
def _as_file(file: str | None, pem: bytes) -> Iterator[str]:
    """A path OpenSSL can load `pem` from: the file itself, or for inline PEM an anonymous
    in-memory file (a private temporary file where there is none), gone afterwards."""
    if file is not None:
        yield file
        return
    memfd_create = getattr(os, "memfd_create", None)
    if memfd_create is not None and os.path.isdir("/proc/self/fd"):
        fd = memfd_create("zego-exporter-tls", os.MFD_CLOEXEC)
        try:
            os.write(fd, pem)
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    with tempfile.TemporaryDirectory(prefix="zego-exporter-tls-") as directory:  # mode 0700
        temporary = os.path.join(directory, "pem")
        with open(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out:
            out.write(pem)
        yield temporary


class _EncryptedKey(Exception):
    pass


def _refuse_password() -> str:
    # Without a callback OpenSSL would prompt on the terminal and hang a service.
    raise _EncryptedKey
