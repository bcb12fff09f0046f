"""The credentials the tests use: the AppId and server secret the simulated APIs accept (never
real credentials), and Basic auth headers for web config users."""

from __future__ import annotations

import base64

from zego_exporter.signing import Secret

APP_ID = 1234567890
SECRET_TEXT = "0123456789abcdef0123456789abcdef"
SECRET = Secret(SECRET_TEXT)


def basic_auth(user: str, password: str) -> str:
    """The Authorization header value of a Basic auth login."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
