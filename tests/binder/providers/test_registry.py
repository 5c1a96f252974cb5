"""The kind registry and the runtime ProviderRegistry (binder.providers.registry)."""

from __future__ import annotations

import json
import pkgutil
import textwrap
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from binder import providers
from binder.providers.registry import (
    BUILTIN_KINDS,
    DISCOVERY_FAILURE_SECONDS,
    GENERIC_KINDS,
    INFRASTRUCTURE,
    KINDS,
    PendingProvider,
    ProviderRegistry,
    build_spec,
    collect_kinds,
)
from binder.providers.schema import ProviderConfigError, ProviderDiscoveryError, parse_entry
from binder.providers.spec import ProviderSpec
from tests.binder.providers.support import (
    ISSUER,
    TENANT,
    client,
    discovery_doc,
    providers_json,
    serve,
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# --- kinds, found by module -----------------------------------------------------------------


def test_every_kind_module_is_found_without_a_list() -> None:
    modules = {m.name for m in pkgutil.iter_modules(providers.__path__)} - INFRASTRUCTURE
    assert set(KINDS) == modules
    assert set(BUILTIN_KINDS) | set(GENERIC_KINDS) == set(KINDS)
    assert {"github", "google", "microsoft", "salesforce", "atlassian", "slack"} <= set(
        BUILTIN_KINDS
    )
    assert set(GENERIC_KINDS) == {"oidc", "oauth2", "mcp"}


def _package(root: Path, modules: dict[str, str]) -> tuple[str, list[str]]:
    """A package of `modules` under `root`, named after it (one import per test)."""
    package = root / f"kinds_{root.name}"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name, text in modules.items():
        (package / f"{name}.py").write_text(textwrap.dedent(text))
    return package.name, [str(package)]


KIND_MODULE = """
    from binder.providers.github import build
    from binder.providers.schema import ProviderKind

    KIND = ProviderKind(name="forge", display_name="Forge", build=build)
"""


def test_two_modules_declaring_the_same_kind_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package, path = _package(tmp_path, {"forge": KIND_MODULE, "forge_copy": KIND_MODULE})
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ImportError, match=r"kind 'forge' is declared by both .*forge and"):
        collect_kinds(package, path)


def test_a_kind_module_without_kind_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    modules = {"forge": KIND_MODULE, "helpers": "X = 1\n", "_private": "Y = 2\n"}
    package, path = _package(tmp_path, modules)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ImportError, match=r"\.helpers is a provider kind module without a KIND"):
        collect_kinds(package, path)
    del modules["helpers"]
    (Path(path[0]) / "helpers.py").unlink()
    assert list(collect_kinds(package, path)) == ["forge"]


def test_build_spec_refuses_bad_inputs() -> None:
    with pytest.raises(ProviderConfigError, match="kind"):
        build_spec("oidc", name="x", client_id="c", issuer=ISSUER)
    with pytest.raises(ProviderConfigError, match="kind"):
        build_spec("gitlab", name="x", client_id="c")
    with pytest.raises(ProviderConfigError, match="name"):
        build_spec("github", name="GitHub!", client_id="c")
    with pytest.raises(ProviderConfigError, match="client_id"):
        build_spec("github", name="gh", client_id="")
    with pytest.raises(ProviderConfigError, match="client_id"):
        build_spec("github", name="gh", client_id="has space")
    with pytest.raises(ProviderConfigError, match="secret_arn"):
        build_spec("github", name="gh", client_id="c", secret_arn="not-an-arn")


# --- PROVIDERS (from_json) ----------------------------------------------------------------


def test_from_json_happy_path() -> None:
    text = providers_json(
        {"name": "github", "kind": "github", "client_id": "gh-client"},
        {"name": "m365", "kind": "microsoft", "client_id": "ms-client", "tenant": TENANT},
        {"name": "corp-sso", "kind": "oidc", "client_id": "corp", "issuer": ISSUER},
        {
            "name": "crm",
            "kind": "oauth2",
            "client_id": "crm",
            "authorization_endpoint": "https://crm.example.com/a",
            "token_endpoint": "https://crm.example.com/t",
            "revocation_endpoint": None,
            "scopes": ["read"],
        },
        {"name": "slack", "kind": "slack", "client_id": "1.2", "tenant": None},
    )
    registry = ProviderRegistry.from_json(text)
    assert registry.names() == ("github", "m365", "corp-sso", "crm", "slack")
    assert "corp-sso" in registry
    assert "github" in registry
    assert "nope" not in registry
    assert 42 not in registry


