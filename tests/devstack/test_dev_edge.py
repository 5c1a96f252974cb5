"""The dev edge routes and signs in as the ALB does (devstack/edge.py).

Cognito is moto (mock_aws, in process); the binder and the agent are ASGI fakes that echo what
they received, reached through an httpx2 transport that routes by host: no socket is opened,
except one connection attempt to a closed loopback port (the "upstream down" case).
"""

from __future__ import annotations

import functools
import re
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import boto3
import httpx2
import pytest
from moto import mock_aws
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from devstack import edge, procs

PASSWORDS = {"alice": "Alice-edge-Passw0rd!", "bob": "Bob-edge-Passw0rd!"}
EDGE = "http://127.0.0.1:8100"  # the TestClient's base URL: requests stay in process
BINDER_HOST = "binder.test"
AGENT_HOST = "agent.test"
PROVIDER_AUTHORIZE = "https://provider.example/authorize?state=a%2Fb&redirect_uri=x"


# -- fakes ----------------------------------------------------------------------------------------


def echo_app(service: str) -> Starlette:
    async def echo(request: Request) -> Response:
        if request.url.path.endswith("/redirect"):
            response = Response(status_code=302, headers={"location": PROVIDER_AUTHORIZE})
            response.set_cookie("upstream_cookie", "kept", path="/")
            response.set_cookie(edge.COOKIE, "forged-by-upstream", path="/")
            return response
        return JSONResponse(
            {
                "service": service,
                "method": request.method,
                "path": request.url.path,
                "query": request.url.query,
                "headers": [[k.decode(), v.decode()] for k, v in request.headers.raw],
                "body": (await request.body()).decode(),
            },
            headers={"x-upstream": service},
        )

    return Starlette(routes=[Route("/{path:path}", echo, methods=["GET", "POST", "HEAD"])])


class HostRouter(httpx2.AsyncBaseTransport):
    """Routes each request to the transport for its host; other hosts refuse the connection."""

    def __init__(self, routes: dict[str, httpx2.AsyncBaseTransport]) -> None:
        self.routes = routes
        self.hits: Counter[str] = Counter()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        host = request.url.host
        self.hits[host] += 1
        if host not in self.routes:
            raise httpx2.ConnectError(f"connection refused: {host}", request=request)
        return await self.routes[host].handle_async_request(request)


class TimesOut(httpx2.AsyncBaseTransport):
    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ReadTimeout("timed out", request=request)


# -- fixtures -------------------------------------------------------------------------------------


class Pool:
    def __init__(self, client: Any, pool_id: str, client_id: str) -> None:
        self.client = client
        self.pool_id = pool_id
        self.client_id = client_id

    def username_of(self, access_token: str) -> str:
        return str(self.client.get_user(AccessToken=access_token)["Username"])


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def pool() -> Iterator[Pool]:
    with mock_aws():
        client = boto3.client("cognito-idp", region_name="us-east-1")
        pool_id = client.create_user_pool(PoolName="edge-test")["UserPool"]["Id"]
        client_id = client.create_user_pool_client(
            UserPoolId=pool_id,
            ClientName="edge",
            ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
        )["UserPoolClient"]["ClientId"]
        for name, password in PASSWORDS.items():
            client.admin_create_user(UserPoolId=pool_id, Username=name, MessageAction="SUPPRESS")
            client.admin_set_user_password(
                UserPoolId=pool_id, Username=name, Password=password, Permanent=True
            )
        yield Pool(client, pool_id, client_id)


@pytest.fixture
def router() -> HostRouter:
    return HostRouter(
        {
            BINDER_HOST: httpx2.ASGITransport(app=echo_app("binder")),
            AGENT_HOST: httpx2.ASGITransport(app=echo_app("agent")),
        }
    )


def make_config(pool: Pool, **overrides: Any) -> edge.EdgeConfig:
    values: dict[str, Any] = {
        "binder_public": f"http://{BINDER_HOST}",
        "agent": f"http://{AGENT_HOST}",
        "cognito_endpoint": "http://127.0.0.1:1",  # unused: the moto client is passed in
        "user_pool_client_id": pool.client_id,
        **overrides,
    }
    return edge.EdgeConfig(**values)


