"""The model loop: Bedrock Converse (stubbed, no network). The offline planner: test_planner.py."""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

import boto3
import botocore.exceptions
import pytest
from botocore.stub import Stubber
from botocore.validate import ParamValidator

from agent.model import (
    DEFAULT_SYSTEM_PROMPT,
    STOP_TOOL_ROUND_LIMIT,
    BedrockModel,
    ModelError,
    ModelFailure,
    ModelUnavailable,
    converse_messages,
    refuse_bearer_strings,
    tool_config,
)
from agent.planner import OfflinePlanner
from agent.tools.base import Model, ToolOutcome, ToolSpec, Turn
from agent.tools.registry import default_tools
from tests.agent.model_support import (
    REPOS,
    SECRET,
    WHOAMI,
    FakeExecute,
    outcome,
)

MODEL_ID = "anthropic.claude-test-v1:0"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# --- Bedrock: helpers ---------------------------------------------------------------------------


@pytest.fixture
def client() -> Any:
    return boto3.client(
        "bedrock-runtime",
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
    )


@pytest.fixture
def stubber(client: Any) -> Iterator[Stubber]:
    with Stubber(client) as stub:
        yield stub


@pytest.fixture
def requests(client: Any) -> list[dict[str, Any]]:
    """Every Converse request the client was asked to send, as sent (deep-copied)."""
    seen: list[dict[str, Any]] = []

    def capture(params: dict[str, Any], **_: Any) -> None:
        seen.append(copy.deepcopy(params))

    client.meta.events.register("before-parameter-build.bedrock-runtime.Converse", capture)
    return seen


def converse_reply(content: list[dict[str, Any]], stop: str = "end_turn") -> dict[str, Any]:
    return {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop,
        "usage": {"inputTokens": 10, "outputTokens": 5, "totalTokens": 15},
        "metrics": {"latencyMs": 12},
    }


def tool_use(tool_use_id: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"toolUse": {"toolUseId": tool_use_id, "name": name, "input": arguments}}


def test_implementations_satisfy_the_protocol(client: Any) -> None:
    models: list[Model] = [BedrockModel(client=client, model_id=MODEL_ID), OfflinePlanner()]
    assert models[0].name == f"Amazon Bedrock ({MODEL_ID})"
    assert models[1].name == "offline planner (not a language model)"


# --- Bedrock: the tool loop ---------------------------------------------------------------------


@pytest.mark.anyio
async def test_tool_use_round_trip(
    client: Any, stubber: Stubber, requests: list[dict[str, Any]]
) -> None:
    first = converse_reply(
        [{"text": "Let me check."}, tool_use("tu-1", "mock_whoami", {"verbose": True})],
        stop="tool_use",
    )
    stubber.add_response("converse", first)
    stubber.add_response("converse", converse_reply([{"text": "You are alice@mock."}]))
    content = {"sub": "alice", "email": "alice@mock"}
    execute = FakeExecute({"mock_whoami": outcome("mock_whoami", "mock", "ok", content)})
    model = BedrockModel(client=client, model_id=MODEL_ID, max_tokens=321)

    reply = await model.respond(
        history=[], message="Who am I?", tools=[WHOAMI, REPOS], execute=execute
    )

    stubber.assert_no_pending_responses()
    assert execute.calls == [("mock_whoami", {"verbose": True})]
    assert reply.text == "You are alice@mock."
    assert reply.rounds == 1
    assert reply.stop_reason == "end_turn"
    assert [o.tool for o in reply.outcomes] == ["mock_whoami"]

    assert len(requests) == 2
    initial = requests[0]
    assert initial["modelId"] == MODEL_ID
    assert initial["messages"] == [{"role": "user", "content": [{"text": "Who am I?"}]}]
    assert initial["system"] == [{"text": DEFAULT_SYSTEM_PROMPT}]
    assert initial["inferenceConfig"] == {"maxTokens": 321}
    assert initial["toolConfig"] == {
        "tools": [
            {
                "toolSpec": {
                    "name": s.name,
                    "description": s.description,
                    "inputSchema": {"json": dict(s.input_schema)},
                }
            }
            for s in (WHOAMI, REPOS)
        ]
    }
    assert "guardrailConfig" not in initial

    follow_up = requests[1]["messages"]
    assert follow_up[:1] == initial["messages"]
    assert follow_up[1] == first["output"]["message"]
    assert follow_up[2] == {
        "role": "user",
        "content": [
            {
                "toolResult": {
                    "toolUseId": "tu-1",
                    "content": [{"json": content}],
                    "status": "success",
                }
            }
        ],
    }
    assert requests[1]["toolConfig"] == initial["toolConfig"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("ok", "success"),
        ("error", "error"),
        ("authorization_required", "error"),
        ("approval_required", "error"),
    ],
)
async def test_tool_result_status(
    client: Any, stubber: Stubber, requests: list[dict[str, Any]], status: str, expected: str
) -> None:
    stubber.add_response(
        "converse", converse_reply([tool_use("tu-9", "mock_whoami", {})], stop="tool_use")
    )
    stubber.add_response("converse", converse_reply([{"text": "ok"}]))
    content = {"status": status, "message": "m"}
    execute = FakeExecute({"mock_whoami": outcome("mock_whoami", "mock", status, content)})

    await BedrockModel(client=client, model_id=MODEL_ID).respond(
        history=[], message="hi", tools=[WHOAMI], execute=execute
    )

    result = requests[1]["messages"][-1]["content"][0]["toolResult"]
    assert result == {"toolUseId": "tu-9", "content": [{"json": content}], "status": expected}