def test_listings_are_names_in_configured_order_with_display_names() -> None:
    text = providers_json(
        {"name": "slack", "kind": "slack", "client_id": "1.2"},
        {"name": "corp-sso", "kind": "oidc", "client_id": "c", "issuer": ISSUER},
        {"name": "sso", "kind": "oidc", "client_id": "c", "issuer": ISSUER, "display_name": "SSO"},
        {"name": "jira", "kind": "atlassian", "client_id": "c", "display_name": "Jira Cloud"},
    )
    registry = ProviderRegistry.from_json(text)
    assert [(p.name, p.kind, p.display_name) for p in registry.listings()] == [
        ("slack", "slack", "Slack"),
        ("corp-sso", "oidc", "corp-sso"),
        ("sso", "oidc", "SSO"),
        ("jira", "atlassian", "Jira Cloud"),
    ]
    assert registry.display_name("sso") == "SSO"
    assert registry.display_name("gone") == "gone"


def test_from_json_empty_list() -> None:
    assert ProviderRegistry.from_json("[]").names() == ()


@pytest.mark.parametrize(
    ("entries", "pattern"),
    [
        (
            [
                {"name": "gh", "kind": "github", "client_id": "a"},
                {"name": "gh", "kind": "google", "client_id": "b"},
            ],
            r"provider 'gh': name is configured more than once",
        ),
        ([{"name": "x", "kind": "gitlab", "client_id": "a"}], r"provider 'x': kind"),
        ([{"name": "x", "client_id": "a"}], r"provider 'x': kind"),
        ([{"name": "gh", "kind": "github"}], r"provider 'gh': client_id is required"),
        ([{"name": "gh", "kind": "github", "client_id": ""}], r"provider 'gh': client_id"),
        ([{"name": "gh", "kind": "github", "client_id": 7}], r"provider 'gh': client_id"),
        ([{"kind": "github", "client_id": "a"}], r"PROVIDERS\[0\]: name"),
        ([{"name": "Bad Name", "kind": "github", "client_id": "a"}], r"PROVIDERS\[0\]: name"),
        (
            [{"name": "gh", "kind": "github", "client_id": "a", "tennant": "x"}],
            r"provider 'gh': 'tennant' is not a known field",
        ),
        (
            [{"name": "gh", "kind": "github", "client_id": "a", "issuer": ISSUER}],
            r"provider 'gh': issuer is not used by kind 'github'",
        ),
        ([{"name": "sso", "kind": "oidc", "client_id": "a"}], r"provider 'sso': issuer"),
        (
            [{"name": "sso", "kind": "oidc", "client_id": "a", "issuer": "http://sso.example.com"}],
            r"provider 'sso': issuer must be an https URL",
        ),
        (
            [
                {
                    "name": "crm",
                    "kind": "oauth2",
                    "client_id": "a",
                    "authorization_endpoint": "https://crm.example.com/a",
                }
            ],
            r"provider 'crm': token_endpoint is required",
        ),
        (
            [
                {
                    "name": "crm",
                    "kind": "oauth2",
                    "client_id": "a",
                    "authorization_endpoint": "http://crm.example.com/a",
                    "token_endpoint": "https://crm.example.com/t",
                }
            ],
            r"provider 'crm': authorization_endpoint must be an https URL",
        ),
        (
            [{"name": "gh", "kind": "github", "client_id": "a", "scopes": "repo"}],
            r"provider 'gh': scopes is not used",
        ),
        (
            [{"name": "gh", "kind": "github", "client_id": "a", "allowed_scopes": "repo"}],
            r"provider 'gh': allowed_scopes must be a list",
        ),
        (
            [{"name": "gh", "kind": "github", "client_id": "a", "allowed_scopes": ["a b"]}],
            r"provider 'gh': allowed_scopes is invalid",
        ),
        (
            [{"name": "gh", "kind": "github", "client_id": "a", "display_name": "a\u202eb"}],
            r"provider 'gh': display_name must be printable",
        ),
        (["github"], r"PROVIDERS\[0\] must be a JSON object"),
    ],
)
def test_from_json_errors(entries: list[Any], pattern: str) -> None:
    with pytest.raises(ProviderConfigError, match=pattern):
        ProviderRegistry.from_json(json.dumps(entries))


