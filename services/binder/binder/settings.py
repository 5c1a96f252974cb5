"""Binder settings, read once from the environment (documented in services/binder/README.md)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from svc_common.settings import (
    ServerSettings,
    SettingsError,
    check_url,
    env_flag,
    env_int,
    env_port,
    env_str,
)


def _origin(url: str, name: str, *, allow_loopback_http: bool) -> str:
    check_url(url, name, allow_http=allow_loopback_http)
    parts = urlsplit(url)
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise SettingsError(f"{name} must be an origin: scheme, host and port only")
    return f"{parts.scheme}://{parts.netloc}"


@dataclass(frozen=True, kw_only=True)
class Settings:
    server: ServerSettings
    aws_region: str
    # Browser routes (/oauth2/*), reached through the ALB.
    public_port: int
    # Agent-to-binder API (/internal/*), reached only through Service Connect.
    internal_port: int
    # Where browsers reach the binder's /oauth2/* routes (the ALB's https://{domain}).
    public_base_url: str
    cognito_issuer: str
    cognito_client_ids: tuple[str, ...]
    cognito_jwks_url: str | None
    allowed_return_origins: tuple[str, ...]
    vault_prefix: str
    vault_kms_key_id: str
    session_table: str
    providers_json: str
    # Local stack only: http:// provider endpoints and base URL on loopback addresses.
    allow_insecure_loopback: bool
    session_ttl_seconds: int
    # Authorization sessions one user may open per session-TTL window.
    max_sessions_per_user: int
    # How long a proposed action may wait for approval and execution.
    action_ttl_seconds: int
    # Actions one user (or the agent acting for one) may propose per action-TTL window.
    max_actions_per_user: int
    refresh_skew_seconds: int
    lease_seconds: int
    cache_ttl_seconds: int
    http_timeout_seconds: int
    max_body_bytes: int

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        public = env_port(env, "PUBLIC_PORT", 8080)
        internal = env_port(env, "INTERNAL_PORT", 8081)
        if public == internal:
            raise SettingsError("PUBLIC_PORT and INTERNAL_PORT must differ")
        insecure = env_flag(env, "ALLOW_INSECURE_LOOPBACK")
        issuer = env_str(env, "COGNITO_ISSUER").rstrip("/")
        check_url(issuer, "COGNITO_ISSUER", allow_http=insecure)
        client_ids = tuple(c.strip() for c in env_str(env, "COGNITO_CLIENT_IDS").split(",") if c)
        jwks_url = env.get("COGNITO_JWKS_URL", "").strip() or None
        if jwks_url:
            check_url(jwks_url, "COGNITO_JWKS_URL", allow_http=insecure)
        origins = tuple(
            _origin(o.strip(), "ALLOWED_RETURN_ORIGINS", allow_loopback_http=insecure)
            for o in env.get("ALLOWED_RETURN_ORIGINS", "").split(",")
            if o.strip()
        )
        prefix = env_str(env, "VAULT_PREFIX")
        if "/" in prefix or "*" in prefix:
            raise SettingsError("VAULT_PREFIX must not contain '/' or '*'")
        return cls(
            server=ServerSettings.from_env(env),
            aws_region=env_str(env, "AWS_REGION", env.get("AWS_DEFAULT_REGION")),
            public_port=public,
            internal_port=internal,
            public_base_url=_origin(
                env_str(env, "PUBLIC_BASE_URL"), "PUBLIC_BASE_URL", allow_loopback_http=insecure
            ),
            cognito_issuer=issuer,
            cognito_client_ids=client_ids,
            cognito_jwks_url=jwks_url,
            allowed_return_origins=origins,
            vault_prefix=prefix,
            vault_kms_key_id=env_str(env, "VAULT_KMS_KEY_ARN"),
            session_table=env_str(env, "SESSION_TABLE_NAME"),
            providers_json=env_str(env, "PROVIDERS", "[]"),
            allow_insecure_loopback=insecure,
            session_ttl_seconds=env_int(env, "SESSION_TTL_SECONDS", 600, low=60, high=3600),
            max_sessions_per_user=env_int(env, "MAX_SESSIONS_PER_USER", 20, low=1, high=1000),
            action_ttl_seconds=env_int(env, "ACTION_TTL_SECONDS", 600, low=10, high=3600),
            max_actions_per_user=env_int(env, "MAX_ACTIONS_PER_USER", 20, low=1, high=1000),
            refresh_skew_seconds=env_int(env, "REFRESH_SKEW_SECONDS", 300, low=0, high=3600),
            lease_seconds=env_int(env, "REFRESH_LEASE_SECONDS", 30, low=5, high=300),
            cache_ttl_seconds=env_int(env, "TOKEN_CACHE_SECONDS", 60, low=0, high=3600),
            http_timeout_seconds=env_int(env, "HTTP_TIMEOUT_SECONDS", 10, low=1, high=60),
            max_body_bytes=env_int(env, "MAX_BODY_BYTES", 16384, low=1024, high=1048576),
        )