@pytest.mark.anyio
async def test_several_tool_uses_in_one_round_run_in_order(
    client: Any, stubber: Stubber, requests: list[dict[str, Any]]
) -> None:
    stubber.add_response(
        "converse",
        converse_reply(
            [tool_use("a", "mock_whoami", {}), tool_use("b", "github_list_repositories", {})],
            stop="tool_use",
        ),
    )
    stubber.add_response("converse", converse_reply([{"text": "Done."}]))
    execute = FakeExecute()

    reply = await BedrockModel(client=client, model_id=MODEL_ID).respond(
        history=[], message="both", tools=[WHOAMI, REPOS], execute=execute
    )

    assert [name for name, _ in execute.calls] == ["mock_whoami", "github_list_repositories"]
    results = [b["toolResult"]["toolUseId"] for b in requests[1]["messages"][-1]["content"]]
    assert results == ["a", "b"]
    assert reply.rounds == 1
    assert [o.tool for o in reply.outcomes] == ["mock_whoami", "github_list_repositories"]


@pytest.mark.anyio
@pytest.mark.parametrize("limit", [0, 1, 3])
async def test_tool_rounds_are_bounded(
    client: Any, stubber: Stubber, requests: list[dict[str, Any]], limit: int
) -> None:
    for i in range(limit + 1):
        stubber.add_response(
            "converse",
            converse_reply(
                [{"text": f"step {i}"}, tool_use(f"tu-{i}", "mock_whoami", {})], stop="tool_use"
            ),
        )
    execute = FakeExecute()
    model = BedrockModel(client=client, model_id=MODEL_ID, max_tool_rounds=limit)

    reply = await model.respond(history=[], message="loop", tools=[WHOAMI], execute=execute)

    stubber.assert_no_pending_responses()
    assert len(requests) == limit + 1  # exactly max_tool_rounds + 1 Converse calls
    assert len(execute.calls) == limit
    assert len(reply.outcomes) == limit
    assert reply.rounds == limit
    assert reply.stop_reason == STOP_TOOL_ROUND_LIMIT
    assert f"tool-round limit of {limit} was reached" in reply.text
    assert reply.text.startswith("step 0")
    assert f"step {limit}" in reply.text


@pytest.mark.anyio
async def test_unknown_tool_is_not_executed(
    client: Any, stubber: Stubber, requests: list[dict[str, Any]]
) -> None:
    stubber.add_response(
        "converse",
        converse_reply(
            [
                tool_use("bad", "delete_everything", {"really": True}),
                tool_use("good", "mock_whoami", {}),
            ],
            stop="tool_use",
        ),
    )
    stubber.add_response("converse", converse_reply([{"text": "I cannot do that."}]))
    execute = FakeExecute()

    reply = await BedrockModel(client=client, model_id=MODEL_ID).respond(
        history=[], message="wipe it", tools=[WHOAMI], execute=execute
    )

    assert execute.calls == [("mock_whoami", {})]
    assert [o.tool for o in reply.outcomes] == ["mock_whoami"]
    bad, good = (b["toolResult"] for b in requests[1]["messages"][-1]["content"])
    assert bad["toolUseId"] == "bad"
    assert bad["status"] == "error"
    assert bad["content"][0]["json"]["error"] == "unknown_tool"
    assert good["status"] == "success"
    assert reply.text == "I cannot do that."