@pytest.mark.parametrize("text", ["", "{", '{"name": "gh"}', "null", "[" * 100_000])
def test_from_json_refuses_non_list(text: str) -> None:
    with pytest.raises(ProviderConfigError, match="PROVIDERS"):
        ProviderRegistry.from_json(text)


def loopback_oauth2(url: str) -> str:
    return providers_json(
        {
            "name": "mock",
            "kind": "oauth2",
            "client_id": "local",
            "authorization_endpoint": url + "/authorize",
            "token_endpoint": url + "/token",
        }
    )


@pytest.mark.parametrize(
    "base", ["http://127.0.0.1:9400", "http://localhost:9400", "http://[::1]:9400"]
)
def test_http_loopback_needs_the_flag(base: str) -> None:
    with pytest.raises(ProviderConfigError, match="must be an https URL"):
        ProviderRegistry.from_json(loopback_oauth2(base))
    registry = ProviderRegistry.from_json(loopback_oauth2(base), allow_insecure_loopback=True)
    assert registry.names() == ("mock",)


@pytest.mark.parametrize(
    "base",
    [
        "http://localhost.evil.com",
        "http://127.0.0.1.evil.com",
        "http://127.0.0.2:9400",
        "http://10.0.0.5",
        "http://evil.com",
        "http://127.0.0.1@evil.com",
        "http://localhost:9400@evil.com",
    ],
)
def test_http_non_loopback_refused_even_with_flag(base: str) -> None:
    with pytest.raises(ProviderConfigError, match="authorization_endpoint"):
        ProviderRegistry.from_json(loopback_oauth2(base), allow_insecure_loopback=True)


def test_oidc_loopback_issuer_allowed_with_flag() -> None:
    text = providers_json(
        {"name": "mock", "kind": "oidc", "client_id": "local", "issuer": "http://127.0.0.1:9400"}
    )
    with pytest.raises(ProviderConfigError, match="issuer"):
        ProviderRegistry.from_json(text)
    assert "mock" in ProviderRegistry.from_json(text, allow_insecure_loopback=True)


# --- get() ----------------------------------------------------------------------------------


def oidc_registry() -> ProviderRegistry:
    return ProviderRegistry.from_json(
        providers_json(
            {"name": "github", "kind": "github", "client_id": "gh"},
            {
                "name": "corp-sso",
                "kind": "oidc",
                "client_id": "corp",
                "issuer": ISSUER,
                "scopes": ["profile"],
                "allowed_scopes": ["email"],
                "display_name": "Corp SSO",
            },
        )
    )


@pytest.mark.anyio
async def test_get_builtin_needs_no_fetch() -> None:
    handler, seen = serve(discovery_doc())
    async with client(handler) as http:
        spec = await oidc_registry().get("github", http)
    assert spec.kind == "github"
    assert seen == []


@pytest.mark.anyio
async def test_get_unknown_name_is_key_error() -> None:
    async with client(serve(discovery_doc())[0]) as http:
        with pytest.raises(KeyError):
            await oidc_registry().get("gitlab", http)


