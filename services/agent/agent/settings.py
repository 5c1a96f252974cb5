"""Agent settings, read once from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from svc_common.settings import ServerSettings, env_port


@dataclass(frozen=True, kw_only=True)
class Settings:
    server: ServerSettings
    port: int = 8080

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(server=ServerSettings.from_env(env), port=env_port(env, "PORT", 8080))