@pytest.fixture
def app(pool: Pool, router: HostRouter) -> Starlette:
    return edge.create_edge(make_config(pool), cognito_client=pool.client, transport=router)


@pytest.fixture
def client(app: Starlette) -> Iterator[TestClient]:
    with TestClient(app, base_url=EDGE, follow_redirects=False) as test_client:
        yield test_client


def sign_in(client: TestClient, user: str) -> str:
    """The session cookie value for `user` (the client's own jar is left empty)."""
    response = client.post(
        "/_edge/login",
        data={"username": user, "password": PASSWORDS[user], "next": "/"},
        headers={"origin": EDGE},
    )
    assert response.status_code == 303, response.text
    session_id = response.cookies[edge.COOKIE]
    client.cookies.clear()
    return session_id


def as_user(session_id: str, **headers: str) -> dict[str, str]:
    return {"cookie": f"{edge.COOKIE}={session_id}", **headers}


def received(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def header_values(echo: dict[str, Any], name: str) -> list[str]:
    return [v for k, v in echo["headers"] if k == name]


def oidc_headers(echo: dict[str, Any]) -> list[str]:
    return [k for k, _ in echo["headers"] if k.startswith("x-amzn-oidc-")]


# -- the sign-in page -----------------------------------------------------------------------------


def test_login_page_renders_a_plain_form_with_security_headers(client: TestClient) -> None:
    response = client.get("/_edge/login", params={"next": '/app/"><script>x</script>'})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["content-security-policy"] == (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"
    )
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"
    page = response.text
    assert '<form method="post" action="/_edge/login">' in page
    assert 'name="username"' in page
    assert 'type="password"' in page
    assert "stands in for the Cognito hosted UI" in page
    assert "<script" not in page
    assert "&lt;script&gt;" in page  # the next path is escaped, never markup


def test_login_page_drops_an_external_next(client: TestClient) -> None:
    page = client.get("/_edge/login", params={"next": "//evil.com/x"}).text
    assert 'name="next" value="/"' in page
    assert "evil.com" not in page


def test_wrong_password_is_refused_without_echoing_it(client: TestClient) -> None:
    response = client.post(
        "/_edge/login",
        data={"username": "alice", "password": "Not-Alice-Secret-42", "next": "/"},
        headers={"origin": EDGE},
    )
    assert response.status_code == 401
    assert "Wrong username or password" in response.text
    assert "Not-Alice-Secret-42" not in response.text
    assert edge.COOKIE not in response.headers.get("set-cookie", "")
    assert response.headers["content-security-policy"].startswith("default-src 'none'")


def test_unknown_user_gets_the_same_answer(client: TestClient) -> None:
    response = client.post(
        "/_edge/login",
        data={"username": "mallory", "password": "Whatever-123"},
        headers={"origin": EDGE},
    )
    assert response.status_code == 401
    assert "Wrong username or password" in response.text


def test_login_sets_an_httponly_samesite_cookie_and_redirects_to_next(
    client: TestClient, app: Starlette
) -> None:
    response = client.post(
        "/_edge/login",
        data={"username": "alice", "password": PASSWORDS["alice"], "next": "/app/chat?x=1"},
        headers={"origin": EDGE},
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/app/chat?x=1"
    cookie = response.headers["set-cookie"]
    attributes = [part.strip().lower() for part in cookie.split(";")]
    assert attributes[0].startswith(f"{edge.COOKIE}=")
    assert "httponly" in attributes
    assert "samesite=lax" in attributes
    assert "path=/" in attributes
    assert "secure" not in attributes
    assert len(response.cookies[edge.COOKIE]) >= 43  # 32 random bytes, url-safe base64
    (session,) = app.state.sessions.values()
    assert session.username == "alice"
    assert session.access_token not in repr(session)


@pytest.mark.parametrize(
    "next_path",
    ["//evil.com", "https://evil.com", "//evil.com/app", "/\\evil.com", "evil.com", ""],
)
def test_login_refuses_an_external_next(client: TestClient, next_path: str) -> None:
    response = client.post(
        "/_edge/login",
        data={"username": "alice", "password": PASSWORDS["alice"], "next": next_path},
        headers={"origin": EDGE},
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/"


@pytest.mark.parametrize("origin", [None, "http://evil.com", "null", "http://127.0.0.1:9999"])
def test_login_with_a_foreign_origin_is_refused(
    client: TestClient, app: Starlette, origin: str | None
) -> None:
    headers = {"origin": origin} if origin else {}
    response = client.post(
        "/_edge/login",
        data={"username": "alice", "password": PASSWORDS["alice"]},
        headers=headers,
    )
    assert response.status_code == 403
    assert edge.COOKIE not in response.headers.get("set-cookie", "")
    assert len(app.state.sessions) == 0


def test_logout_with_a_foreign_origin_is_refused(client: TestClient) -> None:
    alice = sign_in(client, "alice")
    response = client.post("/_edge/logout", headers=as_user(alice, origin="http://evil.com"))
    assert response.status_code == 403
    assert received(client.get("/", headers=as_user(alice)))["service"] == "agent"


def test_logout_ends_the_session(client: TestClient, app: Starlette) -> None:
    alice = sign_in(client, "alice")
    response = client.post("/_edge/logout", headers=as_user(alice, origin=EDGE))
    assert response.status_code == 303
    assert response.headers["location"] == "/_edge/login"
    cleared = response.headers["set-cookie"].lower()
    assert cleared.startswith(f"{edge.COOKIE}=")
    assert "max-age=0" in cleared
    assert len(app.state.sessions) == 0
    again = client.get("/app/chat", headers=as_user(alice))
    assert again.status_code == 302
    assert again.headers["location"].startswith("/_edge/login?")


def test_healthz(client: TestClient) -> None:
    response = client.get("/_edge/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "service": "edge"}


# -- browser routes -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/app/chat?x=1&y=%2F", "/oauth2/connections"])
def test_browser_route_without_a_session_get_redirects_to_login(
    client: TestClient, router: HostRouter, path: str
) -> None:
    response = client.get(path)
    assert response.status_code == 302
    location = urlsplit(response.headers["location"])
    assert location.path == "/_edge/login"
    assert not location.netloc
    assert parse_qs(location.query) == {"next": [path]}
    assert not router.hits


@pytest.mark.parametrize(
    "path",
    [
        "/app/chat",
        "/oauth2/connections/mock/disconnect",
        "/oauth2/actions/act-1/approve",
        "/oauth2/actions/act-1/deny",
    ],
)
def test_browser_route_without_a_session_post_redirects_to_sign_in(
    client: TestClient, router: HostRouter, path: str
) -> None:
    """As authenticate-cognito: a 302 to sign-in whatever the method; the POST's body cannot
    be replayed, so sign-in then leads home."""
    response = client.post(path, json={"message": "hi"})
    assert response.status_code == 302
    location = urlsplit(response.headers["location"])
    assert (location.netloc, location.path) == ("", "/_edge/login")
    assert parse_qs(location.query) == {"next": ["/"]}
    assert response.headers["cache-control"] == "no-store"
    assert not router.hits


@pytest.mark.parametrize(
    "path",
    [
        "/oauth2/client-metadata/atlassian-mcp.json",
        "/oauth2/client-metadata/a.json",
        "/oauth2/client-metadata/0.json",
        "/oauth2/client-metadata/" + "a" * 32 + ".json",
        "/oauth2/client-metadata/crm-tools-2.json",
    ],
)
def test_a_client_metadata_document_is_served_without_a_session(
    client: TestClient, router: HostRouter, path: str
) -> None:
    """MCP authorization servers fetch the binder's Client ID Metadata Document of a provider
    with no session: the only /oauth2/ requests the edge passes unauthenticated, as the ALB's
    rule, and with no identity header."""
    response = client.get(path, headers={"x-amzn-oidc-data": "forged"})
    assert response.status_code == 200
    seen = response.json()
    assert (seen["service"], seen["method"], seen["path"]) == ("binder", "GET", path)
    assert not [k for k, _ in seen["headers"] if k.startswith("x-amzn-oidc-")]
    assert router.hits == Counter({BINDER_HOST: 1})


@pytest.mark.parametrize(
    ("method", "path"),
    [
        # The single shared document of before, and its lookalikes.
        ("GET", "/oauth2/client-metadata.json"),
        ("GET", "/oauth2/client-metadata.json/x"),
        ("GET", "/oauth2/client-metadataX/a.json"),
        ("GET", "/oauth2/client-metadata-x/a.json"),
        # Under the prefix, but not a provider name's document.
        ("GET", "/oauth2/client-metadata/"),
        ("GET", "/oauth2/client-metadata/.json"),
        ("GET", "/oauth2/client-metadata/a"),
        ("GET", "/oauth2/client-metadata/a.jsonx"),
        ("GET", "/oauth2/client-metadata/a.JSON"),
        ("GET", "/oauth2/client-metadata/A.json"),
        ("GET", "/oauth2/client-metadata/-a.json"),
        ("GET", "/oauth2/client-metadata/a-.json"),
        ("GET", "/oauth2/client-metadata/a_b.json"),
        ("GET", "/oauth2/client-metadata/" + "a" * 33 + ".json"),
        ("GET", "/oauth2/client-metadata/a/b.json"),
        ("GET", "/oauth2/client-metadata/a.json/x"),
        ("GET", "/oauth2/client-metadata/a.json%0A"),
        ("GET", "/oauth2/client-metadata/a%2Fb.json"),
        ("GET", "/oauth2/Client-Metadata/a.json"),
        # Another method on a document.
        ("POST", "/oauth2/client-metadata/a.json"),
        ("PUT", "/oauth2/client-metadata/a.json"),
        ("DELETE", "/oauth2/client-metadata/a.json"),
        ("HEAD", "/oauth2/client-metadata/a.json"),
        ("OPTIONS", "/oauth2/client-metadata/a.json"),
        # The rest of /oauth2/.
        ("GET", "/oauth2/callback/x"),
        ("GET", "/oauth2/connections"),
    ],
)
def test_nothing_else_under_oauth2_is_served_without_a_session(
    client: TestClient, router: HostRouter, method: str, path: str
) -> None:
    response = client.request(method, path)
    assert response.status_code == 302
    assert urlsplit(response.headers["location"]).path == "/_edge/login"
    assert not router.hits


def test_the_dev_edge_passes_the_documents_of_the_names_the_binder_accepts() -> None:
    """Within the ALB's pattern, and for exactly the provider names the binder's schema takes."""
    from binder.providers import schema
    from constructs.edge import CLIENT_METADATA_PATTERN, CLIENT_METADATA_PREFIX

    assert edge.CLIENT_METADATA_PREFIX == CLIENT_METADATA_PREFIX
    assert CLIENT_METADATA_PATTERN == CLIENT_METADATA_PREFIX + "*.json"
    name = schema._NAME_RE.pattern  # the one definition of a provider name
    expected = re.escape(CLIENT_METADATA_PREFIX) + name + r"\.json"
    assert edge.CLIENT_METADATA_DOCUMENT.pattern == expected


def test_an_unknown_session_cookie_is_no_session(client: TestClient) -> None:
    response = client.get("/", headers=as_user("not-a-session"))
    assert response.status_code == 302


def test_redirect_after_login_lands_on_the_page(client: TestClient) -> None:
    first = client.get("/app/chat?x=1")
    login_url = first.headers["location"]
    (next_path,) = parse_qs(urlsplit(login_url).query)["next"]
    page = client.get(login_url).text
    assert 'name="next" value="/app/chat?x=1"' in page
    response = client.post(
        "/_edge/login",
        data={"username": "alice", "password": PASSWORDS["alice"], "next": next_path},
        headers={"origin": EDGE},
    )
    assert response.headers["location"] == "/app/chat?x=1"
    echo = received(client.get(response.headers["location"]))  # the client's own jar
    assert echo["path"] == "/app/chat"
    assert echo["query"] == "x=1"


def test_session_reaches_the_agent_with_the_users_access_token(
    client: TestClient, app: Starlette, pool: Pool
) -> None:
    alice = sign_in(client, "alice")
    (session,) = app.state.sessions.values()
    for path in ("/", "/app/chat"):
        echo = received(client.get(path, headers=as_user(alice)))
        assert echo["service"] == "agent"
        assert echo["path"] == path
        (token,) = header_values(echo, "x-amzn-oidc-accesstoken")
        assert token == session.access_token
        assert pool.username_of(token) == "alice"


def test_session_reaches_the_binder_on_oauth2(client: TestClient, pool: Pool) -> None:
    alice = sign_in(client, "alice")
    response = client.get("/oauth2/connections?disconnected=mock", headers=as_user(alice))
    echo = received(response)
    assert echo["service"] == "binder"
    assert echo["path"] == "/oauth2/connections"
    assert echo["query"] == "disconnected=mock"
    (token,) = header_values(echo, "x-amzn-oidc-accesstoken")
    assert pool.username_of(token) == "alice"
    assert response.headers["x-upstream"] == "binder"


def test_method_body_query_and_forwarding_headers_are_passed_on(client: TestClient) -> None:
    alice = sign_in(client, "alice")
    echo = received(
        client.post(
            "/app/chat?trace=1",
            content=b'{"message": "hello"}',
            headers=as_user(
                alice,
                **{
                    "content-type": "application/json",
                    "x-custom": "kept",
                    "x-forwarded-for": "10.9.8.7",
                    "connection": "keep-alive, x-hop",
                    "x-hop": "dropped",
                    "proxy-authorization": "Basic secret",
                },
            ),
        )
    )
    assert echo["method"] == "POST"
    assert echo["query"] == "trace=1"
    assert echo["body"] == '{"message": "hello"}'
    assert header_values(echo, "content-type") == ["application/json"]
    assert header_values(echo, "x-custom") == ["kept"]
    assert header_values(echo, "x-forwarded-for") == ["10.9.8.7, testclient"]
    assert header_values(echo, "x-forwarded-proto") == ["http"]
    assert header_values(echo, "x-forwarded-host") == ["127.0.0.1:8100"]
    assert header_values(echo, "host") == [AGENT_HOST]
    assert not header_values(echo, "x-hop")
    assert not header_values(echo, "proxy-authorization")


def test_a_client_sent_identity_header_is_replaced_on_browser_routes(
    client: TestClient, pool: Pool
) -> None:
    alice = sign_in(client, "alice")
    forged = {
        "x-amzn-oidc-accesstoken": "forged.token.value",
        "x-amzn-oidc-data": "forged",
        "x-amzn-oidc-identity": "bob",
    }
    echo = received(client.get("/app/chat", headers=as_user(alice, **forged)))
    (token,) = header_values(echo, "x-amzn-oidc-accesstoken")
    assert token != "forged.token.value"
    assert pool.username_of(token) == "alice"
    assert oidc_headers(echo) == ["x-amzn-oidc-accesstoken"]


def test_the_edge_cookie_is_not_forwarded_but_other_cookies_are(client: TestClient) -> None:
    alice = sign_in(client, "alice")
    echo = received(
        client.get("/", headers={"cookie": f"theme=dark; {edge.COOKIE}={alice}; lang=en"})
    )
    assert header_values(echo, "cookie") == ["theme=dark; lang=en"]
    echo = received(client.get("/", headers=as_user(alice)))
    assert not header_values(echo, "cookie")
    assert all(alice not in value for _, value in echo["headers"])


def test_two_users_sessions_stay_separate(client: TestClient, pool: Pool) -> None:
    alice = sign_in(client, "alice")
    bob = sign_in(client, "bob")
    assert alice != bob
    for session_id, user in [(alice, "alice"), (bob, "bob"), (alice, "alice")]:
        echo = received(client.get("/app/chat", headers=as_user(session_id)))
        (token,) = header_values(echo, "x-amzn-oidc-accesstoken")
        assert pool.username_of(token) == user
    # Upstream cookies set in one user's response never reach another user's request.
    client.get("/oauth2/authorize/redirect", headers=as_user(alice))
    echo = received(client.get("/oauth2/connections", headers=as_user(bob)))
    assert not header_values(echo, "cookie")


def test_an_expiring_access_token_is_refreshed(
    client: TestClient, app: Starlette, pool: Pool
) -> None:
    alice = sign_in(client, "alice")
    (session,) = app.state.sessions.values()
    old = session.access_token
    session.expires_at = time.time() + 30  # within the 60 s margin
    echo = received(client.get("/", headers=as_user(alice)))
    (token,) = header_values(echo, "x-amzn-oidc-accesstoken")
    assert token != old
    assert pool.username_of(token) == "alice"
    assert session.access_token == token
    assert session.expires_at > time.time() + 3000


def test_a_failed_refresh_means_signing_in_again(client: TestClient, app: Starlette) -> None:
    alice = sign_in(client, "alice")
    (session,) = app.state.sessions.values()
    session.expires_at = time.time() - 1
    session.refresh_token = "revoked"
    response = client.get("/app/chat", headers=as_user(alice))
    assert response.status_code == 302
    assert response.headers["location"] == "/_edge/login?next=%2Fapp%2Fchat"
    assert len(app.state.sessions) == 0
    again = client.post("/app/chat", headers=as_user(alice))
    assert again.status_code == 302
    assert again.headers["location"] == "/_edge/login?next=%2F"


def test_a_session_ends_after_session_seconds(client: TestClient, app: Starlette) -> None:
    alice = sign_in(client, "alice")
    (session,) = app.state.sessions.values()
    assert session.ends_at == pytest.approx(time.time() + 8 * 3600, abs=60)
    session.ends_at = time.time() - 1
    assert client.get("/", headers=as_user(alice)).status_code == 302
    assert len(app.state.sessions) == 0


# -- approval routes (/oauth2/actions/*): the session cookie is the only identity -----------------


def cognito_token(pool: Pool, user: str) -> str:
    """A real, valid Cognito access token for `user`, as a bearer-token holder would have it."""
    result = pool.client.initiate_auth(
        ClientId=pool.client_id,
        AuthFlow="USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": user, "PASSWORD": PASSWORDS[user]},
    )
    return str(result["AuthenticationResult"]["AccessToken"])


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/oauth2/actions/act-1"),
        ("POST", "/oauth2/actions/act-1/approve"),
        ("POST", "/oauth2/actions/act-1/deny"),
        ("GET", "/oauth2/connections"),
    ],
)
def test_a_bearer_token_without_a_session_never_reaches_the_binder(
    client: TestClient, router: HostRouter, pool: Pool, method: str, path: str
) -> None:
    """Whoever holds a user's bearer token (the agent) cannot act on /oauth2/* as that user:
    with no session cookie the edge answers with sign-in, as the ALB does, and the binder is
    never asked, neither with the bearer nor with an identity header the caller made up."""
    token = cognito_token(pool, "alice")
    response = client.request(
        method,
        path,
        json={} if method == "POST" else None,
        headers={
            "authorization": f"Bearer {token}",
            "x-amzn-oidc-accesstoken": token,
            "origin": EDGE,
            "sec-fetch-site": "same-origin",
        },
    )
    assert response.status_code == 302
    assert urlsplit(response.headers["location"]).path == "/_edge/login"
    assert token not in response.text
    assert not router.hits


def test_a_client_sent_identity_header_is_replaced_on_approval_routes(
    client: TestClient, pool: Pool
) -> None:
    """Bob's valid access token sent by the client as x-amzn-oidc-accesstoken is dropped: the
    binder receives only the token of the session's user (alice)."""
    alice = sign_in(client, "alice")
    bobs = cognito_token(pool, "bob")
    forged = {
        "x-amzn-oidc-accesstoken": bobs,
        "X-Amzn-Oidc-Data": "forged",
        "x-amzn-oidc-identity": "bob",
    }
    for method, path in (
        ("GET", "/oauth2/actions/act-1"),
        ("POST", "/oauth2/actions/act-1/approve"),
        ("POST", "/oauth2/actions/act-1/deny"),
    ):
        echo = received(client.request(method, path, headers=as_user(alice, **forged)))
        assert echo["service"] == "binder"
        assert echo["path"] == path
        assert oidc_headers(echo) == ["x-amzn-oidc-accesstoken"]
        (token,) = header_values(echo, "x-amzn-oidc-accesstoken")
        assert token != bobs
        assert pool.username_of(token) == "alice"
        assert all(bobs not in value for _, value in echo["headers"])


@pytest.mark.parametrize("path", ["/", "/app/chat", "/oauth2/actions/act-1", "/api/chat"])
@pytest.mark.parametrize("signed_in", [True, False])
def test_client_sent_identity_headers_never_reach_an_upstream_on_any_path(
    client: TestClient, pool: Pool, path: str, signed_in: bool
) -> None:
    bobs = cognito_token(pool, "bob")
    headers = {"x-amzn-oidc-accesstoken": bobs, "x-amzn-oidc-identity": "bob"}
    if signed_in:
        headers = as_user(sign_in(client, "alice"), **headers)
    response = client.post(path, json={}, headers=headers)
    if not signed_in and not path.startswith("/api/"):
        assert response.status_code == 302  # no session: sign in first
        return
    echo = received(response)
    assert all(bobs not in value for _, value in echo["headers"])
    assert "bob" not in header_values(echo, "x-amzn-oidc-identity")
    if path.startswith("/api/"):
        assert oidc_headers(echo) == []
    else:
        (token,) = header_values(echo, "x-amzn-oidc-accesstoken")
        assert pool.username_of(token) == "alice"


def test_an_approval_post_from_the_chat_page_passes_through_intact(
    client: TestClient, pool: Pool
) -> None:
    """The chat page's fetch (same origin, JSON) reaches the binder with the Origin and
    Sec-Fetch-* headers its same-origin check reads, the body, and the session user's token."""
    alice = sign_in(client, "alice")
    fetch_headers = {
        "origin": EDGE,
        "referer": f"{EDGE}/",
        "sec-fetch-site": "same-origin",
        "sec-fetch-mode": "cors",
        "sec-fetch-dest": "empty",
        "content-type": "application/json",
        "accept": "application/json",
    }
    response = client.post(
        "/oauth2/actions/act-1%2Fx/approve?from=chat",
        content=b'{"arguments_sha256": "ab"}',
        headers=as_user(alice, **fetch_headers),
    )
    echo = received(response)
    assert response.headers["x-upstream"] == "binder"
    assert echo["method"] == "POST"
    assert echo["query"] == "from=chat"
    assert echo["body"] == '{"arguments_sha256": "ab"}'
    for name, value in fetch_headers.items():
        assert header_values(echo, name) == [value], name
    (token,) = header_values(echo, "x-amzn-oidc-accesstoken")
    assert pool.username_of(token) == "alice"


def test_a_foreign_origin_is_passed_on_for_the_binder_to_refuse(client: TestClient) -> None:
    """The edge, like the ALB, does not judge origins on proxied routes: the binder's check
    sees exactly what the browser sent."""
    alice = sign_in(client, "alice")
    echo = received(
        client.post(
            "/oauth2/actions/act-1/approve",
            headers=as_user(
                alice, origin="https://evil.example", **{"sec-fetch-site": "cross-site"}
            ),
        )
    )
    assert header_values(echo, "origin") == ["https://evil.example"]
    assert header_values(echo, "sec-fetch-site") == ["cross-site"]


def test_with_a_session_an_authorization_header_is_passed_on_beside_the_sessions_token(
    client: TestClient, pool: Pool
) -> None:
    """The ALB forwards a client's Authorization header unchanged, so the edge does too: the
    binder's approval routes must read the identity from x-amzn-oidc-accesstoken alone."""
    alice = sign_in(client, "alice")
    bobs = cognito_token(pool, "bob")
    echo = received(
        client.post(
            "/oauth2/actions/act-1/approve",
            headers=as_user(alice, authorization=f"Bearer {bobs}"),
        )
    )
    assert header_values(echo, "authorization") == [f"Bearer {bobs}"]
    (token,) = header_values(echo, "x-amzn-oidc-accesstoken")
    assert pool.username_of(token) == "alice"


# -- API routes -----------------------------------------------------------------------------------


def test_api_reaches_the_agent_without_sign_in_and_without_identity_headers(
    client: TestClient,
) -> None:
    echo = received(
        client.post(
            "/api/chat",
            json={"message": "hi"},
            headers={
                "authorization": "Bearer caller-token",
                "x-amzn-oidc-accesstoken": "forged.token.value",
                "x-amzn-oidc-data": "forged",
                "x-amzn-oidc-identity": "bob",
            },
        )
    )
    assert echo["service"] == "agent"
    assert echo["path"] == "/api/chat"
    assert header_values(echo, "authorization") == ["Bearer caller-token"]
    assert oidc_headers(echo) == []


def test_api_with_a_session_cookie_still_carries_no_identity_header(client: TestClient) -> None:
    alice = sign_in(client, "alice")
    echo = received(client.post("/api/chat", json={}, headers=as_user(alice)))
    assert oidc_headers(echo) == []
    assert not header_values(echo, "cookie")


# -- everything else ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/internal/tokens",
        "/internal/connections",
        "/whatever",
        "/oauth2",
        "/app",
        "/api",
        "/healthz",
        "/oauth2/../internal/tokens",
        "/app/%2e%2e/internal/tokens",
    ],
)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_other_paths_are_not_found_and_never_reach_an_upstream(
    client: TestClient, router: HostRouter, path: str, method: str
) -> None:
    alice = sign_in(client, "alice")
    response = client.request(method, path, headers=as_user(alice))
    assert response.status_code == 404
    assert response.text == "Not found"
    assert response.headers["content-type"].startswith("text/plain")
    assert not router.hits