@pytest.mark.anyio
async def test_get_resolves_oidc_once_for_concurrent_callers() -> None:
    calls = 0

    async def handler(request: httpx2.Request) -> httpx2.Response:
        nonlocal calls
        calls += 1
        await anyio.sleep(0.05)  # keep the first fetch in flight while the others arrive
        return httpx2.Response(200, json=discovery_doc())

    registry = oidc_registry()
    results: list[ProviderSpec] = []
    async with client(handler) as http:

        async def fetch() -> None:
            results.append(await registry.get("corp-sso", http))

        async with anyio.create_task_group() as tg:
            for _ in range(8):
                tg.start_soon(fetch)
        again = await registry.get("corp-sso", http)

    assert calls == 1
    assert len(results) == 8
    assert all(spec is again for spec in results)
    assert again.default_scopes == ("openid", "offline_access", "profile")
    assert again.allowed_scopes == frozenset({"email"})
    assert again.display_name == "Corp SSO" == registry.display_name("corp-sso")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def oidc_registry_at(clock: FakeClock) -> ProviderRegistry:
    return ProviderRegistry.from_json(
        providers_json(
            {"name": "corp-sso", "kind": "oidc", "client_id": "corp", "issuer": ISSUER},
        ),
        clock=clock,
    )


@pytest.mark.anyio
async def test_failed_discovery_is_remembered_then_retried() -> None:
    responses = [httpx2.Response(503), httpx2.Response(200, json=discovery_doc())]
    calls = 0

    def handler(request: httpx2.Request) -> httpx2.Response:
        nonlocal calls
        calls += 1
        return responses.pop(0)

    clock = FakeClock()
    registry = oidc_registry_at(clock)
    async with client(handler) as http:
        with pytest.raises(ProviderDiscoveryError, match="HTTP 503"):
            await registry.get("corp-sso", http)
        # Within the window: the same error at once, no fetch.
        clock.now += DISCOVERY_FAILURE_SECONDS - 1
        with pytest.raises(ProviderDiscoveryError, match="HTTP 503"):
            await registry.get("corp-sso", http)
        assert calls == 1
        # After it: tried again.
        clock.now += 1
        spec = await registry.get("corp-sso", http)
        assert await registry.get("corp-sso", http) is spec
    assert calls == 2
    assert spec.issuer == ISSUER


@pytest.mark.anyio
async def test_an_unexpected_discovery_failure_is_remembered_without_its_text() -> None:
    """A failure that is not a ProviderConfigError (a parser breaking on a document, a bug)
    is remembered like one, or anyone could repeat it at will; its text may quote a value."""
    calls = 0

    def handler(request: httpx2.Request) -> httpx2.Response:
        nonlocal calls
        calls += 1
        raise RuntimeError("secret-looking detail")

    registry = oidc_registry_at(FakeClock())
    async with client(handler) as http:
        for _ in range(3):
            with pytest.raises(ProviderDiscoveryError) as failed:
                await registry.get("corp-sso", http)
            assert "secret-looking" not in str(failed.value)
            assert "corp-sso" in str(failed.value)
    assert calls == 1


@pytest.mark.anyio
async def test_concurrent_callers_of_a_hanging_discovery_cost_one_attempt() -> None:
    """Twenty callers queued on a discovery that hangs then fails (a server that holds every
    request until its timeout): one fetch, and every caller gets the error as soon as the
    first one does."""
    calls = 0

    async def handler(request: httpx2.Request) -> httpx2.Response:
        nonlocal calls
        calls += 1
        await anyio.sleep(0.2)  # the others arrive and queue on the lock meanwhile
        return httpx2.Response(503)

    registry = oidc_registry_at(FakeClock())
    errors: list[str] = []
    async with client(handler) as http:

        async def fetch() -> None:
            try:
                await registry.get("corp-sso", http)
            except ProviderDiscoveryError as exc:
                errors.append(str(exc))

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                for _ in range(20):
                    tg.start_soon(fetch)
    assert calls == 1
    assert len(errors) == 20
    assert len(set(errors)) == 1


def test_registry_constructor_refuses_duplicates() -> None:
    spec = build_spec("github", name="gh", client_id="c")
    pending = PendingProvider(
        parse_entry({"name": "gh", "kind": "oidc", "issuer": ISSUER, "client_id": "c"})
    )
    with pytest.raises(ProviderConfigError, match="more than once"):
        ProviderRegistry([spec, pending])