@pytest.mark.anyio
async def test_non_object_tool_input_is_not_executed(
    client: Any, stubber: Stubber, requests: list[dict[str, Any]]
) -> None:
    stubber.add_response(
        "converse",
        converse_reply(
            [{"toolUse": {"toolUseId": "x", "name": "mock_whoami", "input": [1, 2]}}],
            stop="tool_use",
        ),
    )
    stubber.add_response("converse", converse_reply([{"text": "ok"}]))
    execute = FakeExecute()

    await BedrockModel(client=client, model_id=MODEL_ID).respond(
        history=[], message="hi", tools=[WHOAMI], execute=execute
    )

    assert execute.calls == []
    result = requests[1]["messages"][-1]["content"][0]["toolResult"]
    assert result["status"] == "error"
    assert result["content"][0]["json"]["error"] == "invalid_arguments"


@pytest.mark.anyio
async def test_no_token_reaches_the_model(
    client: Any, stubber: Stubber, requests: list[dict[str, Any]]
) -> None:
    """The orchestrator's execute holds a token and uses it; the model sees only the result."""
    stubber.add_response(
        "converse",
        converse_reply([tool_use("t1", "github_list_repositories", {})], stop="tool_use"),
    )
    stubber.add_response(
        "converse", converse_reply([tool_use("t2", "mock_whoami", {})], stop="tool_use")
    )
    stubber.add_response("converse", converse_reply([{"text": "Here you go."}]))
    used_tokens: list[str] = []

    async def execute(name: str, arguments: Mapping[str, Any]) -> ToolOutcome:
        token = SECRET  # what the binder would hand the orchestrator for this one call
        used_tokens.append(token)  # the tool uses it against the provider's API ...
        content = {"repositories": [{"full_name": "octo/app", "private": False}]}
        return ToolOutcome(tool=name, provider="github", status="ok", content=content)

    history = [Turn(role="user", text="hello"), Turn(role="assistant", text="hi")]
    reply = await BedrockModel(client=client, model_id=MODEL_ID).respond(
        history=history, message="list my repos", tools=[REPOS, WHOAMI], execute=execute
    )

    assert used_tokens == [SECRET, SECRET]
    assert len(requests) == 3
    for request in requests:
        sent = json.dumps(request)
        assert SECRET not in sent
        assert "Bearer" not in sent
    assert "octo/app" in json.dumps(requests[-1])  # the result itself did reach the model
    assert SECRET not in reply.text


@pytest.mark.anyio
@pytest.mark.parametrize(
    "content",
    [
        {"authorization": "Bearer abc.def-ghi"},
        {"headers": [{"value": "Authorization: bearer ZXhhbXBsZQ=="}]},
        {"Bearer abc123": "key, not value"},
    ],
)
async def test_bearer_looking_tool_result_is_withheld_not_a_500(
    client: Any, stubber: Stubber, requests: list[dict[str, Any]], content: dict[str, Any]
) -> None:
    """Tool results carry provider text a user (or whoever invites them to a meeting) writes:
    a repository described as "Bearer abc123" used to raise out of the turn, a 500 on demand.
    The result is withheld from the model instead, and the turn goes on."""
    stubber.add_response(
        "converse", converse_reply([tool_use("t", "mock_whoami", {})], stop="tool_use")
    )
    stubber.add_response("converse", converse_reply([{"text": "I could not read that."}]))
    execute = FakeExecute({"mock_whoami": outcome("mock_whoami", "mock", "ok", content)})

    reply = await BedrockModel(client=client, model_id=MODEL_ID).respond(
        history=[], message="hi", tools=[WHOAMI], execute=execute
    )

    assert reply.text == "I could not read that."
    (result,) = requests[1]["messages"][-1]["content"]
    assert result["toolResult"]["status"] == "error"
    assert result["toolResult"]["content"][0]["json"]["error"] == "withheld"
    sent = json.dumps(requests)
    assert "abc" not in sent
    assert "ZXhh" not in sent


