"""A binder wired to moto (mock_aws), a fake Cognito JWKS and the fake OAuth provider.

Everything runs in-process: the binder's HTTP clients reach the fake provider and the JWKS
through an httpx2 transport that routes by host, so no socket is opened.
"""

from __future__ import annotations

import contextlib
import functools
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import httpx2
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey
from moto import mock_aws
from starlette.testclient import TestClient

from binder.app import BinderApp, Services, build_services
from binder.settings import Settings
from tests.fakes.provider import FakeProvider

REGION = "us-east-1"
POOL = "us-east-1_TESTPOOL"
ISSUER = f"https://cognito-idp.{REGION}.amazonaws.com/{POOL}"
CLIENT_ID = "alb-client"
BASE = "https://agents.example.com"
PROVIDER_HOST = "provider.test"
PROVIDER_URL = f"https://{PROVIDER_HOST}"
PROVIDER_CLIENT_ID = "binder-client"
PROVIDER_SECRET = "provider-client-secret-value"
PUBLIC = "http://testserver:8080"
INTERNAL = "http://testserver:8081"


class Cognito:
    """Mints access tokens the way a Cognito user pool does, and serves its JWKS."""

    def __init__(self) -> None:
        self.key = RSAKey.generate_key(2048, parameters={"kid": "pool-key-1", "use": "sig"})

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.key.as_dict(private=False)]}

    def token(self, sub: str = "alice", *, key: RSAKey | None = None, **claims: Any) -> str:
        now = int(time.time())
        payload: dict[str, Any] = {
            "iss": ISSUER,
            "sub": sub,
            "client_id": CLIENT_ID,
            "token_use": "access",
            "scope": "openid email",
            "username": sub,
            "iat": now,
            "exp": now + 3600,
            **claims,
        }
        signing = key or self.key
        header = {"alg": "RS256", "kid": signing.kid or "pool-key-1"}
        return jwt.encode(header, payload, signing)


class HostRouter(httpx2.AsyncBaseTransport):
    def __init__(self, routes: dict[str, httpx2.AsyncBaseTransport]) -> None:
        self.routes = routes

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        transport = self.routes.get(request.url.host)
        if transport is None:
            return httpx2.Response(599, text=f"no route to {request.url.host}")
        return await transport.handle_async_request(request)


@dataclass
class Harness:
    client: TestClient
    app: BinderApp
    services: Services
    cognito: Cognito
    provider: FakeProvider
    secret_arn: str
    aws: dict[str, Any] = field(default_factory=dict)

    # -- agent-side calls -------------------------------------------------------------------
    def request_token(
        self,
        token: str,
        *,
        provider: str = "fake",
        scopes: list[str] | None = None,
        return_url: str | None = None,
    ) -> httpx2.Response:
        body: dict[str, Any] = {"provider": provider, "scopes": scopes or ["read"]}
        if return_url is not None:
            body["return_url"] = return_url
        return self.client.post(
            f"{INTERNAL}/internal/tokens", json=body, headers={"authorization": f"Bearer {token}"}
        )

    # -- browser-side steps -----------------------------------------------------------------
    def open_authorization(self, token: str, authorization_url: str) -> httpx2.Response:
        path = urlsplit(authorization_url).path
        return self.client.get(
            f"{PUBLIC}{path}", headers={"x-amzn-oidc-accesstoken": token}, follow_redirects=False
        )

    def consent_at_provider(self, provider_url: str, *, subject: str = "alice@provider") -> str:
        """Follow the provider's authorization URL; returns the callback URL it redirects to."""
        parts = urlsplit(provider_url)
        query = parse_qs(parts.query)
        query["login_hint"] = [subject]
        with TestClient(self.provider.app(), base_url=PROVIDER_URL) as browser:
            response = browser.get(
                parts.path,
                params={k: v[0] for k, v in query.items()},
                follow_redirects=False,
            )
        assert response.status_code in (302, 303), response.text
        return str(response.headers["location"])

    def callback(self, token: str, callback_url: str) -> httpx2.Response:
        parts = urlsplit(callback_url)
        return self.client.get(
            f"{PUBLIC}{parts.path}?{parts.query}",
            headers={"x-amzn-oidc-accesstoken": token},
            follow_redirects=False,
        )

    def connect(self, token: str, *, scopes: list[str] | None = None) -> httpx2.Response:
        """The whole consent flow for one user; returns the callback's response."""
        first = self.request_token(token, scopes=scopes)
        assert first.status_code == 403, first.text
        redirect = self.open_authorization(token, first.json()["authorization_url"])
        assert redirect.status_code == 302, redirect.text
        callback_url = self.consent_at_provider(redirect.headers["location"])
        return self.callback(token, callback_url)

    def stored_secret_names(self) -> list[str]:
        client = boto3.client("secretsmanager", region_name=REGION)
        names = [s["Name"] for s in client.list_secrets()["SecretList"]]
        return sorted(n for n in names if n.startswith("vault-test/"))


def provider_entry(secret_arn: str) -> dict[str, Any]:
    return {
        "name": "fake",
        "kind": "oidc",
        "client_id": PROVIDER_CLIENT_ID,
        "issuer": PROVIDER_URL,
        "secret_arn": secret_arn,
    }


