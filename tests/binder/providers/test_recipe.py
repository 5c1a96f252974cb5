"""docs/extending.md's "Add a provider", followed word for word in a copy of the repository.

The recipe's fenced blocks carry the file they go to (```python title="path"```); the cdk.json
block is an object merged into the context's `providers`. The test writes them into a copy,
checks that the change is one new module, its test and one configuration entry, then proves
each promise of the recipe in a subprocess of the copy: the new test and lint pass, the CDK
configuration accepts the entry with nothing but the standard library, and a binder started
with the entry synth renders lists the provider under its display name.
"""

from __future__ import annotations

import filecmp
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]
DOC = ROOT / "docs" / "extending.md"
BLOCK = re.compile(r'^```(\w+) title="([^"]+)"\n(.*?)^```', re.S | re.M)
PROVIDERS_BLOCK = "cdk.json: context.providers"
# What the recipe needs of the repository (no virtual environments, no caches).
COPIED = ("services", "stacks", "constructs", "devstack", "tests", "app.py", "cdk.json")
COPIED_FILES = ("pyproject.toml",)
IGNORED = shutil.ignore_patterns("__pycache__", ".pytest_cache", ".mypy_cache", "node_modules")


def recipe() -> dict[str, str]:
    """The fenced blocks of the "Add a provider" section, by the file each one names."""
    section = DOC.read_text(encoding="utf-8").split("## Add a provider", 1)[1]
    section = section.split("\n## ", 1)[0]
    return {title: body for _, title, body in BLOCK.findall(section)}


def run(copy: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*args],
        cwd=copy,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )


def changed_files(copy: Path) -> tuple[set[str], set[str]]:
    """(files only in the copy, files that differ), relative paths."""
    added: set[str] = set()
    differ: set[str] = set()

    def walk(compared: filecmp.dircmp[str], prefix: str) -> None:
        added.update(f"{prefix}{name}" for name in compared.left_only)
        differ.update(f"{prefix}{name}" for name in compared.diff_files)
        for name, sub in compared.subdirs.items():
            walk(sub, f"{prefix}{name}/")

    for top in COPIED:
        if (ROOT / top).is_dir():
            walk(filecmp.dircmp(copy / top, ROOT / top, ignore=["__pycache__"]), f"{top}/")
        elif not filecmp.cmp(copy / top, ROOT / top, shallow=False):
            differ.add(top)
    return added, differ


