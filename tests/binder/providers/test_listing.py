"""What the binder shows of its providers: `GET /internal/providers` for the agent, and the
display names on its own pages (consent success, connections, approval)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.binder.conftest import (
    INTERNAL,
    PROVIDER_CLIENT_ID,
    PROVIDER_URL,
    PUBLIC,
    Cognito,
    Harness,
    provider_entry,
    running_binder,
)

GITHUB_CLIENT_ID = "Iv1.listing-client"
CRM = {
    "name": "crm",
    "kind": "oauth2",
    "client_id": "crm-client",
    "authorization_endpoint": "https://crm.example.com/authorize",
    "token_endpoint": "https://crm.example.com/token",
}


@pytest.fixture
def listed(aws: dict[str, Any], cognito: Cognito) -> Iterator[Harness]:
    entries = [
        {"name": "gh", "kind": "github", "client_id": GITHUB_CLIENT_ID},
        {**provider_entry(aws["secret_arn"]), "display_name": "Fake Corp"},
        CRM,
    ]
    with running_binder(aws, cognito, PROVIDERS=json.dumps(entries)) as harness:
        yield harness


def test_the_agent_gets_names_and_display_names_in_configured_order(listed: Harness) -> None:
    alice = listed.cognito.token("alice")
    response = listed.client.get(
        f"{INTERNAL}/internal/providers", headers={"authorization": f"Bearer {alice}"}
    )
    assert response.status_code == 200
    assert response.json() == {
        "providers": [
            {"name": "gh", "kind": "github", "display_name": "GitHub"},
            {"name": "fake", "kind": "oidc", "display_name": "Fake Corp"},
            {"name": "crm", "kind": "oauth2", "display_name": "crm"},
        ]
    }
    # Names only: no client id, secret ARN, issuer or endpoint.
    for secret in (GITHUB_CLIENT_ID, PROVIDER_CLIENT_ID, listed.secret_arn, PROVIDER_URL):
        assert secret not in response.text
    assert "https://" not in response.text


def test_the_list_is_for_signed_in_users_only(listed: Harness) -> None:
    anonymous = listed.client.get(f"{INTERNAL}/internal/providers")
    assert anonymous.status_code == 401
    forged = listed.client.get(
        f"{INTERNAL}/internal/providers",
        headers={"authorization": f"Bearer {Cognito().token('alice')}"},
    )
    assert forged.status_code == 401
    # The list is on the internal port only: the ALB's port does not route it.
    alice = listed.cognito.token("alice")
    public = listed.client.get(
        f"{PUBLIC}/internal/providers", headers={"authorization": f"Bearer {alice}"}
    )
    assert public.status_code == 404


def test_pages_show_the_display_name(listed: Harness) -> None:
    alice = listed.cognito.token("alice")
    done = listed.connect(alice)
    assert done.status_code == 200
    assert "Fake Corp is connected" in done.text
    page = listed.client.get(
        f"{PUBLIC}/oauth2/connections", headers={"x-amzn-oidc-accesstoken": alice}
    )
    assert "<strong>Fake Corp</strong><span class=kind>fake</span>" in page.text
    assert 'aria-label="Disconnect Fake Corp"' in page.text
    assert 'action="/oauth2/connections/fake/disconnect"' in page.text
    notice = listed.client.get(
        f"{PUBLIC}/oauth2/connections?disconnected=fake&revoked=yes",
        headers={"x-amzn-oidc-accesstoken": alice},
    )
    assert "Fake Corp was disconnected" in notice.text


def test_the_approval_page_shows_the_display_name_and_the_name(listed: Harness) -> None:
    alice = listed.cognito.token("alice")
    proposal = listed.client.post(
        f"{INTERNAL}/internal/actions",
        json={"provider": "fake", "tool": "create_note", "arguments": {}, "turn_id": "t-1"},
        headers={"authorization": f"Bearer {alice}"},
    )
    assert proposal.status_code == 201, proposal.text
    shown = listed.client.get(
        f"{PUBLIC}/oauth2/actions/{proposal.json()['action_id']}",
        headers={"x-amzn-oidc-accesstoken": alice},
    )
    assert shown.status_code == 200
    assert "<title>Approve create_note on Fake Corp?</title>" in shown.text
    assert "<td>Fake Corp<span class=kind>fake</span></td>" in shown.text
