"""The "Add a stack" recipe, followed literally in a copy of the project, synthesizes clean.

The recipe's code is read from the doc: a fenced block preceded by `<!-- file: PATH -->` is a
new file; one preceded by `<!-- after: LINE -->` is inserted after that exact line of
`app.py`. The copy (tracked and untracked files, no virtual environments) is synthesized once
by `app.py` in a subprocess, with cdk.json's context and the four cdk-nag packs.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.infra.conftest import CLI_CONTEXT, ROOT, _use_node_24

SECTION = "## Add a stack"
# The fence's own indentation (a block inside a list item) is not part of the code.
BLOCK = re.compile(
    r"^[ \t]*<!-- (file|after): (.+?) -->[ \t]*\n([ \t]*)```\w*\n(.*?)^[ \t]*```", re.S | re.M
)
STACK_NAME = "SecureAgentsReports"


@dataclass
class Recipe:
    files: dict[str, str] = field(default_factory=dict)
    insertions: list[tuple[str, str]] = field(default_factory=list)  # (anchor, lines)


def _section() -> str:
    """The "Add a stack" section of docs/extending.md."""
    text = (ROOT / "docs" / "extending.md").read_text()
    assert SECTION in text, f"docs/extending.md lost its '{SECTION}' section"
    body = text.split(SECTION, 1)[1]
    return re.split(r"^## ", body, maxsplit=1, flags=re.M)[0]


def _recipe() -> Recipe:
    recipe = Recipe()
    for kind, target, indent, body in BLOCK.findall(_section()):
        code = "".join(line.removeprefix(indent) for line in body.splitlines(keepends=True))
        if kind == "file":
            recipe.files[target.strip()] = code
        else:
            recipe.insertions.append((target, code))
    return recipe


def _copy_project(dest: Path) -> None:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file() and not source.is_symlink():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)


def _apply(recipe: Recipe, copy: Path) -> None:
    for name, code in recipe.files.items():
        assert not (copy / name).exists(), f"the recipe overwrites {name}"
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        (copy / name).write_text(code)
    app = copy / "app.py"
    lines = app.read_text().splitlines(keepends=True)
    for anchor, code in recipe.insertions:
        matches = [i for i, line in enumerate(lines) if line.rstrip("\n") == anchor]
        assert len(matches) == 1, f"anchor line not found exactly once in app.py: {anchor!r}"
        lines[matches[0] + 1 : matches[0] + 1] = code.splitlines(keepends=True)
    app.write_text("".join(lines))


def test_the_recipe_is_one_module_and_one_line_in_build() -> None:
    recipe = _recipe()
    modules = [n for n in recipe.files if n.startswith("stacks/") and n.endswith(".py")]
    tests = [n for n in recipe.files if n.startswith("tests/")]
    assert len(modules) == 1
    assert sorted(recipe.files) == sorted(modules + tests), "nothing else is written"
    assert not (ROOT / modules[0]).exists()
    added = [code.strip() for _, code in recipe.insertions]
    assert len(added) == 2, "an import and the one line in build()"
    assert all("\n" not in line for line in added)
    assert added[0].startswith("from stacks.")
    assert added[1].startswith('ReportsStack(app, f"{prefix}Reports"')


@pytest.mark.synth
def test_following_the_recipe_synthesizes_the_new_stack_with_no_finding(
    tmp_path: Path,
) -> None:
    recipe = _recipe()
    copy = tmp_path / "project"
    _copy_project(copy)
    original_app = (copy / "app.py").read_text()
    _apply(recipe, copy)

    # The only change to app.py: the two lines the recipe adds.
    diff = [
        line
        for line in difflib.unified_diff(
            original_app.splitlines(), (copy / "app.py").read_text().splitlines(), lineterm=""
        )
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    assert [line[:1] for line in diff] == ["+", "+"], diff

    # House rules hold for what the recipe adds.
    new_files = [*recipe.files, "app.py"]
    for check in (["check"], ["format", "--check"]):
        lint = subprocess.run(
            [sys.executable, "-m", "ruff", *check, *new_files],
            cwd=copy,
            capture_output=True,
            text=True,
            check=False,
        )
        assert lint.returncode == 0, lint.stdout + lint.stderr

    _use_node_24()
    context = json.loads((copy / "cdk.json").read_text())["context"]
    outdir = tmp_path / "cdk.out"
    result = subprocess.run(
        [sys.executable, "app.py"],
        cwd=copy,
        env={
            **os.environ,
            "CDK_OUTDIR": str(outdir),
            "CDK_CONTEXT_JSON": json.dumps({**context, **CLI_CONTEXT}),
        },
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]

    template = json.loads((outdir / f"{STACK_NAME}.template.json").read_text())
    types = sorted(r["Type"] for r in template["Resources"].values())
    assert types.count("AWS::Logs::LogGroup") == 1
    (log_group,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::Logs::LogGroup"]
    assert "KmsKeyId" in log_group["Properties"], "encrypted with the project's logs key"
    assert "AWS::IAM::Policy" not in types, "grants land in a managed policy"

    report = json.loads((outdir / "validation-report.json").read_text())
    plugins = report["pluginReports"]
    assert len(plugins) >= 4, "the four cdk-nag packs ran"
    unacknowledged = [
        (plugin["pluginName"], violation["ruleName"], construct["constructPath"])
        for plugin in plugins
        for violation in plugin.get("violations", [])
        for construct in violation.get("violatingConstructs", [])
    ]
    assert unacknowledged == []
    checked = {
        construct["constructPath"].split("/")[0]
        for plugin in plugins
        for violation in plugin.get("suppressedViolations", [])
        for construct in violation.get("violatingConstructs", [])
    }
    assert checked, "the packs reported on the app at all"
