"""The AppId and server secret the tests' simulated APIs accept (never real credentials)."""

from __future__ import annotations

from zego_exporter.signing import Secret

APP_ID = 1234567890
SECRET_TEXT = "0123456789abcdef0123456789abcdef"
SECRET = Secret(SECRET_TEXT)
