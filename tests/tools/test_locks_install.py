"""`make setup`'s install command refuses a file whose hash is not the lock's (PyPI needed).

Runs tools/install-locked.sh, the script every environment of `make setup` is installed with,
on a one-package lock (six, the real wheel on PyPI) into a temporary environment, with an
empty download cache so the file is really fetched and checked.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tools.locks import ROOT, entries

SIX = next(e for e in entries("services/binder/requirements.txt") if e.name == "six")


def _uv() -> Path:
    for candidate in (Path(sys.executable).parent / "uv", ROOT / ".venv-uv/bin/uv"):
        if candidate.exists():
            return candidate
    pytest.fail("uv is in requirements-dev.txt: run `make setup`")


def _install(tmp_path: Path, lock_text: str) -> subprocess.CompletedProcess[str]:
    lock = tmp_path / "lock.txt"
    lock.write_text(lock_text)
    env = {**os.environ, "UV": str(_uv()), "UV_CACHE_DIR": str(tmp_path / "cache")}
    return subprocess.run(
        [ROOT / "tools/install-locked.sh", tmp_path / "venv", sys.executable, lock],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        check=False,
    )


def _imports_six(tmp_path: Path) -> bool:
    python = tmp_path / "venv/bin/python"
    return subprocess.run([python, "-c", "import six"], capture_output=True).returncode == 0


def test_a_tampered_hash_is_refused_and_nothing_is_installed(tmp_path: Path) -> None:
    wrong = SIX.hashes[0][:-1] + ("0" if SIX.hashes[0][-1] != "0" else "1")
    result = _install(tmp_path, f"six=={SIX.version} {wrong}\n")
    assert result.returncode != 0
    assert "hash mismatch" in result.stderr.lower(), result.stderr
    assert not _imports_six(tmp_path)


def test_an_entry_without_a_hash_is_refused(tmp_path: Path) -> None:
    result = _install(tmp_path, f"six=={SIX.version}\n")
    assert result.returncode != 0
    assert "hash" in result.stderr.lower(), result.stderr
    assert not _imports_six(tmp_path)


def test_the_locks_own_hashes_install(tmp_path: Path) -> None:
    result = _install(tmp_path, f"six=={SIX.version} {' '.join(SIX.hashes)}\n")
    assert result.returncode == 0, result.stderr
    assert _imports_six(tmp_path)
