"""The HTTP layer: landing page, telemetry, health, readiness and the callback endpoint.

It speaks HTTP (keep-alive, gzip, TLS; metrics sent chunked while they are rendered) and
delegates everything else to the callables in `Endpoints`; it never touches the tracker or the
API directly. Who may connect and which request may pass (TLS, client certificates, rate limit,
basic auth) is the exporter-toolkit web configuration's say (`webconfig/`), looked up per
connection and per request so that a changed configuration applies without a restart.
`/-/healthy` answers whatever it says, so that a process that only needs its web config file
fixed is not restarted by a liveness probe.
"""

from __future__ import annotations

import html
import ipaddress
import logging
import socket
import ssl
import sys
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import chain
from typing import Any, Protocol
from urllib.parse import urlsplit

from zego_exporter import __version__

log = logging.getLogger(__name__)

SCRAPE_TIMEOUT_HEADER = "X-Prometheus-Scrape-Timeout-Seconds"
_GZIP_LEVEL = 1  # metrics text compresses ~10x even at level 1, at a fraction of the CPU
_MAX_SKIPPED_BODY = 1024 * 1024  # an unused request body read to keep the connection; beyond: close


class Security(Protocol):
    """What the web layer needs of the web configuration in force (see webconfig.WebConfig)."""

    @property
    def response_headers(self) -> Mapping[str, str]: ...

    def ssl_context(self) -> ssl.SSLContext | None: ...

    def admit(
        self,
        authorization_header: str | None,
        client_certificate: Mapping[str, Any] | None,
        *,
        login: bool = True,
    ) -> int | None:
        """None to let the request pass, else the HTTP status to refuse it with."""
        ...


# The answers to refused requests, by the status Security.admit gave.
_REFUSALS: Mapping[int, bytes] = {
    401: b"Unauthorized\n",
    403: b"Forbidden: the client certificate has none of the allowed SANs\n",
    429: b"Too Many Requests\n",
    500: b"Internal Server Error: the web configuration cannot be used; see the exporter's log\n",
}


@dataclass
class Endpoints:
    """What each URL does; the web layer only adds HTTP around these."""

    telemetry_path: str
    render_metrics: Callable[[str, float | None], tuple[Iterable[bytes], str]]
    """(Accept header, scrape timeout in s or None) -> (body pieces, content type). The pieces
    are rendered as they are taken (a HEAD request takes none); the web layer closes the body
    when it stops taking them, whether it sent all of them or not."""
    is_ready: Callable[[], bool]
    landing_html: Callable[[], str]
    callback_path: str | None = None
    handle_callback: Callable[[bytes | None], tuple[int, bytes]] | None = None
    """(request body, or None when it was over max_callback_bytes and not read) ->
    (HTTP status, response body). None when callbacks are off."""
    max_callback_bytes: int = 64 * 1024


class ListenAddressError(ValueError):
    pass


