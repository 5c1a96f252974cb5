"""Agent settings, read once from the environment (documented in services/agent/README.md)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from svc_common.settings import (
    ServerSettings,
    SettingsError,
    check_url,
    env_flag,
    env_int,
    env_port,
    env_str,
)

MODEL_MODES = ("bedrock", "offline")
# The binder's provider-name rule: an MCP server's name is the binder provider holding its tokens.
PROVIDER_NAME_RE: Final = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?")
_SCOPE_RE: Final = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]{1,128}")  # RFC 6749 3.3 scope-token
MAX_MCP_SERVERS: Final = 16


@dataclass(frozen=True, kw_only=True)
class McpServer:
    """One remote MCP server (AGENT_MCP_SERVERS): its binder provider name, URL and scopes.

    ``name`` is also the binder provider (kind ``mcp``) holding each user's token for it, and
    the prefix of its tools' names (``<name>__<tool>``, hyphens as underscores).
    """

    name: str
    url: str
    scopes: tuple[str, ...] = ()


def parse_mcp_servers(raw: str, *, allow_http: bool) -> tuple[McpServer, ...]:
    """AGENT_MCP_SERVERS: a JSON list of {"name", "url", "scopes"?}; errors name the key."""
    key = "AGENT_MCP_SERVERS"
    if not raw.strip():
        return ()
    try:
        data: Any = json.loads(raw)
    except ValueError:
        raise SettingsError(f'{key} must be a JSON list of {{"name", "url"}} objects') from None
    if not isinstance(data, list):
        raise SettingsError(f'{key} must be a JSON list of {{"name", "url"}} objects')
    if len(data) > MAX_MCP_SERVERS:
        raise SettingsError(f"{key} lists more than {MAX_MCP_SERVERS} servers")
    servers: list[McpServer] = []
    for index, item in enumerate(data):
        where = f"{key}[{index}]"
        if not isinstance(item, dict):
            raise SettingsError(f'{where} must be an object {{"name", "url", "scopes"?}}')
        unknown = sorted(set(item) - {"name", "url", "scopes"})
        if unknown:
            raise SettingsError(f"{where} has an unknown key {str(unknown[0])[:64]!r}")
        name = item.get("name")
        if not isinstance(name, str) or PROVIDER_NAME_RE.fullmatch(name) is None:
            raise SettingsError(
                f"{where}.name must be a binder provider name (a-z, 0-9, inner '-', 1-32 chars)"
            )
        if "--" in name:
            # Tools are named <server>__<tool> with "-" as "_": "a--b" could meet server "a"'s
            # tool "b__c" (the binder refuses such mcp names too).
            raise SettingsError(f"{where}.name of an MCP server must not contain '--'")
        if any(server.name == name for server in servers):
            raise SettingsError(f"{where}.name {name!r} is listed twice")
        url = item.get("url")
        if not isinstance(url, str):
            raise SettingsError(f"{where}.url must be a string")
        check_url(url, f"{where}.url", allow_http=allow_http)
        if "?" in url or "#" in url:
            raise SettingsError(f"{where}.url must not carry a query or a fragment")
        scopes = item.get("scopes", [])
        if not isinstance(scopes, list) or not all(
            isinstance(s, str) and _SCOPE_RE.fullmatch(s) for s in scopes
        ):
            raise SettingsError(f"{where}.scopes must be a list of OAuth scope strings")
        servers.append(McpServer(name=name, url=url, scopes=tuple(dict.fromkeys(scopes))))
    return tuple(servers)


@dataclass(frozen=True, kw_only=True)
class Settings:
    server: ServerSettings
    port: int
    aws_region: str | None
    cognito_issuer: str
    cognito_client_ids: tuple[str, ...]
    cognito_jwks_url: str | None
    # Service Connect in AWS (http://binder:8081), loopback locally: never through the ALB.
    binder_internal_url: str
    providers: tuple[str, ...]
    model_mode: str
    bedrock_model_id: str | None
    guardrail_id: str | None
    guardrail_version: str | None
    max_tool_rounds: int
    oidc_userinfo: Mapping[str, str] = field(default_factory=dict)
    github_api_url: str = "https://api.github.com"
    google_api_url: str = "https://www.googleapis.com"
    graph_api_url: str = "https://graph.microsoft.com"
    # The local notes resource server (devstack); its tools exist only when this is set and
    # "notes" is in AGENT_PROVIDERS.
    notes_api_url: str | None = None
    mcp_servers: tuple[McpServer, ...] = ()
    allow_insecure_loopback: bool = False
    http_timeout_seconds: int = 10
    max_body_bytes: int = 65536
    max_message_chars: int = 4000
    max_history_turns: int = 40
    max_turn_chars: int = 8000

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        insecure = env_flag(env, "ALLOW_INSECURE_LOOPBACK")

        def api_url(name: str, default: str) -> str:
            return check_url(env.get(name, "") or default, name, allow_http=insecure).rstrip("/")

        model_id = env.get("BEDROCK_MODEL_ID", "").strip() or None
        mode = env.get("AGENT_MODEL", "").strip().lower() or ("bedrock" if model_id else "offline")
        if mode not in MODEL_MODES:
            raise SettingsError(f"AGENT_MODEL must be one of {', '.join(MODEL_MODES)}")
        if mode == "bedrock" and not model_id:
            raise SettingsError("BEDROCK_MODEL_ID is required when AGENT_MODEL is bedrock")
        region = (env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "").strip() or None
        if mode == "bedrock" and not region:
            raise SettingsError("AWS_REGION is required when AGENT_MODEL is bedrock")
        try:
            userinfo_raw = json.loads(env.get("OIDC_USERINFO", "") or "{}")
        except ValueError:
            raise SettingsError("OIDC_USERINFO must be a JSON object of provider -> URL") from None
        if not isinstance(userinfo_raw, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in userinfo_raw.items()
        ):
            raise SettingsError("OIDC_USERINFO must be a JSON object of provider -> URL")
        userinfo = {
            k: check_url(v, "OIDC_USERINFO", allow_http=insecure).rstrip("/")
            for k, v in userinfo_raw.items()
        }
        binder_url = env_str(env, "BINDER_INTERNAL_URL")
        # Service Connect traffic inside the VPC is plain HTTP by design (see README).
        check_url(binder_url, "BINDER_INTERNAL_URL", allow_http=True, any_host=True)
        issuer = env_str(env, "COGNITO_ISSUER").rstrip("/")
        check_url(issuer, "COGNITO_ISSUER", allow_http=insecure)
        jwks = env.get("COGNITO_JWKS_URL", "").strip() or None
        if jwks:
            check_url(jwks, "COGNITO_JWKS_URL", allow_http=insecure)
        return cls(
            server=ServerSettings.from_env(env),
            port=env_port(env, "PORT", 8080),
            aws_region=region,
            cognito_issuer=issuer,
            cognito_client_ids=tuple(
                c.strip() for c in env_str(env, "COGNITO_CLIENT_IDS").split(",") if c.strip()
            ),
            cognito_jwks_url=jwks,
            binder_internal_url=binder_url.rstrip("/"),
            providers=tuple(
                p.strip() for p in env.get("AGENT_PROVIDERS", "").split(",") if p.strip()
            ),
            model_mode=mode,
            bedrock_model_id=model_id,
            guardrail_id=env.get("BEDROCK_GUARDRAIL_ID", "").strip() or None,
            guardrail_version=env.get("BEDROCK_GUARDRAIL_VERSION", "").strip() or None,
            max_tool_rounds=env_int(env, "MAX_TOOL_ROUNDS", 4, low=1, high=10),
            oidc_userinfo=userinfo,
            github_api_url=api_url("GITHUB_API_URL", "https://api.github.com"),
            google_api_url=api_url("GOOGLE_API_URL", "https://www.googleapis.com"),
            graph_api_url=api_url("GRAPH_API_URL", "https://graph.microsoft.com"),
            notes_api_url=(
                api_url("NOTES_API_URL", "") if env.get("NOTES_API_URL", "").strip() else None
            ),
            mcp_servers=parse_mcp_servers(env.get("AGENT_MCP_SERVERS", ""), allow_http=insecure),
            allow_insecure_loopback=insecure,
            http_timeout_seconds=env_int(env, "HTTP_TIMEOUT_SECONDS", 10, low=1, high=60),
        )
