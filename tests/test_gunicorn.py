"""Integration: real ``gunicorn serve:app -c gunicorn.conf.py`` with 2 workers on 127.0.0.1."""

from __future__ import annotations

import http.client
import os
import re
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from serve.cpus import usable_cpus
from serve.images import decode, normalise
from serve.model.runtime import ModelRepository
from tests.images import encoded
from tests.servers import (
    ROOT,
    GunicornServer,
    get_json,
    gunicorn_server,
    post_files,
    request,
)

pytestmark = pytest.mark.slow


def digit_png(stroke: tuple[int, int, int, int]) -> bytes:
    """A 100x100 PNG: a dark stroke on white paper."""
    image = Image.new("L", (100, 100), 255)
    ImageDraw.Draw(image).line(stroke, fill=0, width=9)
    return encoded(image)


SEVEN = digit_png((25, 20, 75, 80))
ONE = digit_png((50, 10, 50, 90))


@pytest.fixture(scope="module")
def server(fake_models: Path) -> Iterator[GunicornServer]:
    """One gunicorn with 2 workers over the fake models, for the whole module."""
    with gunicorn_server(fake_models, workers=2) as running:
        yield running


@pytest.fixture(scope="module")
def local(fake_models: Path) -> ModelRepository:
    """The same models in this process, to compare the served answers with."""
    return ModelRepository.load(fake_models, "cnn", "cpu", 1)


def local_label(repository: ModelRepository, model: str, data: bytes) -> int:
    image = normalise.to_mnist(decode.decode(data, 10**8))
    return int(np.argmax(repository.get(model).predict(image[np.newaxis])[0]))


def connect(server: GunicornServer) -> http.client.HTTPConnection:
    address = urllib.parse.urlsplit(server.base_url)
    return http.client.HTTPConnection(address.hostname or "", address.port, timeout=30)


def test_config_checks(fake_models: Path) -> None:
    """``gunicorn --check-config serve:app`` loads the config and the app without error."""
    environment = {**os.environ, "MNIST_MODEL_DIR": str(fake_models), "PORT": ""}
    command = [sys.executable, "-m", "gunicorn", "serve:app"]
    check = subprocess.run([*command, "--check-config"], cwd=ROOT, env=environment)
    assert check.returncode == 0
    printed = subprocess.run(
        [*command, "--print-config"], cwd=ROOT, env=environment, capture_output=True, text=True
    ).stdout
    assert re.search(r"^preload_app += False$", printed, re.MULTILINE)
    assert re.search(r"^worker_class += sync$", printed, re.MULTILINE)
    assert "0.0.0.0:8001" in printed


def test_port_and_host_come_from_the_environment(fake_models: Path) -> None:
    environment = {**os.environ, "PORT": "9123", "BIND_HOST": "127.0.0.1"}
    printed = subprocess.run(
        [sys.executable, "-m", "gunicorn", "serve:app", "--print-config"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert re.search(r"^bind += \['127.0.0.1:9123'\]$", printed, re.MULTILINE)


def test_two_workers_ready_with_both_models(server: GunicornServer) -> None:
    assert len(server.worker_pids()) == 2
    status, body = get_json(server.base_url + "/health/ready")
    assert status == 200
    assert {model["name"] for model in body["models"]} == {"cnn", "softmax"}
    # Each worker logs, through gunicorn's error log, which provider each model got.
    assert re.search(
        r"\[INFO\] model cnn version 1 loaded from .* on CPUExecutionProvider", server.log()
    )


def test_post_fork_gives_each_worker_its_share_of_blas_threads() -> None:
    """numpy is imported after the hook, so the variable it sets decides OpenBLAS's pool."""
    script = (
        "import logging, os, runpy, types\n"
        "os.environ.pop('OPENBLAS_NUM_THREADS', None)\n"
        "hooks = runpy.run_path('gunicorn.conf.py')\n"
        "log = types.SimpleNamespace(error_log=logging.getLogger('gunicorn.error'))\n"
        "server = types.SimpleNamespace(num_workers=2, log=log)\n"
        "hooks['post_fork'](server, types.SimpleNamespace())\n"
        "print(os.environ['OPENBLAS_NUM_THREADS'])\n"
    )
    printed = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert printed.strip() == str(max(1, usable_cpus() // 2))


def test_multipart_upload(server: GunicornServer, local: ModelRepository) -> None:
    status, body = post_files(server.base_url + "/predict", [("file", "seven.png", SEVEN)])
    assert status == 200
    assert body["classifier"] == "CNNClassifier"
    assert body["label"] == local_label(local, "cnn", SEVEN)
    assert len(body["probabilities"]) == 10


def test_several_files_on_upload_with_model(server: GunicornServer, local: ModelRepository) -> None:
    files = [("file", "seven.png", SEVEN), ("image", "one.png", ONE)]
    status, body = post_files(server.base_url + "/upload?model=softmax", files)
    assert status == 200
    assert body["model"] == "softmax"
    assert [(p["filename"], p["label"]) for p in body["predictions"]] == [
        ("seven.png", local_label(local, "softmax", SEVEN)),
        ("one.png", local_label(local, "softmax", ONE)),
    ]


def test_raw_and_chunked_bodies(server: GunicornServer) -> None:
    status, _, raw = request(
        "POST", server.base_url + "/predict", SEVEN, {"Content-Type": "image/png"}
    )
    assert status == 200
    connection = connect(server)
    chunks = iter([SEVEN[:100], SEVEN[100:]])
    connection.request("POST", "/predict", body=chunks, headers={"Content-Type": "image/png"})
    response = connection.getresponse()
    assert response.status == 200
    assert response.read() == raw
    connection.close()


def test_bad_input_is_4xx_json(server: GunicornServer) -> None:
    status, body = post_files(server.base_url + "/predict", [("file", "x.png", b"not an image")])
    assert status in (400, 415)
    assert body["description"]
    status, _, answer = request(
        "POST", server.base_url + "/predict", b"{}", {"Content-Type": "application/json"}
    )
    assert status == 415
    assert b"multipart/form-data" in answer


def test_oversized_body_is_refused_before_it_is_sent(server: GunicornServer) -> None:
    connection = connect(server)
    connection.putrequest("POST", "/predict")
    connection.putheader("Content-Type", "image/png")
    connection.putheader("Content-Length", str(500 * 1024 * 1024))
    connection.endheaders(b"\x89PNG")
    response = connection.getresponse()
    assert response.status == 413
    assert b"limit" in response.read()
    connection.close()


def test_sigterm_exits_cleanly(fake_models: Path) -> None:
    with gunicorn_server(fake_models, workers=2) as running:
        status, _ = post_files(running.base_url + "/predict", [("file", "seven.png", SEVEN)])
        assert status == 200
        assert running.stop(timeout=10) == 0
        assert "Shutting down: Master" in running.log()
