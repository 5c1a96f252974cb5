"""tools/ensure_browser.py decides, without installing anything: fake commands in a temp dir.

Each test's PATH is a temp dir holding only fake `chromium`, `apt-get` and installer scripts
that record how they were called; "installing" writes a fake Chromium that answers
`--version`. Root or not is a parameter of the Host, so the root path runs for any user.
"""

from __future__ import annotations

import dataclasses
import io
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tools import ensure_browser
from tools.ensure_browser import Host

ROOT = Path(__file__).resolve().parents[2]
WORKING = '#!/bin/sh\necho "Chromium 140.0.0.0 fake"\n'
BROKEN = "#!/bin/sh\necho 'error while loading shared libraries: libnss3.so' >&2\nexit 127\n"


def _script(path: Path, body: str) -> Path:
    path.write_text(body)
    path.chmod(0o755)
    return path


@dataclass
class Machine:
    """A temp dir standing in for a machine: bin/ is PATH, calls.log records every call."""

    root: Path

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    @property
    def calls(self) -> list[str]:
        log = self.root / "calls.log"
        return log.read_text().splitlines() if log.exists() else []

    @property
    def managed(self) -> Path:
        """Where Playwright's installer puts its Chromium on this fake machine."""
        return self.root / "ms-playwright" / "chromium" / "chrome"

    def chromium(self, body: str = WORKING, name: str = "chromium") -> Path:
        return _script(self.bin / name, body)

    def apt_get(self, *, works: bool = True) -> None:
        target = self.bin / "chromium"
        installs = f"printf '%s' '{WORKING}' > '{target}'; /bin/chmod +x '{target}'"
        _script(
            self.bin / "apt-get",
            "#!/bin/sh\n"
            f"echo \"apt-get $DEBIAN_FRONTEND $*\" >> '{self.root}/calls.log'\n"
            + (f'if [ "$1" = install ]; then {installs}; fi\n' if works else "exit 100\n"),
        )

    def host(
        self, *, root: bool, installer_works: bool = False, installer_body: str | None = None
    ) -> Host:
        installs = (
            f"/bin/mkdir -p '{self.managed.parent}'; printf '%s' '{WORKING}' > '{self.managed}'; "
            f"/bin/chmod +x '{self.managed}'"
        )
        body = installer_body or (
            "#!/bin/sh\n"
            f"echo \"playwright $*\" >> '{self.root}/calls.log'\n"
            + (f"{installs}\n" if installer_works else "echo 'download failed' >&2\nexit 1\n")
        )
        installer = _script(self.root / "playwright-install", body)
        return Host(
            env={"PATH": str(self.bin)},
            is_root=root,
            playwright_browser=lambda: str(self.managed),
            playwright_install=(str(installer), "install", "chromium"),
            apt_timeout=20,
            playwright_timeout=20,
        )


@pytest.fixture
def machine(tmp_path: Path) -> Machine:
    (tmp_path / "bin").mkdir()
    return Machine(tmp_path)


def _ensure(host: Host) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = ensure_browser.ensure(host, out=out, err=err)
    return status, out.getvalue(), err.getvalue()


def test_debians_chromium_on_path_is_used_and_nothing_is_installed(machine: Machine) -> None:
    chromium = machine.chromium()
    machine.apt_get()
    host = machine.host(root=True, installer_works=True)
    assert ensure_browser.find(host) == str(chromium)
    status, out, err = _ensure(host)
    assert (status, err) == (0, "")
    assert str(chromium) in out
    assert machine.calls == []


def test_chromium_browser_is_found_too(machine: Machine) -> None:
    chromium = machine.chromium(name="chromium-browser")
    assert ensure_browser.find(machine.host(root=False)) == str(chromium)


def test_a_chromium_that_does_not_start_does_not_count(machine: Machine) -> None:
    machine.chromium(BROKEN)
    assert ensure_browser.find(machine.host(root=False)) is None


