"""tools/deploy.py (`make deploy`): the order of the two deploys and the digest between them,
with a stand-in for the CDK CLI that records its arguments and writes the outputs file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tools.deploy import outputs_digest

ROOT = Path(__file__).resolve().parents[2]

FAKE_CDK = r"""
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_CDK_LOG"], "a") as log:
    log.write(json.dumps(args) + "\n")
if "--outputs-file" in args:
    outputs = json.loads(os.environ["FAKE_CDK_OUTPUTS"])
    if outputs is not None:
        with open(args[args.index("--outputs-file") + 1], "w") as f:
            json.dump(outputs, f)
sys.exit(int(os.environ.get("FAKE_CDK_EXIT", "0")))
"""

OUTPUTS = {
    "SecureAgentsIdentity": {"PublishOutputRefApiClientED144885": "3n4m5o6p"},
    "SecureAgentsNetwork": {"PublishOutputRefVpc8378EB385002A76F": "vpc-0abc"},
}


def _deploy(
    tmp_path: Path, *args: str, outputs: object = OUTPUTS, exit_code: int = 0
) -> tuple[subprocess.CompletedProcess[str], list[list[str]]]:
    fake = tmp_path / "fake_cdk.py"
    fake.write_text(FAKE_CDK)
    log = tmp_path / "calls.jsonl"
    env = {
        **os.environ,
        "DEPLOY_CDK": f"{sys.executable} {fake}",
        "FAKE_CDK_LOG": str(log),
        "FAKE_CDK_OUTPUTS": json.dumps(outputs),
        "FAKE_CDK_EXIT": str(exit_code),
    }
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "deploy.py"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return result, calls


def test_upstream_stacks_first_then_services_with_their_outputs_digest(tmp_path: Path) -> None:
    result, calls = _deploy(tmp_path)
    assert result.returncode == 0, result.stderr
    first, second = calls
    assert first[0] == "deploy"
    assert first[-2:] == ["*Identity", "*Network"]
    assert first[first.index("-c") : first.index("-c") + 2] == ["-c", "deploy=true"]
    assert "--outputs-file" in first
    assert second[-1] == "*Services"
    assert "--exclusively" in second
    assert "deploy=true" in second
    assert f"upstream_outputs_sha256={outputs_digest(OUTPUTS)}" in second
    assert first[1:3] == ["--require-approval", "broadening"]


def test_the_digest_follows_the_values_not_their_order() -> None:
    reordered = dict(reversed(list(OUTPUTS.items())))
    assert outputs_digest(reordered) == outputs_digest(OUTPUTS)
    changed = {**OUTPUTS, "SecureAgentsIdentity": {"PublishOutputRefApiClientED144885": "new"}}
    assert outputs_digest(changed) != outputs_digest(OUTPUTS)


def test_a_failed_first_deploy_stops_before_the_services_stack(tmp_path: Path) -> None:
    result, calls = _deploy(tmp_path, exit_code=3)
    assert result.returncode == 3
    assert len(calls) == 1


def test_no_outputs_file_is_an_error_not_a_services_deploy(tmp_path: Path) -> None:
    result, calls = _deploy(tmp_path, outputs=None)
    assert result.returncode != 0
    assert "outputs" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(calls) == 1


def test_pipeline_arguments_reach_both_deploys(tmp_path: Path) -> None:
    result, calls = _deploy(tmp_path, "--require-approval", "never")
    assert result.returncode == 0, result.stderr
    for call in calls:
        assert call.count("--require-approval") == 1
        assert call[call.index("--require-approval") + 1] == "never"
