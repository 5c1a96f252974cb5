"""Lock files, read statically: every install of the project is pinned and hash-checked.

- every lock entry pins `==` with sha256 hashes (pip and uv then refuse any other file);
- every lock is the one `make lock` (tools/lock.sh) writes: its header is that command on its
  own *.in, and its top-level packages are exactly the *.in's requirements at their pins;
- a package shared by the images' locks, the CDK app's, the dev and .venv-image's locks has
  one version in all of them (what the tests run is what the images ship);
- each Dockerfile installs its service's lock with `--require-hashes --no-deps`, and
  `make setup` installs every environment through tools/install-locked.sh;
- Renovate covers every lock, the npm lock, every Dockerfile and the workflows.
"""

from __future__ import annotations

import json
import re
import shlex
from collections import defaultdict
from pathlib import Path

import pytest

from tests.dockerfile import instructions
from tests.tools.locks import LOCKS, ROOT, entries, header_command, input_requirements

# The locks whose packages end up in the images or run the tests of what the images ship.
SHARED = [lock for lock in LOCKS if lock != "requirements-checkov.txt"]
DOCKERFILES = sorted(ROOT.glob("services/*/Dockerfile"))


def test_every_requirements_file_is_a_lock_or_its_input() -> None:
    found = {
        str(p.relative_to(ROOT))
        for pattern in ("requirements*.txt", "requirements*.in", "services/*/requirements*")
        for p in ROOT.glob(pattern)
    }
    assert found == set(LOCKS) | set(LOCKS.values())


@pytest.mark.parametrize("lock", LOCKS)
def test_every_lock_entry_is_pinned_with_a_sha256_hash(lock: str) -> None:
    found = entries(lock)
    assert found
    for entry in found:
        assert entry.hashes, f"{lock}: {entry.name}=={entry.version} has no --hash=sha256:"
        # Nothing else may hide in an entry (an index URL, a direct reference).
        rest = re.sub(r"--hash=sha256:[0-9a-f]{64}", "", entry.text.split(";")[-1])
        assert "://" not in rest, entry.text
        assert " @ " not in entry.text, entry.text
    names = [(e.name, e.version) for e in found]
    assert len(names) == len(set(names)), f"{lock}: a package listed twice"


@pytest.mark.parametrize("lock", LOCKS)
def test_every_lock_is_compiled_by_the_lock_command_from_its_input(lock: str) -> None:
    command = header_command(lock)
    assert command[:3] == ["uv", "pip", "compile"], command
    # What `make lock` passes to every lock (tools/lock.sh's compile function).
    for option in ("--universal", "--generate-hashes"):
        assert option in command, f"{lock} was compiled without {option}"
    assert command[command.index("--python-version") + 1] == "3.11"
    assert command[command.index("--output-file") + 1] == lock
    assert command[-1] == LOCKS[lock]
    # Constraints are locks compiled earlier by the same script.
    order = list(LOCKS)
    constraints = [command[i + 1] for i, word in enumerate(command) if word == "--constraint"]
    assert all(order.index(c) < order.index(lock) for c in constraints), constraints
    # ... and tools/lock.sh regenerates this lock with exactly these constraints and input.
    script = re.sub(r"\s*\\\n\s*", " ", (ROOT / "tools/lock.sh").read_text())
    expected = " ".join(
        [*(f"--constraint {c}" for c in constraints), f"--output-file {lock} {LOCKS[lock]}"]
    )
    assert expected in script, f"tools/lock.sh does not write {lock} as its header says"


@pytest.mark.parametrize("lock", LOCKS)
def test_lock_top_level_packages_are_its_inputs_at_their_pins(lock: str) -> None:
    wanted = input_requirements(LOCKS[lock])
    found = entries(lock)
    top_level = {e.name for e in found if any(v.startswith("-r ") for v in e.via)}
    # A requirement added to or removed from the *.in without `make lock` shows here.
    assert top_level == set(wanted), f"{lock}: run `make lock`"
    versions = defaultdict(set)
    for entry in found:
        versions[entry.name].add(entry.version)
    for name, requirement in wanted.items():
        assert versions[name], f"{lock}: {name} missing"
        for version in versions[name]:
            assert requirement.specifier.contains(version, prereleases=True), (
                f"{lock}: {name}=={version} does not satisfy {requirement} in {LOCKS[lock]}"
            )


