"""Schemathesis fuzzes every operation of /openapi.json against a real gunicorn: no 5xx, and
every answer's status, content type, headers and body are the ones the document declares."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import gunicorn_server

CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
)
#: Test cases per operation and phase; about a minute in all on two cores.
MAX_EXAMPLES = 25
SEED = 20240601


@pytest.mark.slow
def test_schemathesis_finds_nothing(fake_models: Path) -> None:
    with gunicorn_server(fake_models, workers=2) as server:
        workers_before = sorted(server.worker_pids())
        command = [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "run",
            f"{server.base_url}/openapi.json",
            "--checks",
            ",".join(CHECKS),
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            str(MAX_EXAMPLES),
            "--seed",
            str(SEED),
            # One client thread: hypothesis' generation is not thread-safe on CPython 3.11.
            "--workers",
            "1",
            "--request-timeout",
            "30",
            "--generation-database",
            "none",
            "--no-color",
        ]
        run = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-5000:]
        assert sorted(server.worker_pids()) == workers_before, "a worker died or was replaced"
        server.stop()
        assert "Traceback" not in server.log()
