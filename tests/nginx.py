"""A real nginx for the tests (Debian's package) running the shipped ``deploy/nginx.conf`` itself.

The file is used as written, with only what a test machine needs substituted: free loopback ports for
its listeners, the API processes under test as its upstream servers, a self-signed certificate and the
log folder in a temporary prefix, and whichever directives a test shortens (the stream's read timeout).
Each substitution must find its line exactly as often as expected, so an edit to the shipped file that
the tests no longer match fails here, loudly, instead of testing a different configuration.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
from pathlib import Path

from .support import ROOT, free_port, poll_until

DEPLOY_CONF = ROOT / "deploy" / "nginx.conf"
CERT_FOLDER = "/etc/letsencrypt/live/traces.example.com/"


def nginx_binary() -> str | None:
    """nginx on PATH, or Debian's /usr/sbin/nginx (not on a non-root user's PATH)."""
    found = shutil.which("nginx")
    if found:
        return found
    return "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None


def make_self_signed_cert(folder: Path) -> Path:
    """A throwaway certificate for 127.0.0.1 (``fullchain.pem``, ``privkey.pem``), named as certbot names them."""
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(folder / "privkey.pem"), "-out", str(folder / "fullchain.pem")],
        check=True, capture_output=True, timeout=60,
    )
    return folder


def substitute(text: str, pattern: str, replacement: str, count: int, what: str) -> str:
    """``re.subn`` that insists on ``count`` matches (multiline patterns)."""
    result, found = re.subn(pattern, lambda _: replacement, text, flags=re.MULTILINE)
    if found != count:
        raise AssertionError(f"deploy/nginx.conf: expected {count} × {what} ({pattern!r}), found {found}; "
                             "update tests/nginx.py to match the shipped file")
    return result


class Nginx:
    """``start()`` nginx on ``deploy/nginx.conf`` in front of ``upstreams`` (``host:port``), ``stop()`` it.

    ``url`` is the plain loopback listener, ``https_url`` the TLS + HTTP/2 one, ``redirect_url`` the
    port-80 server that sends browsers to HTTPS. ``replace`` maps exact lines of the file to test values,
    each of which must occur once (``{"proxy_read_timeout 120s;": "proxy_read_timeout 2s;"}``).
    """

    def __init__(self, root: Path, upstreams: list[str], cert_folder: Path, *,
                 replace: dict[str, str] | None = None) -> None:
        binary = nginx_binary()
        if binary is None:
            raise RuntimeError("nginx is not installed (./serve.sh test installs Debian's nginx as root)")
        self.binary = binary
        self.root = root
        self.upstreams = upstreams
        self.cert_folder = cert_folder
        self.replace = dict(replace or {})
        self.http_port, self.https_port, self.redirect_port = free_port(), free_port(), free_port()
        self.logs = root / "logs"
        self.conf_path = root / "nginx.conf"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def https_url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    @property
    def redirect_url(self) -> str:
        return f"http://127.0.0.1:{self.redirect_port}"

    def site_config(self) -> str:
        """The shipped server blocks with this test's ports, upstreams and paths."""
        text = DEPLOY_CONF.read_text()
        servers = "".join(f"    server {upstream};\n" for upstream in self.upstreams)
        text = substitute(text, r"^[ \t]*server 127\.0\.0\.1:8000;\n[ \t]*server 127\.0\.0\.1:8001;\n", servers, 1,
                          "the example upstream servers")
        text = substitute(text, r"^[ \t]*listen \[::\]:\d+[^;\n]*;\n", "", 2, "an IPv6 listener")
        text = substitute(text, r"\blisten 80;", f"listen 127.0.0.1:{self.redirect_port};", 1, "the port-80 listener")
        text = substitute(text, r"\blisten 443 ssl http2;", f"listen 127.0.0.1:{self.https_port} ssl http2;", 1,
                          "the TLS listener")
        text = substitute(text, r"\blisten 127\.0\.0\.1:8080;", f"listen 127.0.0.1:{self.http_port};", 1,
                          "the loopback HTTP listener")
        text = substitute(text, re.escape(CERT_FOLDER), f"{self.cert_folder}/", 2, "the certificate paths")
        text = substitute(text, r"/var/log/nginx/", f"{self.logs}/", 3, "a log path")
        for old, new in self.replace.items():
            text = substitute(text, re.escape(old), new, 1, repr(old))
        return text

    def main_config(self) -> str:
        """nginx.conf's main context, as a test runs it: in the foreground, everything under ``root``."""
        temp = self.root / "temp"
        as_root = "user root;\n" if os.geteuid() == 0 else ""  # workers must reach the temporary folders
        paths = "".join(f"    {kind}_temp_path {temp / kind};\n"
                        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        return (f"{as_root}daemon off;\nworker_processes 1;\npid {self.root / 'nginx.pid'};\n"
                f"lock_file {self.root / 'nginx.lock'};\nerror_log {self.logs / 'main.error.log'} info;\n"
                "events {\n    worker_connections 1024;\n}\n"
                f"http {{\n{paths}    access_log {self.logs / 'default.access.log'};\n"
                f"{self.site_config()}}}\n")

    def start(self) -> Nginx:
        (self.root / "temp").mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        self.conf_path.write_text(self.main_config())
        output = open(self.root / "nginx.out", "wb")
        self.process = subprocess.Popen(
            [self.binary, "-p", str(self.root), "-c", str(self.conf_path), "-e", str(self.logs / "main.error.log")],
            stdout=output, stderr=subprocess.STDOUT,
        )
        output.close()
        poll_until(self._answers, 15, "nginx to listen")
        return self

    def _answers(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"nginx exited ({self.process.returncode}): {self.startup_output()}")
        try:
            socket.create_connection(("127.0.0.1", self.http_port), timeout=1).close()
            return True
        except OSError:
            return False

    def startup_output(self) -> str:
        found = [path.read_text() for path in (self.root / "nginx.out", self.logs / "main.error.log") if path.exists()]
        return "\n".join(found)

    def stop(self) -> None:
        """SIGTERM (nginx's fast shutdown: open streams are cut), then wait for it."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def access_log(self) -> str:
        path = self.logs / "traces.access.log"
        return path.read_text() if path.exists() else ""

    def access_lines(self, path: str) -> list[str]:
        """The access log's lines for requests to ``path`` (logged when each request ends), query or not."""
        return [line for line in self.access_log().splitlines() if re.search(f" {re.escape(path)}[ ?]", line)]

    def error_log(self) -> str:
        path = self.logs / "traces.error.log"
        return path.read_text() if path.exists() else ""