def parse_listen_address(text: str) -> tuple[str, int]:
    """`host:port`, `:port` (every interface) or `[v6-address]:port` -> (host, port)."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isascii() or not port_text.isdigit():
        raise ListenAddressError(
            f"listen address {text!r} needs a port: use host:port, :port or [::]:port"
        )
    if int(port_text) > 65535:
        raise ListenAddressError(
            f"listen address {text!r}: port {port_text} is out of range: use 0 to 65535"
        )
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ListenAddressError(
                f"listen address {text!r}: {host!r} is no IPv6 address"
            ) from None
    elif ":" in host:
        raise ListenAddressError(
            f"listen address {text!r}: put an IPv6 address in brackets, e.g. [::1]:9877"
        )
    return host, int(port_text)


def accepts_gzip(accept_encoding: str) -> bool:
    """True when the Accept-Encoding header allows gzip (`gzip;q=0` refuses it)."""
    for item in accept_encoding.split(","):
        coding, _, params = item.strip().partition(";")
        if coding.strip().lower() in ("gzip", "x-gzip"):
            quality = params.strip().lower().removeprefix("q=").strip()
            try:
                return float(quality) > 0 if quality else True
            except ValueError:
                return True
    return False


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    allow_reuse_address = True

    def __init__(
        self,
        host: str,
        port: int,
        endpoints: Endpoints,
        security: Callable[[], Security | None],
    ) -> None:
        self.endpoints = endpoints
        self.security = security
        self._dual_stack = host in ("", "::")
        self.address_family = socket.AF_INET6 if ":" in host or (
            host == "" and socket.has_ipv6) else socket.AF_INET
        bind_host = "::" if host == "" and self.address_family == socket.AF_INET6 else host
        super().__init__((bind_host, port), _Handler)

    def server_bind(self) -> None:
        if self.address_family == socket.AF_INET6 and self._dual_stack:
            # ":port" means every interface, IPv4 included, as it does for Go exporters.
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()

    def get_request(self) -> tuple[Any, Any]:
        conn, addr = self.socket.accept()
        current = self.security()
        context = current.ssl_context() if current is not None else None
        if context is not None:
            # The handshake happens in the handler thread, so a slow client cannot stall accept.
            conn = context.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
        return conn, addr

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            # TLS handshake failures and clients hanging up are normal on a public port.
            log.debug("connection error", extra={"client": str(client_address)}, exc_info=True)
        else:  # a bug behind an endpoint: the connection was closed without an answer
            log.error("request failed", extra={"client": str(client_address)}, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = f"zego-exporter/{__version__}"
    timeout = 60.0  # idle keep-alive connections give their thread back
    # Headers and body go out in two writes; with Nagle on, a keep-alive client's delayed ACK
    # holds the second one ~40 ms.
    disable_nagle_algorithm = True
    server: _Server

    def version_string(self) -> str:
        """The Server header: this program and version only (not Python's, which the base
        class appends after a space)."""
        return self.server_version

    def do_GET(self) -> None:
        self._route(head=False)

    def do_HEAD(self) -> None:
        self._route(head=True)

    def do_POST(self) -> None:
        endpoints = self.server.endpoints
        path = urlsplit(self.path).path
        if endpoints.handle_callback is not None and path == endpoints.callback_path:
            self._callback(endpoints)
            return
        self._skip_body()
        if not self._authorized():  # like GET: only /-/healthy and the callback are open to all
            return
        if path in (endpoints.telemetry_path, "/", "/-/healthy", "/-/ready"):
            self._send(405, b"Method Not Allowed\n", allow="GET, HEAD")
        else:  # the callback path too when callbacks are off: the endpoint is not there
            self._send(404, b"Not Found\n")

    def _route(self, head: bool) -> None:
        self._skip_body()
        endpoints = self.server.endpoints
        path = urlsplit(self.path).path
        if path == "/-/healthy":
            self._send(200, b"Healthy\n", head=head)
            return
        if endpoints.callback_path is not None and path == endpoints.callback_path:
            self._send(405, b"Method Not Allowed\n", allow="POST", head=head)
            return
        if not self._authorized():
            return
        if path == endpoints.telemetry_path:
            self._metrics(endpoints, head)
        elif path == "/-/ready":
            if endpoints.is_ready():
                self._send(200, b"Ready\n", head=head)
            else:
                self._send(503, b"Not ready: the first round of API calls is not done yet\n",
                           head=head)
        elif path == "/":
            self._send(200, endpoints.landing_html().encode(), "text/html; charset=utf-8",
                       head=head)
        else:
            self._send(404, b"Not Found\n", head=head)

    def _authorized(self, *, login: bool = True, body_unread: bool = False) -> bool:
        security = self.server.security()
        if security is None:
            return True
        certificate = (self.connection.getpeercert()
                       if isinstance(self.connection, ssl.SSLSocket) else None)
        status = security.admit(self.headers.get("Authorization"), certificate, login=login)
        if status is None:
            return True
        if body_unread:
            self.close_connection = True  # the body must not be parsed as the next request
        self._send(status, _REFUSALS.get(status, b"Refused\n"), www_authenticate=(
            'Basic realm="zego-exporter", charset="UTF-8"' if status == 401 else None))
        return False

    def _metrics(self, endpoints: Endpoints, head: bool) -> None:
        timeout: float | None
        try:
            timeout = float(self.headers.get(SCRAPE_TIMEOUT_HEADER, ""))
        except ValueError:
            timeout = None
        body: Iterator[bytes] = iter(())
        try:
            pieces, content_type = endpoints.render_metrics(self.headers.get("Accept", ""), timeout)
            body = iter(pieces)
            # The first piece is made before any header goes out, so that a scrape that fails to
            # start (no snapshot, a broken collector) still gets an honest 500.
            first = b"" if head else next(body, b"")
        except Exception:
            _close(body)
            log.exception("rendering metrics failed")
            self._send(500, b"Internal error while rendering metrics; see the exporter's log\n")
            return
        try:
            self._stream(first, body, content_type, head=head,
                         gzip=accepts_gzip(self.headers.get("Accept-Encoding", "")))
        except _ClientGone as gone:
            self.close_connection = True
            log.debug("scrape abandoned by the client", extra={
                "client": self.address_string(), "reason": str(gone.__cause__)})
        except Exception:
            # Too late for a 500: the connection is closed without the body's end, so the
            # client sees the body is incomplete rather than taking part of it for all.
            self.close_connection = True
            log.exception("rendering metrics failed while sending them")
        finally:
            _close(body)  # ends the scrape, and releases its snapshot, however the sending went

    def _stream(
        self, first: bytes, rest: Iterator[bytes], content_type: str, *, head: bool, gzip: bool,
    ) -> None:
        """Sends the body while it is rendered: chunked over HTTP/1.1 (the length is not known
        up front), until the connection closes before it. With gzip, each piece is compressed
        and flushed as it comes, so nothing waits in the compressor for the next."""
        version = _version(self.request_version)
        chunked = version >= (1, 1)
        gzip = gzip and version >= (1, 0)  # an HTTP/0.9 answer has no headers to say so
        if not chunked:
            self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        # The format follows Accept (OpenMetrics or text) and the encoding Accept-Encoding,
        # so every answer says so, not only a gzipped one: a cache must not mix them up.
        self.send_header("Vary", "Accept, Accept-Encoding")
        if gzip:
            self.send_header("Content-Encoding", "gzip")
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        try:
            self._end_headers()
        except OSError as error:
            raise _ClientGone from error
        if head:
            return
        write = self._write_chunk if chunked else self._write
        # zlib's own gzip framing (wbits 31) checksums while it compresses, piece by piece.
        compressor = zlib.compressobj(_GZIP_LEVEL, zlib.DEFLATED, 31) if gzip else None
        for text in chain((first,), rest):
            write(text if compressor is None
                  else compressor.compress(text) + compressor.flush(zlib.Z_SYNC_FLUSH))
        if compressor is not None:
            write(compressor.flush())
        if chunked:
            self._write(b"0\r\n\r\n")

    def _write(self, data: bytes) -> None:
        try:
            self.wfile.write(data)
        except OSError as error:  # reset, broken pipe, TLS closed, or a reader that stalled
            raise _ClientGone from error

    def _write_chunk(self, data: bytes) -> None:
        if data:  # an empty chunk would end the body
            self._write(b"%X\r\n%b\r\n" % (len(data), data))

    def _end_headers(self) -> None:
        """The headers every answer ends with, then the blank line."""
        if self.close_connection:
            self.send_header("Connection", "close")
        security = self.server.security()
        if security is not None:
            for name, value in security.response_headers.items():
                self.send_header(name, value)
        self.end_headers()

    def _callback(self, endpoints: Endpoints) -> None:
        assert endpoints.handle_callback is not None
        if not self._authorized(login=False, body_unread=True):  # signed by ZEGO, no login
            return
        length = self._content_length()
        if length is None or "Transfer-Encoding" in self.headers:
            self.close_connection = True
            self._send(411, b"Content-Length required\n")
            return
        if length > endpoints.max_callback_bytes:
            self.close_connection = True  # the unread body must not be parsed as a request
            status, body = endpoints.handle_callback(None)
        else:
            status, body = endpoints.handle_callback(self.rfile.read(length))
        self._send(status, body, "application/json")

    def _skip_body(self) -> None:
        """Drops a body this request does not use, whatever its method, so that it is never
        parsed as the next request on the connection (a proxy in front would get answers out of
        step). A body that is chunked, of an unreadable length or big is not read: the
        connection closes after the answer instead."""
        length = self._content_length()
        unreadable = length is None and "Content-Length" in self.headers
        if "Transfer-Encoding" in self.headers or unreadable or (length or 0) > _MAX_SKIPPED_BODY:
            self.close_connection = True
        elif length:
            self.rfile.read(length)

    def _content_length(self) -> int | None:
        """The Content-Length, or None when there is none or it is not a number ("²" passes
        str.isdigit but not int)."""
        text = self.headers.get("Content-Length", "")
        return int(text) if text.isascii() and text.isdigit() else None

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str = "text/plain; charset=utf-8",
        *,
        head: bool = False,
        allow: str | None = None,
        www_authenticate: str | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if allow:
            self.send_header("Allow", allow)
        if www_authenticate:
            self.send_header("WWW-Authenticate", www_authenticate)
        self._end_headers()
        if not head:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http request", extra={"client": self.address_string(),
                                         "request": format % args})


def _version(text: str) -> tuple[int, int]:
    """(1, 1) for "HTTP/1.1". http.server checked the form (or took HTTP/0.9 for a request line
    without one); compared as text, "HTTP/1.00" would pass for 1.1."""
    major, _, minor = text.removeprefix("HTTP/").partition(".")
    return int(major), int(minor)


class _ClientGone(Exception):
    """The client closed the connection or stopped reading while a body was being sent."""


def _close(body: Iterator[bytes]) -> None:
    close = getattr(body, "close", None)
    if close is not None:
        close()


class WebServer:
    """The exporter's HTTP(S) server on its own thread."""

    def __init__(
        self,
        listen_address: str,
        endpoints: Endpoints,
        security: Callable[[], Security | None] = lambda: None,
    ) -> None:
        host, port = parse_listen_address(listen_address)
        self._server = _Server(host, port, endpoints, security)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """A URL for this server (loopback when it listens on every interface)."""
        host = str(self._server.server_address[0])
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1" if host == "0.0.0.0" else "[::1]"
        elif ":" in host:
            host = f"[{host}]"
        current = self._server.security()
        scheme = "https" if current is not None and current.ssl_context() is not None else "http"
        return f"{scheme}://{host}:{self.port}"

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
            name="zego-web", daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(5.0)


def landing_page(telemetry_path: str, details: list[tuple[str, str]]) -> str:
    """The HTML of `/`: links to the endpoints and a few facts about this exporter."""
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in details
    )
    path = html.escape(telemetry_path, quote=True)
    return (
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>ZEGO Digital Human "
        "exporter</title><style>body{font-family:sans-serif;margin:2em}th{text-align:left;"
        "padding-right:1em}</style></head><body><h1>ZEGO Digital Human exporter</h1>"
        f"<p>Version {html.escape(__version__)}</p><ul>"
        f"<li><a href=\"{path}\">Metrics</a></li>"
        "<li><a href=\"/-/healthy\">Health</a></li>"
        "<li><a href=\"/-/ready\">Readiness</a></li></ul>"
        f"<table>{rows}</table></body></html>\n"
    )
