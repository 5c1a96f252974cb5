"""The OIDC family (UserInfo) and the base-URL rule every family shares."""

from __future__ import annotations

import pytest

from agent.tools.github import GithubWhoami
from agent.tools.oidc import OidcWhoami
from tests.agent.tools.helpers import (
    USERINFO,
    USERINFO_BODY,
    Api,
    answer,
    assert_bearer,
    run,
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_oidc_whoami_hyphenated_provider() -> None:
    api = Api(answer(USERINFO_BODY))
    tool = OidcWhoami("corp-sso", USERINFO)
    assert tool.spec.name == "corp_sso_whoami"
    assert tool.spec.provider == "corp-sso"
    assert tool.spec.scopes == ("openid", "profile")
    result = await run(tool, api)
    request = api.only
    assert request.method == "GET"
    assert str(request.url) == USERINFO
    assert_bearer(request)
    assert request.headers["accept"] == "application/json"
    assert result == {
        "sub": "248289761001",
        "name": "Jane Doe",
        "email": "janedoe@example.com",
        "preferred_username": "j.doe",
    }


@pytest.mark.anyio
async def test_oidc_whoami_returns_only_present_claims() -> None:
    api = Api(answer({"sub": "u-1", "email_verified": False}))
    assert await run(OidcWhoami("okta", USERINFO), api) == {"sub": "u-1"}


@pytest.mark.parametrize(
    ("provider", "endpoint"),
    [
        ("Corp", USERINFO),
        ("corp_sso", USERINFO),
        ("-corp", USERINFO),
        ("corp", "http://sso.example.test/userinfo"),
        ("corp", "https://user:pw@sso.example.test/userinfo"),
        ("corp", "/userinfo"),
    ],
)
def test_oidc_whoami_rejects_bad_configuration(provider: str, endpoint: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        OidcWhoami(provider, endpoint)


def test_http_only_on_loopback() -> None:
    OidcWhoami("local", "http://127.0.0.1:9400/userinfo")
    GithubWhoami(api_base="http://localhost:8000")
    with pytest.raises(ValueError, match="https"):
        GithubWhoami(api_base="http://github.api.test")
