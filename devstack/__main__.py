"""`make dev`: the whole system on 127.0.0.1, no AWS account.

Starts and supervises moto server (Cognito, Secrets Manager, KMS, DynamoDB), a local OIDC
provider (oidc-provider-mock, a real provider server by another author, through
devstack.oidc_provider), a notes API protected by that provider's access tokens
(devstack.notes_server, the resource server of the agent's notes tools), a local MCP server
(devstack.mcp_server) and its OAuth authorization server (devstack.mcp_auth_server), the binder
(the MCP server is its provider `mcpnotes`, kind mcp, no client_id: it registers itself), the
agent (the MCP server in its AGENT_MCP_SERVERS) and the dev edge that plays the ALB. `--no-mcp`
(or $DEV_MCP=0) leaves the two MCP processes out. Prints one banner. Ctrl-C stops everything; a
child that dies is named and the rest are stopped. Each child writes `{name}.log` in --logs;
none of them logs a code, state, PKCE value, token or password
(tests/devstack/test_no_secrets_in_logs.py).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import FrameType

from devstack import aws, mcp_server, procs, services

ROOT = Path(__file__).resolve().parent.parent
USERS = {"alice": "Alice-local-Passw0rd!", "bob": "Bob-local-Passw0rd!"}
PROVIDER = "demo"  # the local provider's name in the binder and the agent
PROVIDER_CLIENT_ID = "secure-agents-local"
# The notes API's provider in the binder: the same local OIDC provider, its own OAuth client,
# and the scope the provider grants for the notes API (devstack.oidc_provider --resource).
NOTES_PROVIDER = "notes"
NOTES_CLIENT_ID = "secure-agents-notes"
NOTES_SCOPE = "notes"
# The MCP server's users at its authorization server (any of them may approve; the binder binds
# the connection to the Cognito user who consented, whatever the upstream `sub`).
MCP_USERS = tuple(f"{u}@mcp.example" for u in USERS)


class Stop(Exception):
    pass


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise Stop


def _ports(args: argparse.Namespace) -> dict[str, int]:
    wanted = {
        "edge": args.port,
        "moto": args.moto_port,
        "provider": args.provider_port,
        "notes": args.notes_port,
        "binder (public)": args.binder_port,
        "binder (internal)": args.binder_internal_port,
        "agent": args.agent_port,
    }
    if args.mcp:
        wanted["mcp"] = args.mcp_port
        wanted["mcp auth"] = args.mcp_auth_port
    chosen: dict[str, int] = {}
    for name, port in wanted.items():
        if port:
            if procs.port_in_use(port):
                raise SystemExit(
                    f"make dev: port {port} ({name}) is already in use on 127.0.0.1. Stop what "
                    "uses it, or choose another port (see python -m devstack --help)."
                )
            chosen[name] = port
    for name in wanted:
        if name not in chosen:
            port = procs.free_port()
            while port in chosen.values():
                port = procs.free_port()
            chosen[name] = port
    return chosen


def _env(**extra: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),  # noqa: S108 - only a fallback for HOME
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


def run(args: argparse.Namespace) -> int:
    ports = _ports(args)
    logs = Path(args.logs).resolve()
    logs.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    base = f"http://{procs.LOOPBACK}"
    edge_url = f"{base}:{ports['edge']}"
    children: list[procs.Child] = []

    waiting: list[tuple[procs.Child, str]] = []

    def launch(name: str, argv: list[str], env: dict[str, str], health: str) -> None:
        """Start a child now, wait for it in `ready()`: children that do not need each other
        come up together (Python's start-up is most of each one's time)."""
        child = procs.start(name, argv, env=env, log_dir=logs, cwd=ROOT, die_with_parent=True)
        children.append(child)
        waiting.append((child, health))

    def ready() -> None:
        while waiting:
            procs.wait_http(*waiting.pop(0), timeout=60)

    def start(name: str, argv: list[str], env: dict[str, str], health: str) -> None:
        launch(name, argv, env, health)
        ready()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    try:
        moto = f"{base}:{ports['moto']}"
        launch(
            "moto",
            [py, "-m", "devstack.moto_server", "-H", procs.LOOPBACK, "-p", str(ports["moto"])],
            _env(),
            f"{moto}/moto-api/",
        )
        provider = f"{base}:{ports['provider']}"
        users = [
            json.dumps(
                {
                    "sub": f"{u}@{PROVIDER}.example",
                    "name": u.capitalize(),
                    "email": f"{u}@{PROVIDER}.example",
                    "preferred_username": u,
                }
            )
            for u in USERS
        ]
        notes = f"{base}:{ports['notes']}"
        launch(
            "provider",
            [
                py,
                "-m",
                "devstack.oidc_provider",
                "--port",
                str(ports["provider"]),
                *[a for claims in users for a in ("--user-claims", claims)],
                "--resource",
                f"{NOTES_SCOPE}={notes}",
            ],
            _env(),
            f"{provider}/.well-known/openid-configuration",
        )
        launch(
            "notes",
            [
                py,
                "-m",
                "devstack.notes_server",
                "--port",
                str(ports["notes"]),
                "--issuer",
                provider,
                "--client-id",
                NOTES_CLIENT_ID,
                "--scope",
                NOTES_SCOPE,
            ],
            _env(PYTHONPATH=str(ROOT)),
            f"{notes}/healthz",
        )
        providers_extra: list[dict[str, object]] = []
        mcp_url = None
        if args.mcp:
            mcp_auth = f"{base}:{ports['mcp auth']}"
            mcp_url = f"{base}:{ports['mcp']}{mcp_server.PATH}"
            launch(
                "mcp-auth",
                [
                    py,
                    "-m",
                    "devstack.mcp_auth_server",
                    "--port",
                    str(ports["mcp auth"]),
                    "--resource",
                    mcp_url,
                    *[a for user in MCP_USERS for a in ("--user", user)],
                ],
                _env(PYTHONPATH=str(ROOT)),
                f"{mcp_auth}/healthz",
            )
            launch(
                "mcp",
                [
                    py,
                    "-m",
                    "devstack.mcp_server",
                    "--port",
                    str(ports["mcp"]),
                    "--issuer",
                    mcp_auth,
                ],
                _env(PYTHONPATH=str(ROOT)),
                f"{base}:{ports['mcp']}/healthz",
            )
            # No client id: the binder is known by its client metadata document (served by the
            # edge without sign-in; http on loopback here), else by dynamic registration.
            providers_extra.append(mcp_server.mcp_provider_entry(mcp_url))
        ready()
        local = aws.bootstrap(
            moto,
            users=USERS,
            providers={
                PROVIDER: (PROVIDER_CLIENT_ID, secrets.token_urlsafe(24)),
                NOTES_PROVIDER: (NOTES_CLIENT_ID, secrets.token_urlsafe(24)),
            },
        )
        binder_internal = f"{base}:{ports['binder (internal)']}"
        extra = {"HOME": os.environ.get("HOME", "/tmp"), "PYTHONUNBUFFERED": "1"}  # noqa: S108
        provider_entry = {
            "name": PROVIDER,
            "kind": "oidc",
            "display_name": "Local OIDC provider",
            "client_id": PROVIDER_CLIENT_ID,
            "issuer": provider,
            "secret_arn": local.provider_secrets[PROVIDER],
        }
        notes_entry = notes_provider_entry(
            issuer=provider, secret_arn=local.provider_secrets[NOTES_PROVIDER]
        )
        start(
            "binder",
            [py, "-m", "binder"],
            services.binder_env(
                local,
                [provider_entry, notes_entry, *providers_extra],
                public_port=ports["binder (public)"],
                internal_port=ports["binder (internal)"],
                base_url=edge_url,  # browsers reach /oauth2/* through the edge
                ALLOWED_RETURN_ORIGINS=edge_url,
                **extra,
            ),
            f"{binder_internal}/healthz",
        )
        agent = f"{base}:{ports['agent']}"
        start(
            "agent",
            [py, "-m", "agent"],
            services.agent_env(
                issuer=local.issuer,
                client_id=local.client_id,
                jwks_url=local.jwks_url,
                port=ports["agent"],
                binder_url=binder_internal,
                userinfo={PROVIDER: f"{provider}/userinfo"},
                providers=[NOTES_PROVIDER],
                NOTES_API_URL=notes,
                **mcp_agent_env({mcp_server.PROVIDER_NAME: mcp_url}),
                **extra,
            ),
            f"{agent}/healthz",
        )
        start(
            "edge",
            [
                py,
                "-m",
                "devstack.edge",
                "--port",
                str(ports["edge"]),
                "--binder-public",
                f"{base}:{ports['binder (public)']}",
                "--agent",
                agent,
                "--cognito-endpoint",
                moto,
                "--client-id",
                local.client_id,
            ],
            _env(PYTHONPATH=str(ROOT)),
            f"{edge_url}/_edge/healthz",
        )
        print(_banner(edge_url, logs, notes, mcp_url), flush=True)
        while True:
            for child in children:
                if not child.alive():
                    code = child.process.returncode
                    print(
                        f"\nmake dev: {child.name} exited (code {code}); stopping the rest.\n"
                        f"Last lines of {child.log_path}:\n{child.log_tail(15)}",
                        file=sys.stderr,
                        flush=True,
                    )
                    return 1
            time.sleep(0.3)
    except Stop:
        print("\nmake dev: stopping...", flush=True)
        return 0
    except RuntimeError as exc:  # a child did not come up
        print(f"make dev: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for child in reversed(children):
            child.stop()
        print("make dev: stopped.", flush=True)


def notes_provider_entry(*, issuer: str, secret_arn: str) -> dict[str, object]:
    """The binder's PROVIDERS entry for the notes API: consent at the local OIDC provider."""
    return {
        "name": NOTES_PROVIDER,
        "kind": "oidc",
        "display_name": "Notes (local API)",
        "client_id": NOTES_CLIENT_ID,
        "issuer": issuer,
        "secret_arn": secret_arn,
        "scopes": [NOTES_SCOPE],
        "allowed_scopes": [NOTES_SCOPE],
    }


