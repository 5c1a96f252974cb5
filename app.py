#!/usr/bin/env python3
"""CDK entry point: the only place that reads context or environment.

It turns CDK context (cdk.json, `-c key=value`) into one frozen `AppConfig`, composes the
three stacks with it (and, with the `pipeline` key, the GitHub deploy roles' stack, which an
administrator deploys once: docs/pipeline.md), and applies the four cdk-nag packs through
CDK's Validations API.
A bad context value stops synthesis with a message naming the key (exit code 2).

Two context keys are set by `make deploy` (tools/deploy.py), never in cdk.json:
- `deploy=true` refuses the example values of cdk.json, listing every key still to set;
- `upstream_outputs_sha256`, a digest of the identity and network stacks' deployed outputs,
  which the services stack carries so that it changes (and CloudFormation re-reads its weak
  references) whenever one of those values changes.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks, HIPAASecurityChecks, NIST80053R5Checks, PCIDSS321Checks

# The config checks provider entries with the binder's own parser, binder.providers.schema
# (standard library only); this is the one place that makes the binder's package importable.
_BINDER = str(Path(__file__).resolve().parent / "services" / "binder")
if _BINDER not in sys.path:
    sys.path.insert(0, _BINDER)

from stacks.config import AppConfig, ConfigError  # noqa: E402
from stacks.identity_stack import IdentityStack  # noqa: E402
from stacks.network_stack import NetworkStack  # noqa: E402
from stacks.pipeline_stack import PipelineStack  # noqa: E402
from stacks.services_stack import ServicesStack  # noqa: E402

# Context keys that `make deploy` sets (tools/deploy.py), beside those of `AppConfig`.
DEPLOY_CONTEXT_KEYS = ("deploy", "upstream_outputs_sha256")
# Where CDK's default synthesizer reads a custom bootstrap qualifier; the pipeline's roles must
# name the same bootstrap roles the templates are deployed with.
BOOTSTRAP_QUALIFIER_CONTEXT = "@aws-cdk/core:bootstrapQualifier"
NAG_PACKS = (AwsSolutionsChecks, NIST80053R5Checks, HIPAASecurityChecks, PCIDSS321Checks)


def build(app: cdk.App) -> tuple[IdentityStack, NetworkStack, ServicesStack]:
    """Compose the stacks on `app` from its context and register the compliance packs."""
    config = AppConfig.from_context(app.node.try_get_context)
    if str(app.node.try_get_context("deploy")).lower() == "true":
        config.require_deployable()
    upstream = app.node.try_get_context("upstream_outputs_sha256")
    if upstream is not None and not re.fullmatch(r"[0-9a-f]{64}", str(upstream)):
        raise ConfigError("context key 'upstream_outputs_sha256': expected a SHA-256 hex digest")
    env = cdk.Environment(account=config.account, region=config.region)
    # The configured zones answer CDK's availability-zone lookup, so synth needs no AWS call.
    app.node.set_context(
        f"availability-zones:account={config.account}:region={config.region}",
        list(config.availability_zones),
    )
    prefix = config.stack_prefix
    identity = IdentityStack(
        app,
        f"{prefix}Identity",
        config=config,
        env=env,
        description="Secure agents on ECS: stateful resources (keys, directory, vault, sessions)",
    )
    network = NetworkStack(
        app,
        f"{prefix}Network",
        config=config,
        logs=identity.logs,
        env=env,
        description="Secure agents on ECS: VPC, flow logs and private AWS endpoints",
    )
    services = ServicesStack(
        app,
        f"{prefix}Services",
        config=config,
        network=network,
        identity=identity,
        upstream_outputs_sha256=upstream,
        env=env,
        description="Secure agents on ECS: cluster, agent and binder services, ALB, WAF, alarms",
    )
    if config.pipeline is not None:
        # Unset, the stacks deploy with CDK's default bootstrap roles (hnb659fds).
        synthesizer_qualifier = (
            app.node.try_get_context(BOOTSTRAP_QUALIFIER_CONTEXT)
            or cdk.DefaultStackSynthesizer.DEFAULT_QUALIFIER
        )
        if synthesizer_qualifier != config.pipeline.bootstrap_qualifier:
            raise ConfigError(
                "context key 'pipeline.bootstrap_qualifier' must equal "
                f"'{BOOTSTRAP_QUALIFIER_CONTEXT}' ({synthesizer_qualifier}): the pipeline "
                "assumes the bootstrap roles the stacks are deployed with"
            )
        PipelineStack(
            app,
            f"{prefix}Pipeline",
            pipeline=config.pipeline,
            env=env,
            description="Secure agents on ECS: GitHub Actions deploy and diff roles (OIDC)",
        )
    for key, value in {"project": "secure-agents-on-ecs", **config.tags}.items():
        cdk.Tags.of(app).add(key, value)
    cdk.Validations.of(app).add_plugins(*(pack(app) for pack in NAG_PACKS))
    return identity, network, services


def main() -> int:
    app = cdk.App()
    try:
        build(app)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    app.synth()
    return 0


if __name__ == "__main__":
    sys.exit(main())
