"""Process helpers for the benchmarks: resident memory, children, and the peer server."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from tests.servers import ROOT, free_port, request, stop_process_group


def rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` in MiB (VmRSS of /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time process ``pid`` has used so far, in seconds (0 once it has
    exited)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    """Process ids of the direct children of ``pid``."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()] if path.exists() else []


def _command_line(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    return ""


@contextlib.contextmanager
def uvicorn_peer(
    model_dir: Path,
    workers: int = 2,
    env: Mapping[str, str] | None = None,
    nodelay: bool = False,
    stack: tuple[str, str] = ("h11", "asyncio"),
) -> Iterator[tuple[str, list[int]]]:
    """Run the FastAPI peer under ``uvicorn --workers`` (with ``nodelay``, under
    bench/peers/uvicorn_nodelay.py, which restores TCP_NODELAY), on the ``stack`` given
    (uvicorn's ``--http`` and ``--loop``); yield its base URL and the worker pids once every
    worker answers."""
    port = free_port()
    environment = {
        **os.environ,
        "MNIST_MODEL_DIR": str(model_dir),
        "WEB_CONCURRENCY": str(workers),
        **(env or {}),
    }
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "bench.peers.fastapi_app:app",
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    if nodelay:
        command = [sys.executable, "-m", "bench.peers.uvicorn_nodelay"]
    http, loop = stack
    command += ["--http", http, "--loop", loop]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    process = subprocess.Popen(command, cwd=ROOT, env=environment, start_new_session=True)
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        worker_pids: list[int] = []
        while time.monotonic() < deadline:
            worker_pids = [
                pid for pid in children(process.pid) if "spawn_main" in _command_line(pid)
            ]
            with contextlib.suppress(OSError):
                if len(worker_pids) == workers and request("GET", base_url + "/health/live")[0]:
                    break
            time.sleep(0.2)
        else:
            raise RuntimeError("the uvicorn peer did not start")
        # Each worker loads the models before it accepts; give the slower one time to.
        time.sleep(3.0)
        yield base_url, worker_pids
    finally:
        stop_process_group(process, 20)
