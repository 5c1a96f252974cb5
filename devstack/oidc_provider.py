"""The local OIDC provider (oidc-provider-mock, a real provider by another author), logged quietly.

`python -m oidc_provider_mock` logs every request line at INFO, and its authorize URLs carry
`state`, `nonce` and the PKCE challenge; it also prints the `extra=` objects of its log records.
This launcher serves the same app on the same server (uvicorn, WSGI interface) with the same
options the local stack uses, without an access log and with devstack.logs' quiet logging.

Two additions, both through the library's public configuration (Flask config read by authlib
when the provider's blueprint is registered) plus its supported-scopes list:

- Access tokens are JWTs (RFC 9068, `typ: at+jwt`), signed with the provider's own key (the one
  its `/jwks` publishes and its ID tokens use), so a local resource server can validate them
  offline as a real API does: `iss`, `sub`, `aud`, `client_id`, `scope`, `iat`, `exp`, `jti`.
  The provider still stores each token it issues, so `/userinfo` keeps working with them.
- `--resource SCOPE=URL` (repeatable) adds SCOPE to the scopes the provider grants and puts URL
  in the `aud` of every access token granted with SCOPE (devstack.notes_server uses `notes`).
  A token with no such scope has the provider's `/userinfo` URL as its audience.

Run: python -m devstack.oidc_provider --port P [--user-claims JSON ...] [--resource S=URL ...]
(127.0.0.1 only)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import time
import urllib.parse
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

import flask
import oidc_provider_mock
import uvicorn
from joserfc import jwt
from joserfc.jwk import RSAKey
from oidc_provider_mock import _storage  # the provider's key and supported scopes

from devstack import logs

LOOPBACK = "127.0.0.1"
# The lifetime the provider gives access tokens (its default); the JWT's `exp` says the same.
ACCESS_TOKEN_MAX_AGE = timedelta(hours=1)
ACCESS_TOKEN_TYPE = "at+jwt"  # noqa: S105 - a JOSE header value (RFC 9068)
_SCOPE_RE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_.:")


def _user(value: str) -> oidc_provider_mock.User:
    try:
        claims = json.loads(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--user-claims is not JSON: {exc}") from None
    if not isinstance(claims, dict) or not isinstance(claims.get("sub"), str) or not claims["sub"]:
        raise argparse.ArgumentTypeError('--user-claims must be a JSON object with a "sub"')
    sub = claims.pop("sub")
    return oidc_provider_mock.User(sub=sub, claims=claims)


def _resource(value: str) -> tuple[str, str]:
    scope, sep, url = value.partition("=")
    parts = urllib.parse.urlsplit(url)
    if (
        not sep
        or not scope
        or not set(scope) <= _SCOPE_RE_CHARS
        or parts.scheme not in ("http", "https")
        or not parts.netloc
    ):
        raise argparse.ArgumentTypeError("--resource takes SCOPE=URL, e.g. notes=http://...")
    return scope, url.rstrip("/")


class _SigningKeys:
    """The provider's signing key as a joserfc key, converted once per key id."""

    def __init__(self) -> None:
        self._by_kid: dict[str, RSAKey] = {}

    def current(self) -> RSAKey:
        data = _storage.storage.jwk.as_dict(is_private=True)
        kid = str(data["kid"])
        key = self._by_kid.get(kid)
        if key is None:
            key = self._by_kid[kid] = RSAKey.import_key(data)
        return key


def access_token_generator(
    resources: Mapping[str, str], *, max_age: timedelta = ACCESS_TOKEN_MAX_AGE
) -> Callable[..., str]:
    """authlib's access-token generator hook: an RFC 9068 JWT instead of a random string."""
    keys = _SigningKeys()

    def generate(*, client: Any, grant_type: str, user: Any, scope: str | None) -> str:
        issuer = flask.request.host_url.rstrip("/")
        granted = (scope or "").split()
        audience = [resources[s] for s in granted if s in resources] or [f"{issuer}/userinfo"]
        now = int(time.time())
        key = keys.current()
        claims = {
            "iss": issuer,
            "sub": user.sub,
            "aud": audience[0] if len(audience) == 1 else audience,
            "client_id": client.get_client_id(),
            "scope": " ".join(granted),
            "iat": now,
            "exp": now + int(max_age.total_seconds()),
            "jti": secrets.token_urlsafe(16),
        }
        header = {"alg": "RS256", "typ": ACCESS_TOKEN_TYPE, "kid": key.kid}
        return jwt.encode(header, claims, key)

    return generate


def create_app(
    users: list[oidc_provider_mock.User], resources: Mapping[str, str] | None = None
) -> flask.Flask:
    """The provider's Flask app, as `oidc_provider_mock.app()` builds it, with JWT access tokens."""
    resources = dict(resources or {})
    extra = tuple(s for s in resources if s not in _storage.Client.SCOPES_SUPPORTED)
    if extra:
        # Clients the provider creates on first use may be granted these scopes too.
        _storage.Client.SCOPES_SUPPORTED = (*_storage.Client.SCOPES_SUPPORTED, *extra)
    # Named after the library's module, as its own factory does, so its templates are found.
    app = flask.Flask(oidc_provider_mock.app.__module__)
    app.config["OAUTH2_ACCESS_TOKEN_GENERATOR"] = access_token_generator(resources)
    oidc_provider_mock.init_app(app, user_claims=users, access_token_max_age=ACCESS_TOKEN_MAX_AGE)
    app.secret_key = secrets.token_bytes(16)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--host", default=LOOPBACK)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--user-claims",
        dest="users",
        type=_user,
        action="append",
        default=[],
        help="a predefined user's claims as JSON, with its sub (repeatable)",
    )
    parser.add_argument(
        "--resource",
        dest="resources",
        type=_resource,
        action="append",
        default=[],
        help="SCOPE=URL: grant SCOPE, and put URL in the audience of tokens with it (repeatable)",
    )
    args = parser.parse_args(argv)
    if args.host != LOOPBACK:
        parser.error(f"loopback only ({LOOPBACK})")
    os.environ["AUTHLIB_INSECURE_TRANSPORT"] = "1"  # plain http on loopback, as the CLI does
    logs.configure(logging.INFO)
    uvicorn.run(
        create_app(args.users, dict(args.resources)),
        interface="wsgi",
        host=args.host,
        port=args.port,
        log_config=None,
        access_log=False,
        server_header=False,
    )


if __name__ == "__main__":
    main()