@pytest.fixture(scope="module")
def followed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the repository with the recipe applied."""
    copy = tmp_path_factory.mktemp("recipe")
    for top in COPIED:
        source = ROOT / top
        if source.is_dir():
            shutil.copytree(source, copy / top, ignore=IGNORED, symlinks=True)
        else:
            shutil.copy2(source, copy / top)
    for name in COPIED_FILES:
        shutil.copy2(ROOT / name, copy / name)
    blocks = recipe()
    entry: dict[str, Any] = json.loads(blocks.pop(PROVIDERS_BLOCK))
    cdk = json.loads((copy / "cdk.json").read_text())
    cdk["context"]["providers"].update(entry)
    (copy / "cdk.json").write_text(json.dumps(cdk, indent=2) + "\n")
    for path, body in blocks.items():
        target = copy / path
        assert not target.exists(), f"the recipe overwrites {path}"
        target.write_text(body)
    return copy


def test_the_recipe_has_a_module_its_test_and_one_entry() -> None:
    blocks = recipe()
    assert set(blocks) == {
        "services/binder/binder/providers/gitea.py",
        "tests/binder/providers/test_gitea.py",
        PROVIDERS_BLOCK,
    }
    assert list(json.loads(blocks[PROVIDERS_BLOCK])) == ["gitea"]


def test_the_change_is_one_module_its_test_and_one_config_entry(followed: Path) -> None:
    added, differ = changed_files(followed)
    assert added == {
        "services/binder/binder/providers/gitea.py",
        "tests/binder/providers/test_gitea.py",
    }
    assert differ == {"cdk.json"}
    before = json.loads((ROOT / "cdk.json").read_text())
    after = json.loads((followed / "cdk.json").read_text())
    assert set(after["context"]["providers"]) - set(before["context"]["providers"]) == {"gitea"}
    del after["context"]["providers"]["gitea"]
    assert after == before


def test_the_new_test_and_lint_pass(followed: Path) -> None:
    new = ["services/binder/binder/providers/gitea.py", "tests/binder/providers/test_gitea.py"]
    tests = run(followed, sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", new[1])
    assert tests.returncode == 0, tests.stdout + tests.stderr
    # Every test ran and passed: nothing skipped, deselected or collected from elsewhere.
    assert re.search(r"^6 passed in ", tests.stdout, re.M), tests.stdout
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent))
    if ruff is None:  # the image's environment has no linters; `make lint` runs them
        return
    for command in (["check"], ["format", "--check"]):
        linted = run(followed, ruff, *command, *new)
        assert linted.returncode == 0, linted.stdout + linted.stderr


def test_the_cdk_configuration_accepts_the_entry(followed: Path) -> None:
    """As the CDK app reads it: from cdk.json, with the standard library only (-S)."""
    code = (
        "import json, sys; sys.path[:0] = ['.', 'services/binder']\n"
        "from stacks.config import AppConfig\n"
        "context = json.load(open('cdk.json'))['context']\n"
        "config = AppConfig.from_context(context.get)\n"
        "(gitea,) = [p for p in config.providers if p.name == 'gitea']\n"
        "print(json.dumps(gitea.binder_entry('arn:aws:secretsmanager:us-east-1:111111111111:"
        "secret:provider-gitea-AbCdEf')))\n"
    )
    result = run(followed, sys.executable, "-S", "-c", code, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "name": "gitea",
        "kind": "gitea",
        "client_id": "00000000-0000-0000-0000-000000000000",
        "secret_arn": "arn:aws:secretsmanager:us-east-1:111111111111:secret:provider-gitea-AbCdEf",
        "base_url": "https://gitea.com",
    }


BINDER = """
import json, sys
sys.path[:0] = ['.', 'services/common', 'services/binder']
from devstack import moto_fixes
moto_fixes.apply()
import boto3
from moto import mock_aws
from stacks.config import AppConfig
from tests.binder.conftest import INTERNAL, REGION, Cognito, running_binder

context = json.load(open('cdk.json'))['context']
with mock_aws():
    key = boto3.client('kms', region_name=REGION).create_key()['KeyMetadata']['Arn']
    boto3.client('dynamodb', region_name=REGION).create_table(
        TableName='sessions',
        AttributeDefinitions=[{'AttributeName': 'pk', 'AttributeType': 'S'}],
        KeySchema=[{'AttributeName': 'pk', 'KeyType': 'HASH'}],
        BillingMode='PAY_PER_REQUEST',
    )
    arn = 'arn:aws:secretsmanager:us-east-1:111111111111:secret:provider-AbCdEf'
    rendered = [p.binder_entry(arn) for p in AppConfig.from_context(context.get).providers]
    cognito = Cognito()
    aws = {'key_arn': key, 'secret_arn': arn}
    with running_binder(aws, cognito, PROVIDERS=json.dumps(rendered)) as binder:
        answer = binder.client.get(
            f'{INTERNAL}/internal/providers',
            headers={'authorization': f'Bearer {cognito.token("alice")}'},
        )
        print(answer.status_code, answer.text)
"""


def test_the_binder_lists_the_new_provider(followed: Path) -> None:
    result = run(followed, sys.executable, "-c", BINDER, timeout=120)
    assert result.returncode == 0, result.stderr
    status, body = result.stdout.strip().split(" ", 1)
    assert status == "200"
    listed = json.loads(body)["providers"]
    assert {"name": "gitea", "kind": "gitea", "display_name": "Gitea"} in listed
    assert [p["name"] for p in listed][-1] == "gitea"
