"""What the browser tests drive: ``dagster dev`` (webserver and daemon) on the project's workspace,
in a temporary DAGSTER_HOME and data directory, and Debian's chromium through Playwright."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import httpx
from playwright.sync_api import Browser, Page, sync_playwright

from pipelines.process_group import group
from pipelines.run import prepare_dagster_home
from pipelines.settings import REPO_ROOT

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",  # as root, in CI
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # This machine has no network: without these, chromium keeps trying to reach Google's hosts.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
STARTUP_SECONDS = 180


@dataclass(frozen=True)
class DagsterUi:
    url: str
    home: Path
    data_dir: Path
    log: Path

    def instance(self) -> dg.DagsterInstance:
        """The same instance the UI serves (its storage is files under ``home``)."""
        return dg.DagsterInstance.from_config(str(self.home))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_until_serving(url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"dagster dev exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/server_info", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)  # a poll interval, bounded by the deadline above
    raise TimeoutError(f"dagster dev did not serve {url} in {STARTUP_SECONDS} s:\n{log.read_text()[-3000:]}")


@contextmanager
def dagster_dev(root: Path, env: dict[str, str]) -> Iterator[DagsterUi]:
    """``dagster dev -w workspace.yaml`` in a process group of its own, stopped by that group's id
    (SIGINT, as Ctrl-C would, then SIGKILL if it lingers): webserver, daemon, code server and any
    run worker go with it."""
    home, data_dir, log = root / "dagster_home", root / "data", root / "dagster-dev.log"
    prepare_dagster_home(home)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    full_env = {
        **os.environ,
        **env,
        "DAGSTER_HOME": str(home),
        "SYNCTERA_DATA_DIR": str(data_dir),
        "PYTHONWARNINGS": "ignore",
    }
    dagster = Path(sys.executable).parent / "dagster"
    command = [str(dagster), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)]
    # Stopped by its group's id: webserver, daemon, code server and any run worker go with it.
    with group(command, env=full_env, cwd=REPO_ROOT, log=log) as server:
        _wait_until_serving(url, server, log)
        yield DagsterUi(url, home, data_dir, log)


@contextmanager
def chromium() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        raise RuntimeError(f"{CHROMIUM} is missing: `make test` installs Debian's chromium (apt-get)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def new_page(browser: Browser, url: str) -> Page:
    """A page on the UI; Dagster's first-visit community dialog is skipped whenever it shows.

    It can open over another dialog (the launch dialog's portal then covers its buttons), so Skip
    gets a DOM click, which no overlay intercepts, rather than a pointer click at its position."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(30_000)
    page.add_locator_handler(
        page.get_by_text("Join the Dagster community"),
        lambda: page.get_by_role("button", name="Skip").dispatch_event("click"),
    )
    page.goto(url)
    return page