def test_chromium_env_names_the_browser(machine: Machine) -> None:
    machine.chromium()
    own = _script(machine.root / "my-chrome", WORKING)
    host = machine.host(root=False)
    host = dataclasses.replace(host, env={**host.env, "CHROMIUM": str(own)})
    assert ensure_browser.find(host) == str(own)


def test_playwrights_own_chromium_is_used_once_installed(machine: Machine) -> None:
    machine.managed.parent.mkdir(parents=True)
    _script(machine.managed, WORKING)
    status, out, _ = _ensure(machine.host(root=True))
    assert status == 0
    assert str(machine.managed) in out
    assert machine.calls == []


def test_as_root_debians_chromium_is_installed_with_apt(machine: Machine) -> None:
    machine.apt_get()
    status, out, err = _ensure(machine.host(root=True, installer_works=True))
    assert (status, err) == (0, "")
    assert machine.calls == [
        "apt-get noninteractive update -qq",
        "apt-get noninteractive install -y -qq --no-install-recommends chromium",
    ]
    assert str(machine.bin / "chromium") in out


def test_without_root_playwrights_installer_runs_and_apt_does_not(machine: Machine) -> None:
    machine.apt_get()
    status, out, err = _ensure(machine.host(root=False, installer_works=True))
    assert (status, err) == (0, "")
    assert machine.calls == ["playwright install chromium"]
    assert str(machine.managed) in out


def test_as_root_playwrights_installer_runs_when_apt_fails(machine: Machine) -> None:
    machine.apt_get(works=False)
    status, out, _ = _ensure(machine.host(root=True, installer_works=True))
    assert status == 0
    assert machine.calls == ["apt-get noninteractive update -qq", "playwright install chromium"]
    assert str(machine.managed) in out


@pytest.mark.parametrize(
    ("root", "apt", "command"),
    [
        (True, True, "Run: apt-get install -y --no-install-recommends chromium and make"),
        (False, True, "Run: sudo apt-get install -y --no-install-recommends chromium and make"),
        (False, False, " -m playwright install --with-deps chromium and make test again."),
    ],
)
def test_when_nothing_works_one_line_names_the_command(
    machine: Machine, root: bool, apt: bool, command: str
) -> None:
    if apt:
        machine.apt_get(works=False)
    machine.chromium(BROKEN)
    status, _, err = _ensure(machine.host(root=root))
    assert status == 1
    assert err.endswith("\n")
    assert err.count("\n") == 1, err
    assert err.startswith("make test: no Chromium for the browser test (")
    assert command in err
    assert "Playwright's installer: exit status 1: download failed" in err


def test_an_installer_that_hangs_is_stopped_in_time(machine: Machine) -> None:
    pid_file = machine.root / "sleeper.pid"
    hangs = f"#!/bin/sh\n/bin/sleep 60 &\necho $! > '{pid_file}'\nwait\n"
    host = machine.host(root=False, installer_body=hangs)
    host = dataclasses.replace(host, playwright_timeout=1)
    started = time.monotonic()
    status, _, err = _ensure(host)
    assert time.monotonic() - started < 15
    assert status == 1
    assert "Playwright's installer: no result within 1s" in err
    sleeper = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _alive(sleeper):
        time.sleep(0.05)
    assert not _alive(sleeper), "the installer's children are stopped with it"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat")
    return not (status.exists() and status.read_text().split()[2] == "Z")


def test_make_test_ensures_the_browser_before_lint_and_any_test() -> None:
    dry_run = subprocess.run(
        ["make", "-n", "test"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    ).stdout
    lines = dry_run.splitlines()
    browser = next(i for i, line in enumerate(lines) if "tools/ensure_browser.py" in line)
    lint = next(i for i, line in enumerate(lines) if "ruff check" in line)
    tests = next(i for i, line in enumerate(lines) if "-m pytest" in line)
    assert browser < lint < tests