def test_bearer_check_ignores_prose() -> None:
    refuse_bearer_strings({"description": "Bearer tokens explained, with examples"})
    refuse_bearer_strings({"items": ["a", 1, None, {"b": ["bearer"]}]})
    with pytest.raises(ValueError, match="bearer"):
        refuse_bearer_strings({"items": [{"deep": ("x", "  Bearer eyJhbGciOi.x.y  ")}]})


# --- Bedrock: request shape ---------------------------------------------------------------------


def test_tool_config_is_plain_json_of_every_tool() -> None:
    """The one builder of Converse's toolConfig (ToolRegistry.bedrock_tool_config was an unused
    second one). A read-only mapping inside a schema used to pass through as is, which
    botocore's parameter check refuses: every Converse call would have failed (a 502)."""
    read_only = ToolSpec(
        name="probe",
        description="A probe.",
        input_schema=MappingProxyType(
            {
                "type": "object",
                "properties": MappingProxyType({"q": MappingProxyType({"type": "string"})}),
                "required": ("q",),
                "additionalProperties": False,
            }
        ),
        provider="github",
        scopes=("repo",),
    )
    specs = [tool.spec for tool in default_tools()] + [read_only]
    config = tool_config(specs)
    assert json.loads(json.dumps(config)) == config  # plain JSON all the way down
    assert list(config) == ["tools"]
    for entry, item in zip(config["tools"], specs, strict=True):
        assert entry == {
            "toolSpec": {
                "name": item.name,
                "description": item.description,
                "inputSchema": {"json": _as_json(item.input_schema)},
            }
        }
    assert config["tools"][-1]["toolSpec"]["inputSchema"]["json"]["required"] == ["q"]
    report = ParamValidator().validate(
        {"modelId": MODEL_ID, "messages": [], "toolConfig": config},
        boto3.client("bedrock-runtime", region_name="us-east-1")
        .meta.service_model.operation_model("Converse")
        .input_shape,
    )
    assert not report.has_errors(), report.generate_report()


def _as_json(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _as_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_as_json(item) for item in value]
    return value


def test_history_merges_same_role_turns_and_drops_leading_assistant() -> None:
    history = [
        Turn(role="assistant", text="Welcome!"),
        Turn(role="assistant", text="Ask me anything."),
        Turn(role="user", text="one"),
        Turn(role="user", text="two"),
        Turn(role="assistant", text="three"),
        Turn(role="assistant", text="   "),
        Turn(role="assistant", text="four"),
        Turn(role="user", text="five"),
    ]

    messages = converse_messages(history, "six")

    assert messages == [
        {"role": "user", "content": [{"text": "one"}, {"text": "two"}]},
        {"role": "assistant", "content": [{"text": "three"}, {"text": "four"}]},
        {"role": "user", "content": [{"text": "five"}, {"text": "six"}]},
    ]
    roles = [m["role"] for m in messages]
    assert roles[0] == "user"
    assert all(a != b for a, b in itertools.pairwise(roles))


def test_history_of_only_assistant_turns() -> None:
    assert converse_messages([Turn(role="assistant", text="hi")], "hello") == [
        {"role": "user", "content": [{"text": "hello"}]}
    ]


def test_blank_message_is_refused() -> None:
    with pytest.raises(ValueError, match="blank"):
        converse_messages([], "  ")


@pytest.mark.anyio
async def test_history_reaches_converse_alternating(
    client: Any, stubber: Stubber, requests: list[dict[str, Any]]
) -> None:
    stubber.add_response("converse", converse_reply([{"text": "fine"}]))
    history = [
        Turn(role="assistant", text="Hello, I am the agent."),
        Turn(role="user", text="hi"),
        Turn(role="user", text="are you there?"),
        Turn(role="assistant", text="yes"),
    ]

    reply = await BedrockModel(client=client, model_id=MODEL_ID).respond(
        history=history, message="how are you", tools=[], execute=FakeExecute()
    )

    assert reply.text == "fine"
    assert reply.rounds == 0
    assert requests[0]["messages"] == [
        {"role": "user", "content": [{"text": "hi"}, {"text": "are you there?"}]},
        {"role": "assistant", "content": [{"text": "yes"}]},
        {"role": "user", "content": [{"text": "how are you"}]},
    ]
    assert "toolConfig" not in requests[0]  # Converse rejects an empty tool list


