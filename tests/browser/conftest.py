"""Browser tests: Debian's Chromium driven by Playwright against ``panel serve`` and a real API."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..support import ROOT, ApiProcess, answers, free_port, poll_until
from .chromium import CHROMIUM, CHROMIUM_ARGS

SHOTS = ROOT / "tests" / "browser" / "screenshots"


def pytest_collection_modifyitems(items):
    if not Path(CHROMIUM).exists():
        skip = pytest.mark.skip(reason="Debian's chromium is not installed (./serve.sh test installs it as root)")
        for item in items:
            if "browser" in str(item.fspath):
                item.add_marker(skip)


class PanelProcess:
    """``panel serve dashboard/app.py`` on loopback, pointed at an API with a user's token."""

    def __init__(self, tmp_path: Path, api_url: str, token: str | None, extra_env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.log_path = tmp_path / f"panel-{self.port}.log"
        self.env = {**os.environ, "TRACES_API_URL": api_url, **(extra_env or {})}
        self.env.pop("TRACES_TOKEN", None)
        if token:
            self.env["TRACES_TOKEN"] = token
        self.cwd = tmp_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> PanelProcess:
        return self.launch().wait_ready()

    def launch(self) -> PanelProcess:
        """Start ``panel serve`` without waiting for it: it needs the API only once a page opens."""
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "panel", "serve", str(ROOT / "dashboard" / "app.py"), "--port", str(self.port),
                 "--address", "127.0.0.1", "--allow-websocket-origin", f"127.0.0.1:{self.port}", "--liveness",
                 # Not shorter: a session discarded before a slow page connects comes back unstyled.
                 "--unused-session-lifetime", "8000", "--check-unused-sessions", "1000"],
                cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            )
        return self

    def wait_ready(self) -> PanelProcess:
        assert self.process is not None, "launch() first"
        process = self.process
        poll_until(lambda: answers(process, f"{self.url}/liveness", "panel serve", self.log), 60, "panel serve to answer")
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def app_url(self) -> str:
        return f"{self.url}/app"

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def log(self) -> str:
        return self.log_path.read_text()


@pytest.fixture(scope="module")
def browser():
    """One Chromium per module: sync Playwright keeps an event loop running in this thread until it
    stops, which the asyncio tests of later modules cannot share."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1500, "height": 1000})
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def stack(tmp_path) -> Iterator:
    """Start an API process and a dashboard for a user: ``api, panel = stack(user="alice")``."""
    started: list = []

    def start(user: str = "alice", api_env: dict[str, str] | None = None, panel_env: dict[str, str] | None = None,
              panel_token: bool = True):
        api = ApiProcess(tmp_path, env=api_env).launch()
        started.append(api)
        panel = PanelProcess(tmp_path, api.url, api.token(user) if panel_token else None, panel_env).launch()
        started.append(panel)
        return api.wait_ready(), panel.wait_ready()  # started side by side: a second less per test

    yield start
    for process in reversed(started):
        process.stop()


def shot(page, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