# -- upstream behaviour ---------------------------------------------------------------------------


def test_upstream_redirects_pass_through_unchanged(client: TestClient) -> None:
    alice = sign_in(client, "alice")
    response = client.get("/oauth2/authorize/redirect", headers=as_user(alice))
    assert response.status_code == 302
    assert response.headers["location"] == PROVIDER_AUTHORIZE
    cookies = response.headers.get_list("set-cookie")
    assert any(c.startswith("upstream_cookie=kept") for c in cookies)
    assert not any(c.startswith(f"{edge.COOKIE}=") for c in cookies)


def test_head_requests_are_proxied(client: TestClient) -> None:
    alice = sign_in(client, "alice")
    response = client.head("/app/chat", headers=as_user(alice))
    assert response.status_code == 200
    assert response.headers["x-upstream"] == "agent"
    assert response.content == b""


def test_an_unreachable_upstream_is_a_502_naming_it(pool: Pool) -> None:
    closed_port = procs.free_port()
    config = make_config(
        pool,
        agent=f"http://{procs.LOOPBACK}:{closed_port}",
        binder_public=f"http://{BINDER_HOST}",
    )
    router = HostRouter({})
    app = edge.create_edge(config, cognito_client=pool.client, transport=None)
    with TestClient(app, base_url=EDGE, follow_redirects=False) as client:
        response = client.post("/api/chat", json={"message": "hi"})
        assert response.status_code == 502
        assert response.text == "Upstream agent unavailable"
    app = edge.create_edge(config, cognito_client=pool.client, transport=router)
    with TestClient(app, base_url=EDGE, follow_redirects=False) as client:
        alice = sign_in(client, "alice")
        response = client.get("/oauth2/connections", headers=as_user(alice))
        assert response.status_code == 502
        assert response.text == "Upstream binder unavailable"