@pytest.mark.anyio
async def test_guardrail_only_when_configured(
    client: Any, stubber: Stubber, requests: list[dict[str, Any]]
) -> None:
    stubber.add_response("converse", converse_reply([{"text": "a"}]))
    stubber.add_response("converse", converse_reply([{"text": "b"}]))
    plain = BedrockModel(client=client, model_id=MODEL_ID)
    guarded = BedrockModel(
        client=client,
        model_id=MODEL_ID,
        guardrail_id="gr-123",
        guardrail_version="2",
        system_prompt="Be brief.",
    )

    await plain.respond(history=[], message="x", tools=[WHOAMI], execute=FakeExecute())
    await guarded.respond(history=[], message="x", tools=[WHOAMI], execute=FakeExecute())

    assert "guardrailConfig" not in requests[0]
    assert requests[1]["guardrailConfig"] == {
        "guardrailIdentifier": "gr-123",
        "guardrailVersion": "2",
    }
    assert requests[1]["system"] == [{"text": "Be brief."}]


def test_guardrail_id_and_version_go_together(client: Any) -> None:
    with pytest.raises(ValueError, match="guardrail"):
        BedrockModel(client=client, model_id=MODEL_ID, guardrail_id="gr-123")
    with pytest.raises(ValueError, match="max_tool_rounds"):
        BedrockModel(client=client, model_id=MODEL_ID, max_tool_rounds=-1)


# --- Bedrock: errors ----------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("code", "status", "kind"),
    [
        ("ThrottlingException", 429, ModelUnavailable),
        ("ServiceUnavailableException", 503, ModelUnavailable),
        ("ModelNotReadyException", 429, ModelUnavailable),
        ("ModelTimeoutException", 408, ModelUnavailable),
        ("AccessDeniedException", 403, ModelError),
        ("ValidationException", 400, ModelError),
        ("ResourceNotFoundException", 404, ModelError),
    ],
)
async def test_error_mapping(
    client: Any, stubber: Stubber, code: str, status: int, kind: type[ModelFailure]
) -> None:
    private = "my private question about payroll"
    stubber.add_client_error(
        "converse",
        service_error_code=code,
        service_message=f"problem with input: {private}",
        http_status_code=status,
    )

    with pytest.raises(kind) as info:
        await BedrockModel(client=client, model_id=MODEL_ID).respond(
            history=[], message=private, tools=[], execute=FakeExecute()
        )

    assert type(info.value) is kind
    assert info.value.code == code
    assert code in str(info.value)
    assert private not in str(info.value)
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__


@pytest.mark.anyio
async def test_error_on_a_later_round_is_mapped(client: Any, stubber: Stubber) -> None:
    stubber.add_response(
        "converse", converse_reply([tool_use("t", "mock_whoami", {})], stop="tool_use")
    )
    stubber.add_client_error(
        "converse", service_error_code="ThrottlingException", http_status_code=429
    )
    execute = FakeExecute()

    with pytest.raises(ModelUnavailable):
        await BedrockModel(client=client, model_id=MODEL_ID).respond(
            history=[], message="hi", tools=[WHOAMI], execute=execute
        )
    assert len(execute.calls) == 1


class RaisingClient:
    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def converse(self, **_: Any) -> dict[str, Any]:
        raise self.exc


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("exc", "kind", "code"),
    [
        (
            botocore.exceptions.EndpointConnectionError(endpoint_url="https://x"),
            ModelUnavailable,
            "EndpointConnectionError",
        ),
        (
            botocore.exceptions.ReadTimeoutError(endpoint_url="https://x"),
            ModelUnavailable,
            "ReadTimeoutError",
        ),
        (botocore.exceptions.NoCredentialsError(), ModelError, "NoCredentialsError"),
    ],
)
async def test_transport_errors_are_mapped(
    exc: Exception, kind: type[ModelFailure], code: str
) -> None:
    model = BedrockModel(client=RaisingClient(exc), model_id=MODEL_ID)

    with pytest.raises(kind) as info:
        await model.respond(history=[], message="hi", tools=[], execute=FakeExecute())

    assert info.value.code == code