@pytest.fixture
def aws() -> Iterator[dict[str, Any]]:
    with mock_aws():
        kms = boto3.client("kms", region_name=REGION)
        key_arn = kms.create_key(Description="vault")["KeyMetadata"]["Arn"]
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        dynamodb.create_table(
            TableName="sessions",
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
        secrets = boto3.client("secretsmanager", region_name=REGION)
        secret_arn = secrets.create_secret(
            Name="provider/fake",
            SecretString=json.dumps(
                {"client_id": PROVIDER_CLIENT_ID, "client_secret": PROVIDER_SECRET}
            ),
        )["ARN"]
        yield {"key_arn": key_arn, "secret_arn": secret_arn}


def settings_env(aws: dict[str, Any], **overrides: str) -> dict[str, str]:
    return {
        "PUBLIC_BASE_URL": BASE,
        "AWS_REGION": REGION,
        "COGNITO_ISSUER": ISSUER,
        "COGNITO_CLIENT_IDS": f"{CLIENT_ID},api-client",
        "ALLOWED_RETURN_ORIGINS": "https://app.example.com",
        "VAULT_PREFIX": "vault-test",
        "VAULT_KMS_KEY_ARN": aws["key_arn"],
        "SESSION_TABLE_NAME": "sessions",
        "PROVIDERS": json.dumps([provider_entry(aws["secret_arn"])]),
        **overrides,
    }


@pytest.fixture
def atomic_dynamodb(monkeypatch: pytest.MonkeyPatch) -> None:
    """DynamoDB's item operations, one at a time, as DynamoDB applies a conditional write.

    moto checks a write's condition and then applies it without a lock, so two threads can
    both pass `status = :approved` before either writes; DynamoDB cannot. Concurrency tests
    of conditional transitions use this, or they would test moto's race instead of ours."""
    from moto.dynamodb.models import DynamoDBBackend

    lock = threading.RLock()
    for name in ("put_item", "get_item", "update_item", "delete_item", "transact_write_items"):
        original = getattr(DynamoDBBackend, name)

        def serialized(*args: Any, __original: Any = original, **kwargs: Any) -> Any:
            with lock:
                return __original(*args, **kwargs)

        monkeypatch.setattr(DynamoDBBackend, name, functools.wraps(original)(serialized))


@pytest.fixture
def atomic_secretsmanager(monkeypatch: pytest.MonkeyPatch) -> None:
    """Secrets Manager's writes, one at a time, as the service applies them.

    moto checks that a name is free (CreateSecret) or that a version still holds a label
    (UpdateSecretVersionStage) and then writes without a lock, so two threads can both win a
    claim that AWS gives to one. Tests of concurrent claims use this, or they would test moto's
    race instead of ours."""
    from moto.secretsmanager.models import SecretsManagerBackend

    lock = threading.RLock()
    for name in (
        "create_secret",
        "put_secret_value",
        "update_secret_version_stage",
        "get_secret_value",
    ):
        original = getattr(SecretsManagerBackend, name)

        def serialized(*args: Any, __original: Any = original, **kwargs: Any) -> Any:
            with lock:
                return __original(*args, **kwargs)

        monkeypatch.setattr(SecretsManagerBackend, name, functools.wraps(original)(serialized))


@pytest.fixture
def cognito() -> Cognito:
    return Cognito()


@pytest.fixture
def fake_provider() -> FakeProvider:
    return FakeProvider(
        issuer=PROVIDER_URL, client_id=PROVIDER_CLIENT_ID, client_secret=PROVIDER_SECRET
    )


def make_harness(
    aws: dict[str, Any],
    cognito: Cognito,
    fake_provider: FakeProvider,
    *,
    routes: dict[str, httpx2.AsyncBaseTransport] | None = None,
    **env: str,
) -> tuple[BinderApp, Services]:
    settings = Settings.from_env(settings_env(aws, **env))
    jwks = cognito.jwks()

    def serve_jwks(request: httpx2.Request) -> httpx2.Response:
        if request.url.path == f"/{POOL}/.well-known/jwks.json":
            return httpx2.Response(200, json=jwks)
        return httpx2.Response(404)

    router = HostRouter(
        {
            PROVIDER_HOST: httpx2.ASGITransport(app=fake_provider.app()),
            f"cognito-idp.{REGION}.amazonaws.com": httpx2.MockTransport(serve_jwks),
            **(routes or {}),
        }
    )
    services = build_services(
        settings,
        session=boto3.Session(region_name=REGION),
        provider_transport=router,
    )
    return BinderApp(services), services


@contextlib.contextmanager
def running_binder(
    aws: dict[str, Any],
    cognito: Cognito,
    provider: FakeProvider | None = None,
    *,
    routes: dict[str, httpx2.AsyncBaseTransport] | None = None,
    **env: str,
) -> Iterator[Harness]:
    """A started binder (lifespan run) with these settings overrides, and its harness.

    `routes` adds hosts (e.g. "slack.com") the binder's HTTP clients reach in-process."""
    provider = provider or FakeProvider(
        issuer=PROVIDER_URL, client_id=PROVIDER_CLIENT_ID, client_secret=PROVIDER_SECRET
    )
    app, services = make_harness(aws, cognito, provider, routes=routes, **env)
    with TestClient(app, base_url=PUBLIC) as client:
        yield Harness(
            client=client,
            app=app,
            services=services,
            cognito=cognito,
            provider=provider,
            secret_arn=aws["secret_arn"],
            aws=aws,
        )


@pytest.fixture
def binder(aws: dict[str, Any], cognito: Cognito, fake_provider: FakeProvider) -> Iterator[Harness]:
    with running_binder(aws, cognito, fake_provider) as harness:
        yield harness
