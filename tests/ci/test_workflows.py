"""The GitHub Actions workflows, checked statically: actionlint, and what a reviewer looks for.

actionlint must be installed (`make setup` installs it with the dev requirements): without it
this fails rather than skips, since a workflow nobody checked is the failure it exists for.
The structural checks are the pipeline's security properties (docs/pipeline.md): actions pinned
by commit, OIDC tokens only where a role is assumed, deploys from main in the protected
environment, no AWS secrets, no `pull_request_target`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.y*ml"))
PULL_REQUEST = ROOT / ".github" / "workflows" / "pull-request.yml"
DEPLOY = ROOT / ".github" / "workflows" / "deploy.yml"
ROLE_ACTION = "aws-actions/configure-aws-credentials"
# `uses: owner/repo[/path]@<40 hex> # vX.Y.Z`
PINNED = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40}$")
RELEASE_COMMENT = re.compile(r"#\s*v\d+\.\d+\.\d+\s*$")


def _actionlint() -> str:
    found = (
        os.environ.get("ACTIONLINT")
        or shutil.which("actionlint", path=str(Path(sys.executable).parent))
        or shutil.which("actionlint")
    )
    if not found:
        pytest.fail(
            "actionlint not found ($ACTIONLINT, next to this Python, or on PATH): run `make "
            "setup`, which installs it with the dev requirements"
        )
    return found


def _load(path: Path) -> dict[str, Any]:
    data: dict[Any, Any] = yaml.safe_load(path.read_text())
    # YAML 1.1 reads the key `on` as the boolean true.
    if True in data:
        data["on"] = data.pop(True)
    return data


def _jobs(path: Path) -> dict[str, dict[str, Any]]:
    jobs: dict[str, dict[str, Any]] = _load(path)["jobs"]
    return jobs


def _steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = job.get("steps", [])
    return steps


def _runs(job: dict[str, Any]) -> str:
    return "\n".join(step.get("run", "") for step in _steps(job))


def _assumes_a_role(job: dict[str, Any]) -> bool:
    return any(
        step.get("uses", "").startswith(f"{ROLE_ACTION}@") and "role-to-assume" in step["with"]
        for step in _steps(job)
    )


def test_there_are_workflows_to_check() -> None:
    assert {p.name for p in WORKFLOWS} >= {PULL_REQUEST.name, DEPLOY.name}


def test_actionlint_finds_nothing_in_any_workflow() -> None:
    result = subprocess.run(
        [_actionlint(), "-no-color", "-oneline", *map(str, WORKFLOWS)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.stdout == "", result.stdout
    assert result.returncode == 0, result.stderr


def test_actionlint_reports_a_broken_workflow(tmp_path: Path) -> None:
    """The check above can fail: an undefined context, an unknown permission, a bad runner."""
    workflow = tmp_path / ".github" / "workflows" / "broken.yml"
    workflow.parent.mkdir(parents=True)
    workflow.write_text(
        "on: push\n"
        "permissions:\n  id-tokens: write\n"
        "jobs:\n  a:\n    runs-on: ubuntu-24.04\n"
        "    steps:\n      - run: echo ${{ secret.AWS_KEY }}\n"
    )
    result = subprocess.run(
        [_actionlint(), "-no-color", "-oneline", str(workflow)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert "id-tokens" in result.stdout
    assert "secret" in result.stdout


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_action_is_pinned_by_a_full_commit_sha_with_its_release(path: Path) -> None:
    for line in path.read_text().splitlines():
        match = re.match(r"^\s*(?:-\s+)?uses:\s*(\S+)(.*)$", line)
        if not match:
            continue
        reference, rest = match.groups()
        assert PINNED.match(reference), f"{path.name}: not pinned by commit: {reference}"
        assert RELEASE_COMMENT.search(rest), f"{path.name}: say which release: {line.strip()}"


def test_each_action_is_pinned_to_one_commit_everywhere() -> None:
    pins: dict[str, set[str]] = {}
    for path in WORKFLOWS:
        for action, sha in re.findall(r"uses:\s*([\w./-]+)@([0-9a-f]{40})", path.read_text()):
            pins.setdefault(action, set()).add(sha)
    assert pins, "no action found: is the check still working?"
    assert {a: s for a, s in pins.items() if len(s) > 1} == {}


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_permissions_are_read_only_for_the_workflow_and_raised_per_job(path: Path) -> None:
    workflow = _load(path)
    assert workflow["permissions"] == {"contents": "read"}
    for name, job in workflow["jobs"].items():
        granted = job.get("permissions", {})
        assert isinstance(granted, dict), f"{name}: name each permission"
        assert set(granted.values()) <= {"read", "write", "none"}
        assert {k for k, v in granted.items() if v == "write"} <= {"id-token"}, name


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_only_jobs_that_assume_a_role_may_ask_for_an_oidc_token(path: Path) -> None:
    for name, job in _jobs(path).items():
        asks = job.get("permissions", {}).get("id-token") == "write"
        assert asks == _assumes_a_role(job), f"{path.name}: job {name}"


def test_roles_come_from_repository_variables_never_from_secrets_or_keys() -> None:
    for path in WORKFLOWS:
        text = path.read_text()
        assert not re.search(r"secrets\.AWS_", text, re.I), path.name
        assert "aws-access-key-id" not in text
        assert "aws-secret-access-key" not in text
        for name, job in _jobs(path).items():
            for step in _steps(job):
                if step.get("uses", "").startswith(f"{ROLE_ACTION}@"):
                    role = step["with"]["role-to-assume"]
                    assert re.fullmatch(r"\$\{\{ vars\.AWS_(DEPLOY|DIFF)_ROLE_ARN \}\}", role)
                    assert int(step["with"]["role-duration-seconds"]) <= 3600, name


def test_pull_request_target_is_never_used() -> None:
    for path in WORKFLOWS:
        assert "pull_request_target" not in path.read_text(), path.name
        assert "workflow_run" not in _load(path)["on"], path.name


def test_checkout_never_leaves_the_token_on_disk() -> None:
    for path in WORKFLOWS:
        for name, job in _jobs(path).items():
            for step in _steps(job):
                if step.get("uses", "").startswith("actions/checkout@"):
                    assert step["with"]["persist-credentials"] is False, f"{path.name}: {name}"


def test_the_deploy_job_runs_on_main_in_the_protected_environment() -> None:
    workflow = _load(DEPLOY)
    assert workflow["on"]["push"] == {"branches": ["main"]}
    assert workflow["concurrency"] == {"group": "deploy-production", "cancel-in-progress": False}
    (deployer,) = [job for job in workflow["jobs"].values() if _assumes_a_role(job)]
    assert deployer["environment"]["name"] == "production"
    assert "github.ref == 'refs/heads/main'" in deployer["if"]
    assert "make deploy" in _runs(deployer)
    assert "verify" in deployer["needs"]
    assert "make test" in _runs(workflow["jobs"]["verify"])
    (step,) = [s for s in _steps(deployer) if s.get("uses", "").startswith(f"{ROLE_ACTION}@")]
    assert step["with"]["role-to-assume"] == "${{ vars.AWS_DEPLOY_ROLE_ARN }}"


def test_the_deploy_environment_is_the_one_the_deploy_role_trusts() -> None:
    """The role's `sub` names the environment: a job in any other one gets no credentials."""
    context = json.loads((ROOT / "cdk.json").read_text())["context"]
    (deployer,) = [job for job in _jobs(DEPLOY).values() if _assumes_a_role(job)]
    assert deployer["environment"]["name"] == context["pipeline"]["environment"]