def test_an_upstream_timeout_is_a_502(pool: Pool) -> None:
    app = edge.create_edge(make_config(pool), cognito_client=pool.client, transport=TimesOut())
    with TestClient(app, base_url=EDGE, follow_redirects=False) as client:
        response = client.post("/api/chat", json={"message": "hi"})
        assert response.status_code == 502
        assert response.text == "Upstream agent unavailable"


@pytest.mark.anyio
async def test_concurrent_refreshes_ask_cognito_once(pool: Pool, router: HostRouter) -> None:
    calls: Counter[str] = Counter()

    class CountingCognito:
        def initiate_auth(self, **kwargs: Any) -> Any:
            calls[kwargs["AuthFlow"]] += 1
            return pool.client.initiate_auth(**kwargs)

    app = edge.create_edge(make_config(pool), cognito_client=CountingCognito(), transport=router)
    async with app.router.lifespan_context(app):
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url=EDGE) as browser:
            response = await browser.post(
                "/_edge/login",
                data={"username": "alice", "password": PASSWORDS["alice"]},
                headers={"origin": EDGE},
            )
            assert response.status_code == 303
            session_id = response.cookies[edge.COOKIE]
            browser.cookies.clear()
            (session,) = app.state.sessions.values()
            session.expires_at = 0
            async with anyio.create_task_group() as group:
                for _ in range(5):
                    group.start_soon(
                        functools.partial(browser.get, "/app/chat", headers=as_user(session_id))
                    )
    assert calls == {"USER_PASSWORD_AUTH": 1, "REFRESH_TOKEN_AUTH": 1}
