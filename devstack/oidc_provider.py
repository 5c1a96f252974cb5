"""The local OIDC provider (oidc-provider-mock, a real provider by another author), logged quietly.

`python -m oidc_provider_mock` logs every request line at INFO, and its authorize URLs carry
`state`, `nonce` and the PKCE challenge; it also prints the `extra=` objects of its log records.
This launcher serves the same app on the same server (uvicorn, WSGI interface) with the same
options the local stack uses, without an access log and with devstack.logs' quiet logging.

Run: python -m devstack.oidc_provider --port P [--user-claims JSON ...] (127.0.0.1 only)
"""

from __future__ import annotations

import argparse
import json
import logging
import os

import oidc_provider_mock
import uvicorn

from devstack import logs

LOOPBACK = "127.0.0.1"


def _user(value: str) -> oidc_provider_mock.User:
    try:
        claims = json.loads(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--user-claims is not JSON: {exc}") from None
    if not isinstance(claims, dict) or not isinstance(claims.get("sub"), str) or not claims["sub"]:
        raise argparse.ArgumentTypeError('--user-claims must be a JSON object with a "sub"')
    sub = claims.pop("sub")
    return oidc_provider_mock.User(sub=sub, claims=claims)


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
    args = parser.parse_args(argv)
    if args.host != LOOPBACK:
        parser.error(f"loopback only ({LOOPBACK})")
    os.environ["AUTHLIB_INSECURE_TRANSPORT"] = "1"  # plain http on loopback, as the CLI does
    logs.configure(logging.INFO)
    uvicorn.run(
        oidc_provider_mock.app(user_claims=args.users),
        interface="wsgi",
        host=args.host,
        port=args.port,
        log_config=None,
        access_log=False,
        server_header=False,
    )


if __name__ == "__main__":
    main()
