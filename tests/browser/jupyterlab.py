"""JupyterLab on loopback for the notebook's browser test: its own config, data, runtime and settings in
a temporary directory; no news, no update checks, every cell rendered even off screen."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from ..support import answers, free_port, poll_until

LAB_TOKEN = "notebook-test-token"


class JupyterLabProcess:
    def __init__(self, work: Path, notebook: Path, env: dict[str, str]) -> None:
        self.work = work
        self.notebook = notebook
        self.port = free_port()
        self.env = env
        self.log_path = work / "jupyterlab.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def notebook_url(self) -> str:
        return f"{self.url}/lab/tree/{self.notebook.name}?token={LAB_TOKEN}"

    def start(self) -> JupyterLabProcess:
        root = self.work / "notebooks"
        root.mkdir()
        shutil.copy(self.notebook, root / self.notebook.name)
        settings = self.work / "lab-settings"
        for extension, name, values in (
            ("apputils-extension", "notification", {"fetchNews": "false", "checkForUpdates": False}),
            ("notebook-extension", "tracker", {"windowingMode": "none"}),
        ):
            folder = settings / "@jupyterlab" / extension
            folder.mkdir(parents=True)
            (folder / f"{name}.jupyterlab-settings").write_text(json.dumps(values))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACES_", "JUPYTER"))}
        env.update(self.env)
        env.update(JUPYTER_CONFIG_DIR=str(self.work / "jupyter-config"), JUPYTER_DATA_DIR=str(self.work / "jupyter-data"),
                   JUPYTER_RUNTIME_DIR=str(self.work / "jupyter-runtime"), IPYTHONDIR=str(self.work / "ipython"),
                   JUPYTERLAB_SETTINGS_DIR=str(settings), JUPYTERLAB_WORKSPACES_DIR=str(self.work / "lab-workspaces"))
        args = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={self.port}",
                f"--ServerApp.root_dir={root}", f"--IdentityProvider.token={LAB_TOKEN}", "--ServerApp.port_retries=0",
                "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
        if os.geteuid() == 0:
            args.append("--allow-root")
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(args, cwd=self.work, env=env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        process = self.process
        poll_until(lambda: answers(process, f"{self.url}/api/status", "JupyterLab", self.log,
                                   {"Authorization": f"token {LAB_TOKEN}"}), 90, "JupyterLab to answer")
        return self

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:  # shuts its kernels down too
            httpx.post(f"{self.url}/api/shutdown", headers={"Authorization": f"token {LAB_TOKEN}"}, timeout=5)
            self.process.wait(timeout=15)
        except (httpx.HTTPError, subprocess.TimeoutExpired):
            os.killpg(self.process.pid, signal.SIGKILL)  # its own session: the server and its kernels
            self.process.wait(timeout=5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")
