"""Typed, validated settings read from environment variables.

Services read their environment once, at start, through these helpers, so a bad value fails
the process immediately with a message naming the variable (never a stack trace, never the
value of anything that could be a secret).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


class SettingsError(ValueError):
    """A configuration value is missing or malformed; the message names the variable."""


def env_str(env: Mapping[str, str], name: str, default: str | None = None) -> str:
    value = env.get(name, default)
    if value is None or value.strip() == "":
        raise SettingsError(f"{name} is required")
    return value.strip()


def env_int(env: Mapping[str, str], name: str, default: int, *, low: int, high: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise SettingsError(f"{name} must be an integer from {low} to {high}") from None
    if not low <= value <= high:
        raise SettingsError(f"{name} must be an integer from {low} to {high}")
    return value


def env_flag(env: Mapping[str, str], name: str) -> bool:
    value = env.get(name, "").strip().lower()
    if value not in ("", "0", "1", "true", "false", "yes", "no"):
        raise SettingsError(f"{name} must be true or false")
    return value in ("1", "true", "yes")


def check_url(value: str, name: str, *, allow_http: bool, any_host: bool = False) -> str:
    """`value` if it is https, or http where allowed: on loopback only (the local stack)
    unless `any_host` (Service Connect names inside the VPC)."""
    parts = urlsplit(value)
    http_ok = allow_http and (any_host or parts.hostname in LOOPBACK_HOSTS)
    if not parts.hostname or not (parts.scheme == "https" or (parts.scheme == "http" and http_ok)):
        raise SettingsError(f"{name} must be an https URL (http only on loopback for local runs)")
    if parts.username or parts.fragment:
        raise SettingsError(f"{name} must not carry credentials or a fragment")
    return value


def env_port(env: Mapping[str, str], name: str, default: int) -> int:
    return env_int(env, name, default, low=1, high=65535)


@dataclass(frozen=True, kw_only=True)
class ServerSettings:
    """Where a service listens. Local runs bind loopback; the image sets BIND_HOST=0.0.0.0."""

    bind_host: str = "127.0.0.1"
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ServerSettings:
        host = env_str(env, "BIND_HOST", "127.0.0.1")
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise SettingsError("BIND_HOST must be an IP address, e.g. 127.0.0.1") from None
        level = env_str(env, "LOG_LEVEL", "INFO").upper()
        if level not in LOG_LEVELS:
            raise SettingsError(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}")
        return cls(bind_host=host, log_level=level)
