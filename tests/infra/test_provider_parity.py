"""`allowed_scopes: []` reaches the binder through synth (issue 9).

The table that holds synth's and the binder's provider validation to the same decisions is
tests/binder/providers/entries.py, run by tests/binder/providers/test_entries.py without a
synth; this file keeps the one check that needs the synthesized template.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from binder.providers.registry import ProviderRegistry
from binder.providers.spec import validate_scopes
from tests.binder.providers.entries import ARN, gh
from tests.infra.conftest import example_context

# -- allowed_scopes: [] ---------------------------------------------------------------------


def _providers_env(template: Mapping[str, Any]) -> str:
    """The binder's PROVIDERS as synthesized, with the secret ARNs' tokens filled in."""
    for resource in template["Resources"].values():
        if resource["Type"] != "AWS::ECS::TaskDefinition":
            continue
        for container in resource["Properties"]["ContainerDefinitions"]:
            for variable in container.get("Environment", []):
                if variable["Name"] == "PROVIDERS":
                    value = variable["Value"]
                    if isinstance(value, str):
                        return value
                    parts = value["Fn::Join"][1]
                    return "".join(p if isinstance(p, str) else ARN for p in parts)
    raise AssertionError("no PROVIDERS variable in the template")


@pytest.mark.synth
def test_an_empty_allow_list_reaches_the_binder_and_allows_only_the_defaults(
    tmp_path: Path,
) -> None:
    """`allowed_scopes: []` means nothing beyond the defaults, end to end: the synthesized task
    definition carries it, and a binder built from that entry refuses any other scope."""
    from tests.infra.conftest import _use_node_24

    _use_node_24()
    import aws_cdk as cdk
    from aws_cdk.assertions import Template

    from app import build

    context = example_context()
    providers = {**context["providers"], "google": {**gh(), "allowed_scopes": []}}
    app = cdk.App(outdir=str(tmp_path), context={**context, "providers": providers})
    _, _, services = build(app)
    text = _providers_env(Template.from_stack(services).to_json())

    (google,) = [e for e in json.loads(text) if e["name"] == "google"]
    assert google["allowed_scopes"] == []
    registry = ProviderRegistry.from_json(text)

    async def spec() -> Any:
        async with httpx2.AsyncClient() as http:  # built-ins resolve without a request
            return await registry.get("google", http)

    google_spec = anyio.run(spec)
    with pytest.raises(ValueError, match="not allowed for provider 'google'"):
        validate_scopes(google_spec, ["https://www.googleapis.com/auth/calendar.readonly"])
    with pytest.raises(ValueError, match="not allowed"):
        validate_scopes(google_spec, ["profile"])
    # The defaults are requested anyway; naming one adds nothing.
    assert validate_scopes(google_spec, ["openid"]) == ("openid",)
