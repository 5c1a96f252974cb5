"""docs/extending.md's "Add a tool" recipe, followed literally in a temporary copy of the agent.

The marked blocks of the doc (``<!-- file: PATH -->`` before a fenced block) are written into a
copy of what the agent needs; then, each in a fresh interpreter: the new tool's own test passes,
and the agent built for ``AGENT_PROVIDERS=github`` registers the tool and the offline planner
routes the doc's phrase to it. The copy differs from the repository by exactly the two files.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_BLOCK = re.compile(r"<!-- file: (?P<path>[^ ]+) -->\n```python\n(?P<body>.*?)\n```", re.DOTALL)
# What the agent and its tool tests need; nothing else of the repository is copied.
_COPIED = ("services/agent", "services/common", "tests/agent/tools", "pyproject.toml")


def _recipe() -> str:
    """The "Add a tool" section of docs/extending.md."""
    text = (ROOT / "docs" / "extending.md").read_text()
    assert "## Add a tool" in text, "docs/extending.md lost its tool recipe"
    return text.split("## Add a tool", 1)[1].split("\n## ", 1)[0]


def _blocks() -> dict[str, str]:
    blocks = {m["path"]: m["body"] + "\n" for m in _BLOCK.finditer(_recipe())}
    modules = [p for p in blocks if p.startswith("services/agent/agent/tools/")]
    tests = [p for p in blocks if p.startswith("tests/agent/tools/test_")]
    assert len(modules) == 1, blocks.keys()
    assert len(tests) == 1, blocks.keys()
    return blocks


def _files(base: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under ``base`` (caches left out)."""
    return {
        str(path.relative_to(base)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in base.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and ".mypy_cache" not in path.parts
    }


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "COV_"))}
    paths = [str(cwd / p) for p in (".", "services/common", "services/agent")]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


_CHECK_AGENT = """
import json
from agent.app import build_services
from agent.settings import Settings

settings = Settings.from_env({
    "COGNITO_ISSUER": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_test",
    "COGNITO_CLIENT_IDS": "c1",
    "BINDER_INTERNAL_URL": "http://binder:8081",
    "AGENT_MODEL": "offline",
    "AGENT_PROVIDERS": "github",
})
services = build_services(settings)
specs = services.chat._registry.specs()
plan = services.model.plan("list the open issues in octo/app", specs)
print(json.dumps({"tools": [s.name for s in specs], "tool": plan.tool, "args": plan.arguments}))
"""


def test_the_add_a_tool_recipe_works_as_written(tmp_path: Path) -> None:
    blocks = _blocks()
    copy = tmp_path / "repo"
    for part in _COPIED:
        source = ROOT / part
        if source.is_dir():
            shutil.copytree(
                source, copy / part, ignore=shutil.ignore_patterns("__pycache__", ".mypy_cache")
            )
        else:
            (copy / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / part)
    before = _files(copy)
    for path, body in blocks.items():
        assert not (ROOT / path).exists(), f"{path} is already in the repository"
        (copy / path).write_text(body)

    # Exactly one new module and one new test file; nothing else differs from the repository.
    after = _files(copy)
    assert sorted(set(after) - set(before)) == sorted(blocks)
    assert {path: after[path] for path in before} == before
    repository = {p: hashlib.sha256((ROOT / p).read_bytes()).hexdigest() for p in before}
    assert before == repository  # the copy is the repository's own files

    test_file = next(p for p in blocks if p.startswith("tests/"))
    tested = _run(["-m", "pytest", "-q", "-p", "no:cacheprovider", test_file], copy)
    assert tested.returncode == 0, tested.stdout[-3000:] + tested.stderr[-3000:]
    assert " passed" in tested.stdout

    checked = _run(["-c", _CHECK_AGENT], copy)
    assert checked.returncode == 0, checked.stderr[-3000:]
    found = json.loads(checked.stdout.strip().splitlines()[-1])
    assert "github_list_issues" in found["tools"]
    assert "notes_list" not in found["tools"]  # still only this agent's providers
    assert found["tool"] == "github_list_issues"
    assert found["args"] == {"repository": "octo/app"}