def test_shared_packages_have_one_version_across_the_images_and_dev_locks() -> None:
    seen: dict[str, dict[str, frozenset[str]]] = defaultdict(dict)
    for lock in SHARED:
        by_name: dict[str, set[str]] = defaultdict(set)
        for entry in entries(lock):
            by_name[entry.name].add(entry.version)
        for name, versions in by_name.items():
            seen[name][lock] = frozenset(versions)
    disagree = {name: locks for name, locks in seen.items() if len(set(locks.values())) > 1}
    assert not disagree, disagree
    # The images' packages are all in the environments that test them.
    for service in ("binder", "agent"):
        image = {e.name for e in entries(f"services/{service}/requirements.txt")}
        for lock in ("requirements-dev.txt", "requirements-image.txt"):
            assert image <= {e.name for e in entries(lock)}, (service, lock)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_every_dockerfile_installs_its_lock_with_require_hashes(dockerfile: Path) -> None:
    steps = instructions(dockerfile)
    copied = {
        words[-1]: words[0]
        for keyword, rest in steps
        if keyword == "COPY" and len(words := rest.split()) == 2
    }
    installs = [
        shlex.split(rest) for keyword, rest in steps if keyword == "RUN" and "install" in rest
    ]
    assert installs, f"{dockerfile}: no install step"
    for words in installs:
        assert words[:2] == ["pip", "install"], words
        assert "--require-hashes" in words, words
        assert "--no-deps" in words, words
        files = [words[i + 1] for i, w in enumerate(words) if w == "-r"]
        # Only -r files, no package named on the command line.
        assert files
        assert len(words) == 2 + len(files) * 2 + sum(w.startswith("--") for w in words)
        for path in files:
            # Build context is services/: the file copied is the service's own lock.
            assert copied.get(path) == f"{dockerfile.parent.name}/requirements.txt", path


def test_make_setup_installs_every_environment_from_its_lock_with_hashes() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "INSTALL_LOCKED := UV=$(UV) tools/install-locked.sh" in makefile
    recipes = re.findall(r"^\t(.*)$", makefile, flags=re.M)
    installs = [line for line in recipes if "$(INSTALL_LOCKED)" in line]
    installed = {w.rstrip(";") for line in installs for w in line.split() if ".txt" in w}
    assert installed == {
        "requirements-dev.txt",
        "requirements-checkov.txt",
        "requirements-image.txt",
    }
    # No other installer in a recipe (pip would not check hashes unless told).
    assert not [line for line in recipes if re.search(r"\bpip install\b", line)]
    script = (ROOT / "tools/install-locked.sh").read_text()
    assert re.search(r'pip sync .*--require-hashes .*"\$@"', script)
    # The images' packages are in the dev lock, and .venv-image's lock has both images'.
    assert "-r requirements.in" in (ROOT / "requirements-dev.in").read_text()


def test_renovate_covers_every_lock_dockerfile_npm_lock_and_workflow() -> None:
    config = json.loads((ROOT / "renovate.json").read_text())
    assert set(config["enabledManagers"]) == {"pip-compile", "npm", "dockerfile", "github-actions"}

    def covered(manager: str, path: str) -> bool:
        patterns = config[manager]["managerFilePatterns"]
        return any(re.search(p.strip("/"), path) for p in patterns)

    for lock in LOCKS:
        assert covered("pip-compile", lock), lock
        assert header_command(lock)[0] == "uv"  # the manager runs the header's command
    for dockerfile in DOCKERFILES:
        assert covered("dockerfile", str(dockerfile.relative_to(ROOT))), dockerfile
    assert config["dockerfile"]["pinDigests"] is True
    # npm's manager reads package.json and updates package-lock.json beside it.
    assert covered("npm", "package.json")
    assert (ROOT / "package-lock.json").exists()
    assert covered("github-actions", ".github/workflows/ci.yml")
    assert config["github-actions"]["pinDigests"] is True
    for workflow in ROOT.glob(".github/workflows/*.y*ml"):
        assert covered("github-actions", str(workflow.relative_to(ROOT))), workflow