def mcp_agent_env(servers: Mapping[str, str | None]) -> dict[str, str]:
    """AGENT_MCP_SERVERS for local MCP servers, by binder provider name (the agent asks the
    binder for each server's token by that name); a server without a URL is left out."""
    listed = [{"name": name, "url": url} for name, url in servers.items() if url]
    return {"AGENT_MCP_SERVERS": json.dumps(listed)} if listed else {}


def _banner(url: str, logs: Path, notes: str, mcp: str | None = None) -> str:
    width = 64
    lines = [
        "=" * width,
        f"  Secure agents, local stack: open {url}",
        "",
        "  Users (local Cognito in moto):",
        *[f"    {name:<6} {password}" for name, password in USERS.items()],
        "",
        f'  Try: "who am I on {PROVIDER}?" (offline planner, not a language model),',
        '       "what\'s on my notes?", "add a note titled Hello saying hi"',
        *(
            ['       "what\'s on my MCP notes?", "add an MCP note titled Hi saying hello"']
            if mcp
            else []
        ),
        f"  Notes API (local resource server): {notes}",
        *([f"  MCP server (local, OAuth-protected): {mcp}"] if mcp else []),
        f"  Logs: {logs}",
        "  Stop: Ctrl-C",
        "=" * width,
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("DEV_PORT", "8000")),
        help="the URL's port (the dev edge); default 8000 or $DEV_PORT",
    )
    parser.add_argument(
        "--mcp",
        action=argparse.BooleanOptionalAction,
        default=os.environ.get("DEV_MCP", "1") != "0",
        help="run the local MCP server and its authorization server (default; --no-mcp or "
        "$DEV_MCP=0 leaves them out)",
    )
    names = ("moto", "provider", "notes", "binder", "binder-internal", "agent", "mcp", "mcp-auth")
    for name in names:
        parser.add_argument(
            f"--{name}-port", type=int, default=0, help=f"{name} port (default: any free port)"
        )
    parser.add_argument("--logs", default=str(ROOT / ".devstack" / "logs"))
    sys.exit(run(parser.parse_args()))


if __name__ == "__main__":
    main()
