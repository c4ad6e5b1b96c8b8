"""Start real ``gunicorn serve:app`` on a free 127.0.0.1 port for integration tests, and
talk to it with the standard library only (``requests`` may not be installed).

    with start_gunicorn(model_dir) as base_url:
        status, body = post_files(base_url + "/predict", [("file", "seven.png", data)])

``gunicorn_server`` yields a :class:`GunicornServer` instead, for tests that need the
master process (signals, worker pids) or the server log.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


@dataclasses.dataclass
class GunicornServer:
    """A running gunicorn master: its base URL, its process and where it logs."""

    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        """The master's process id."""
        return self.process.pid

    def log(self) -> str:
        """Everything gunicorn and the app wrote so far (access log included)."""
        return self.log_path.read_text(errors="replace")

    def worker_pids(self) -> list[int]:
        """Process ids of the master's current workers (Linux: read from /proc)."""
        children = Path(f"/proc/{self.pid}/task/{self.pid}/children")
        return [int(pid) for pid in children.read_text().split()] if children.exists() else []

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM the master, wait for it to exit and return its exit code (SIGKILL of
        the whole process group if it has not exited within ``timeout`` seconds)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL the master and its workers at once."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_ready(server: GunicornServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"gunicorn exited with code {server.process.returncode}:\n{server.log()}"
            )
        with contextlib.suppress(OSError):
            status, _ = get_json(server.base_url + "/health/ready", timeout=2.0)
            if status == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"gunicorn not ready after {timeout} s:\n{server.log()}")


@contextlib.contextmanager
def gunicorn_server(
    model_dir: Path,
    workers: int = 2,
    env: Mapping[str, str] | None = None,
    args: Sequence[str] = (),
    ready_timeout: float = 60.0,
    root: Path = ROOT,
) -> Iterator[GunicornServer]:
    """Run ``gunicorn serve:app -c gunicorn.conf.py`` from ``root`` (this checkout, or
    another one a benchmark compares against) with ``workers`` workers over ``model_dir``,
    wait until ``/health/ready`` answers 200 and yield the server. ``env`` adds to (or
    overrides) the environment, ``args`` to the command line. The server and its workers
    are stopped on exit, even on failure."""
    port = free_port()
    environment = {
        **os.environ,
        "MNIST_MODEL_DIR": str(model_dir),
        "WEB_CONCURRENCY": str(workers),
        "PORT": str(port),
        "PYTHONUNBUFFERED": "1",
    }
    environment.update(env or {})
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "serve:app",
        "-c",
        str(root / "gunicorn.conf.py"),
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        *args,
    ]
    with tempfile.TemporaryDirectory(prefix="gunicorn-") as folder:
        log_path = Path(folder) / "gunicorn.log"
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                command,
                cwd=root,
                env=environment,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        server = GunicornServer(f"http://127.0.0.1:{port}", process, log_path)
        try:
            _wait_ready(server, ready_timeout)
            yield server
        finally:
            if server.process.poll() is None:
                server.stop(timeout=10.0)
            # Workers orphaned by a killed master must not outlive the test either.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)


@contextlib.contextmanager
def start_gunicorn(
    model_dir: Path, workers: int = 2, env: Mapping[str, str] | None = None
) -> Iterator[str]:
    """Like :func:`gunicorn_server`, yielding only the base URL (``http://127.0.0.1:PORT``)."""
    with gunicorn_server(model_dir, workers, env) as server:
        yield server.base_url


def request(
    method: str,
    url: str,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> tuple[int, dict[str, str], bytes]:
    """Send one HTTP request; returns (status, headers, body) for any status, 4xx/5xx too."""
    outgoing = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(outgoing, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def get_json(url: str, timeout: float = 30.0) -> tuple[int, Any]:
    """GET ``url``; returns (status, decoded JSON body)."""
    status, _, body = request("GET", url, timeout=timeout)
    return status, json.loads(body)


def encode_multipart(
    files: Sequence[tuple[str, str, bytes]], content_type: str = "image/png"
) -> tuple[bytes, str]:
    """Encode (field name, filename, bytes) parts as multipart/form-data; returns the body
    and its Content-Type header value."""
    boundary = uuid.uuid4().hex
    chunks: list[bytes] = []
    for field, filename, data in files:
        chunks.append(
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n".encode()
        )
        chunks.append(data)
        chunks.append(b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


def post_files(
    url: str, files: Sequence[tuple[str, str, bytes]], timeout: float = 30.0
) -> tuple[int, Any]:
    """POST (field name, filename, bytes) parts as multipart/form-data; returns (status,
    decoded JSON body)."""
    body, content_type = encode_multipart(files)
    status, _, answer = request("POST", url, body, {"Content-Type": content_type}, timeout)
    return status, json.loads(answer)


def stop_process_group(process: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM the process group ``process`` leads (started with ``start_new_session``),
    wait up to ``timeout`` seconds for it to exit, then SIGKILL the group."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


#: deploy/run-behind-nginx.sh, or another script taking the same arguments (PORT
#: UPSTREAM_PORT) named by RUN_BEHIND_NGINX, to try a different proxy configuration.
RUN_BEHIND_NGINX = Path(
    os.environ.get("RUN_BEHIND_NGINX") or ROOT / "deploy" / "run-behind-nginx.sh"
)


@contextlib.contextmanager
def behind_nginx(upstream_url: str, ready_timeout: float = 15.0) -> Iterator[str]:
    """Run RUN_BEHIND_NGINX (nginx on a free port in front of the gunicorn at
    ``upstream_url``), wait until /health/ready answers through it and yield nginx's base
    URL; nginx is stopped on exit."""
    port = free_port()
    upstream_port = upstream_url.rsplit(":", 1)[1]
    base_url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [str(RUN_BEHIND_NGINX), str(port), upstream_port],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + ready_timeout
            while True:
                with contextlib.suppress(OSError):
                    if request("GET", base_url + "/health/ready", timeout=2)[0] == 200:
                        break
                if process.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise RuntimeError(f"nginx did not come up:\n{log.read().decode()}")
                time.sleep(0.1)
            yield base_url
        finally:
            stop_process_group(process, 10)
