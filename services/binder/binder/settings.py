"""Binder settings, read once from the environment (documented in services/binder/README.md)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from svc_common.settings import ServerSettings, SettingsError, env_port


@dataclass(frozen=True, kw_only=True)
class Settings:
    server: ServerSettings
    # Browser routes (/oauth2/*), reached through the ALB.
    public_port: int = 8080
    # Agent-to-binder API (/internal/*), reached only through Service Connect.
    internal_port: int = 8081

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        public = env_port(env, "PUBLIC_PORT", 8080)
        internal = env_port(env, "INTERNAL_PORT", 8081)
        if public == internal:
            raise SettingsError("PUBLIC_PORT and INTERNAL_PORT must differ")
        return cls(server=ServerSettings.from_env(env), public_port=public, internal_port=internal)