def test_pull_requests_run_the_checks_and_post_the_diff() -> None:
    jobs = _jobs(PULL_REQUEST)
    assert _load(PULL_REQUEST)["on"]["pull_request"] == {"branches": ["main"]}
    runs = {name: _runs(job) for name, job in jobs.items()}
    assert "make test" in runs["test"]
    assert "make synth" in runs["synth"]
    assert "cfn-lint" in runs["synth"]
    (differ,) = [name for name, job in jobs.items() if _assumes_a_role(job)]
    assert "cdk" in runs[differ]
    assert "diff --method template" in runs[differ]
    assert runs[differ].count("GITHUB_STEP_SUMMARY") == 2, "the diff, or why it was skipped"
    (step,) = [s for s in _steps(jobs[differ]) if s.get("uses", "").startswith(f"{ROLE_ACTION}@")]
    assert step["with"]["role-to-assume"] == "${{ vars.AWS_DIFF_ROLE_ARN }}"
    # Skipped, not failed, without the variables or for a fork's pull request.
    assert step["if"] == "env.AWS_CONFIGURED == 'true'"
    configured = jobs[differ]["env"]["AWS_CONFIGURED"]
    assert "vars.AWS_DIFF_ROLE_ARN != ''" in configured
    assert "github.event.pull_request.head.repo.full_name == github.repository" in configured
    # The diff role trusts only the pull_request subject: a run by hand would be refused.
    assert "github.event_name == 'pull_request'" in configured


def test_setup_caches_are_keyed_on_the_lock_files() -> None:
    keys = [
        step["with"]["key"]
        for path in WORKFLOWS
        for job in _jobs(path).values()
        for step in _steps(job)
        if step.get("uses", "").startswith("actions/cache@")
    ]
    assert keys
    for key in keys:
        assert "hashFiles(" in key
        assert "package-lock.json" in key
        assert "requirements" in key
