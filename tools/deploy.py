"""`make deploy`: the three stacks in two steps, so the services stack never runs on stale values.

The services stack reads the identity and network stacks' values (role and key ARNs, Cognito
client IDs, the session table, subnets) through weak references (`Fn::GetStackOutput`, no
CloudFormation exports). CloudFormation resolves those when the services stack is created or
updated, and never again on its own: after an identity-stack change that replaces a resource
(a new Cognito client, a recreated provider secret), an unchanged services template would keep
the old value. So this script

1. deploys the identity and network stacks with `-c deploy=true` (the app then refuses the
   example values of cdk.json, listing every key still to set, before anything is built),
   writing their outputs to a file;
2. deploys the services stack with `-c upstream_outputs_sha256=<digest of those outputs>`: the
   stack carries a marker resource named after the digest, so a changed value is a changed
   template, an update, and a fresh resolution of every weak reference.

Written by hand because the CDK CLI has no option for it: `cdk deploy --all` skips a stack
whose template did not change.

Usage (the Makefile passes the pinned CLI):
    DEPLOY_CDK="<cdk command>" python tools/deploy.py [cdk args]
(not `CDK`: the CDK CLI reads every `CDK*` environment variable as an option.)
Extra arguments (e.g. `--require-approval never` in a pipeline) go to both `cdk deploy` calls.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

# Stack selectors: the stack names are `<stack_prefix>Identity` and so on (app.py).
UPSTREAM_STACKS = ("*Identity", "*Network")
SERVICES_STACK = "*Services"
DEFAULT_APPROVAL = ("--require-approval", "broadening")


def outputs_digest(outputs: object) -> str:
    """SHA-256 of the outputs in a canonical form (sorted keys, no whitespace)."""
    canonical = json.dumps(outputs, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _read_outputs(path: Path) -> dict[str, object]:
    try:
        outputs = json.loads(path.read_text())
    except (OSError, ValueError):
        raise SystemExit(f"deploy: cdk wrote no readable outputs file at {path}") from None
    if not isinstance(outputs, dict) or not outputs:
        raise SystemExit(f"deploy: the outputs file {path} names no stack")
    return outputs


def deploy(cdk: Sequence[str], extra: Sequence[str]) -> int:
    approval = () if "--require-approval" in extra else DEFAULT_APPROVAL
    common = [*cdk, "deploy", *approval, "-c", "deploy=true", *extra]
    with tempfile.TemporaryDirectory(prefix="deploy-") as scratch:
        outputs_file = Path(scratch) / "upstream-outputs.json"
        first = subprocess.run(  # noqa: S603 - the pinned CLI and its arguments, no shell
            [*common, "--outputs-file", str(outputs_file), *UPSTREAM_STACKS]
        )
        if first.returncode != 0:
            return first.returncode
        digest = outputs_digest(_read_outputs(outputs_file))
    print(f"deploy: identity and network outputs digest {digest[:16]}", flush=True)
    second = subprocess.run(  # noqa: S603 - the pinned CLI and its arguments, no shell
        [
            *common,
            "--exclusively",
            "-c",
            f"upstream_outputs_sha256={digest}",
            SERVICES_STACK,
        ]
    )
    return second.returncode


def main(argv: Sequence[str]) -> int:
    cdk = shlex.split(os.environ.pop("DEPLOY_CDK", ""))
    if not cdk:
        print("deploy: set DEPLOY_CDK to the cdk command (make deploy does)", file=sys.stderr)
        return 2
    return deploy(cdk, list(argv))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
