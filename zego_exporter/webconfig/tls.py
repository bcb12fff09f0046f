"""The server-side TLS context of a validated `tls_server_config`.

It reads the certificate, key and client CA files, checks they hold what they should, and builds
one `ssl.SSLContext`. A key with a passphrase is refused rather than prompted for (a prompt would
hang a service). It must never put key material into a message, and it knows nothing of HTTP.
"""

from __future__ import annotations

import ssl
import warnings

from zego_exporter.webconfig.schema import (
    MAX_FILE_BYTES,
    TLSServerConfig,
    error,
    os_reason,
)


def server_context(path: str, tls: TLSServerConfig) -> ssl.SSLContext:
    """The context for `tls` (from the web config file at `path`). Raises WebConfigError."""
    cert_pem = _read_file(path, "tls_server_config.cert_file", tls.cert_file)
    key_pem = _read_file(path, "tls_server_config.key_file", tls.key_file)
    if b"-----BEGIN CERTIFICATE-----" not in cert_pem:
        raise error(
            path, "tls_server_config.cert_file", f'no PEM certificate in "{tls.cert_file}"'
        )
    if b"PRIVATE KEY-----" not in key_pem:
        raise error(path, "tls_server_config.key_file", f'no PEM private key in "{tls.key_file}"')

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
        context.load_cert_chain(tls.cert_file, tls.key_file, password=_refuse_password)
    except _EncryptedKey:
        raise error(
            path,
            "tls_server_config.key_file",
            f'"{tls.key_file}" is encrypted: store it unencrypted (openssl pkey -in KEY -out NEW) '
            "and protect it with file permissions",
        ) from None
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise error(
                path,
                "tls_server_config.key_file",
                f'"{tls.key_file}" is not the key of the certificate in "{tls.cert_file}"',
            ) from None
        raise error(
            path,
            "tls_server_config.cert_file",
            f'cannot load "{tls.cert_file}" with "{tls.key_file}" ({exc.reason or exc}): '
            "check both are PEM, certificate first in cert_file",
        ) from None
    except OSError as exc:
        raise error(path, "tls_server_config.cert_file", f"cannot load: {os_reason(exc)}") from None

    if tls.client_ca_file:
        ca_key = "tls_server_config.client_ca_file"
        _read_file(path, ca_key, tls.client_ca_file)
        try:
            context.load_verify_locations(cafile=tls.client_ca_file)
        except ssl.SSLError:
            raise error(path, ca_key, f'no PEM certificate in "{tls.client_ca_file}"') from None
        except OSError as exc:
            raise error(path, ca_key, f"cannot load: {os_reason(exc)}") from None
    context.verify_mode = tls.verify_mode
    return context


def _read_file(path: str, key: str, file: str) -> bytes:
    try:
        with open(file, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise error(path, key, f'no such file "{file}"') from None
    except OSError as exc:
        raise error(path, key, f'cannot read "{file}": {os_reason(exc)}') from None
    if len(data) > MAX_FILE_BYTES:
        raise error(path, key, f'"{file}" is larger than {MAX_FILE_BYTES // 2**20} MiB')
    return data


class _EncryptedKey(Exception):
    pass


def _refuse_password() -> str:
    # Without a callback OpenSSL would prompt on the terminal and hang a service.
    raise _EncryptedKey
