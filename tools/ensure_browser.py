"""Find or install the Chromium the browser test drives, before `make test` runs any test.

On a fresh machine `make setup && make test` must be the whole set-up, so `make test` calls
this first. In order:

1. a Chromium that runs: `$CHROMIUM`, `chromium` or `chromium-browser` on PATH (Debian's), or
   the one Playwright's own installer put in its cache;
2. as root with apt-get: Debian's `chromium` package (noninteractive, quiet);
3. Playwright's own installer (`python -m playwright install chromium`);
4. else one line on stderr naming the exact command to run, and exit status 1, so make stops
   before any test runs.

Every installer is bounded in time and stopped with its process group. On success the browser's
path is printed; tests/browser calls find() and drives that same browser.

Run: python tools/ensure_browser.py
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TextIO

SYSTEM_NAMES = ("chromium", "chromium-browser")  # Debian's, and other distributions' name
APT_PACKAGE = "chromium"
VERSION_TIMEOUT_SECONDS = 30.0
APT_TIMEOUT_SECONDS = 900.0  # each of `apt-get update` and `apt-get install`
PLAYWRIGHT_TIMEOUT_SECONDS = 600.0


def playwright_chromium() -> str | None:
    """Where Playwright's own Chromium is (or would be) installed; None without Playwright."""
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        return None
    try:
        with sync_playwright() as playwright:
            return playwright.chromium.executable_path
    except (Error, OSError):  # its driver did not start: no Playwright browser either
        return None


def _is_root() -> bool:
    geteuid = getattr(os, "geteuid", None)
    return geteuid is not None and geteuid() == 0


@dataclass(frozen=True)
class Host:
    """What the decisions depend on. The defaults are this machine; tests pass fakes."""

    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    is_root: bool = field(default_factory=_is_root)
    playwright_browser: Callable[[], str | None] = playwright_chromium
    playwright_install: Sequence[str] = (sys.executable, "-m", "playwright", "install", "chromium")
    apt_timeout: float = APT_TIMEOUT_SECONDS
    playwright_timeout: float = PLAYWRIGHT_TIMEOUT_SECONDS

    @property
    def path(self) -> str:
        return self.env.get("PATH", os.defpath)

    def which(self, name: str) -> str | None:
        return shutil.which(name, path=self.path)


def _run(argv: Sequence[str], *, env: Mapping[str, str], timeout: float) -> str | None:
    """Run a command with no input; None if it succeeded, else why it failed (one phrase)."""
    try:
        process = subprocess.Popen(  # noqa: S603 - fixed installer commands, no shell
            list(argv),
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: a timeout stops its children too
        )
    except OSError as exc:
        return f"could not start ({exc.strerror})"
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        return f"no result within {timeout:.0f}s"
    if process.returncode != 0:
        last = output.decode(errors="replace").strip().splitlines()[-1:] or [""]
        return f"exit status {process.returncode}: {last[0][:120]}".rstrip(": ")
    return None


def runs(path: str, env: Mapping[str, str]) -> bool:
    """The file is a Chromium that starts here (`--version` needs its shared libraries)."""
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        return False
    try:
        result = subprocess.run(  # noqa: S603 - a browser binary found above
            [path, "--version"],
            env=dict(env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=VERSION_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0 and b"chrom" in result.stdout.lower()


def find(host: Host | None = None) -> str | None:
    """The path of a Chromium that runs: `$CHROMIUM`, the system's, then Playwright's."""
    host = host or Host()
    candidates = [host.env.get("CHROMIUM") or None, *(host.which(n) for n in SYSTEM_NAMES)]
    for candidate in candidates:
        if candidate and runs(candidate, host.env):
            return candidate
    managed = host.playwright_browser()
    if managed and runs(managed, host.env):
        return managed
    return None


def install_with_apt(host: Host) -> str | None:
    """Debian's chromium, as root; None on success, else why not."""
    apt = host.which("apt-get")
    env = {**host.env, "DEBIAN_FRONTEND": "noninteractive"}
    failed = _run([apt, "update", "-qq"], env=env, timeout=host.apt_timeout) if apt else "absent"
    if apt and failed is None:
        failed = _run(
            [apt, "install", "-y", "-qq", "--no-install-recommends", APT_PACKAGE],
            env=env,
            timeout=host.apt_timeout,
        )
    return failed


def _python_command() -> str:
    relative = os.path.relpath(sys.executable)
    return sys.executable if relative.startswith("..") else relative


def advice(host: Host) -> str:
    """The exact command that installs a browser here, by hand."""
    if host.which("apt-get"):
        sudo = "" if host.is_root else "sudo "
        return f"{sudo}apt-get install -y --no-install-recommends {APT_PACKAGE}"
    return f"{_python_command()} -m playwright install --with-deps chromium"


def ensure(host: Host | None = None, *, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """0 with the browser's path on `out`, or 1 with one line on `err`."""
    host = host or Host()
    installers: list[tuple[str, Callable[[], str | None]]] = []
    if host.is_root and host.which("apt-get"):
        installers.append((f"Debian's {APT_PACKAGE} (apt-get)", lambda: install_with_apt(host)))
    installers.append(
        (
            "Playwright's installer",
            lambda: _run(host.playwright_install, env=host.env, timeout=host.playwright_timeout),
        )
    )
    found = find(host)
    attempts: list[str] = []
    for name, install in installers:
        if found:
            break
        print(f"browser test: installing Chromium: {name}", file=out, flush=True)
        failed = install()
        found = find(host)
        if not found:
            attempts.append(f"{name}: {failed or 'installed, but no Chromium runs'}")
    if found:
        print(f"browser test: Chromium at {found}", file=out, flush=True)
        return 0
    print(
        f"make test: no Chromium for the browser test ({'; '.join(attempts)}). "
        f"Run: {advice(host)} and make test again.",
        file=err,
        flush=True,
    )
    return 1


if __name__ == "__main__":
    sys.exit(ensure())
