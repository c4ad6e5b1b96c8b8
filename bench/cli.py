"""``mnist-predict`` on a folder against the same files sent one at a time to a server.

Makes a folder of mixed uploads (28x28 MNIST PNGs, phone-photo JPEGs with uneven light,
black-on-white upscaled JPEGs, 280x280 canvas drawings), then times
- each file POSTed in turn to ``/predict`` of a running ``gunicorn serve:app`` (2 workers,
  one request at a time, the server already up and warm), and
- ``python -m serve.cli FOLDER --format jsonl > /dev/null`` as a fresh process (wall time,
  start-up and model loading included),
alternately for ``--rounds`` rounds, checks that both gave the same labels, and prints
the best time of each, their CPU seconds and the ratio of the wall times.

Run: ``python -m bench.cli [--count 1000] [--workers 2] [--jobs N] [--rounds 1]``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

import numpy as np
from PIL import Image

from bench.recognition import mnist_as_upload
from bench.samples import ROOT, mnist_digits, photo_jpeg, png_28
from serve.cpus import usable_cpus
from tests.images import encoded
from tests.servers import gunicorn_server

CONTENT_TYPES = {".png": "image/png", ".jpg": "image/jpeg"}


def canvas_png(digit: np.ndarray) -> bytes:
    """Like the web page's canvas export: 280x280 RGB, dark strokes on white."""
    ink = Image.fromarray(255 - digit, mode="L").resize((224, 224), Image.Resampling.BICUBIC)
    canvas = Image.new("L", (280, 280), 255)
    canvas.paste(ink, (28, 28))
    return encoded(canvas.convert("RGB"))


def make_uploads(folder: Path, count: int) -> list[Path]:
    """Write ``count`` mixed uploads into ``folder`` (4 in 10 MNIST PNGs, 3 photo JPEGs,
    2 upscaled JPEGs, 1 canvas PNG); returns their paths, sorted as the CLI reads them."""
    digits = mnist_digits(count)
    for index, digit in enumerate(digits):
        kind = index % 10
        if kind < 4:
            name, data = f"{index:05d}-mnist.png", png_28(digit)
        elif kind < 7:
            name, data = f"{index:05d}-photo.jpg", photo_jpeg(digit, seed=index)
        elif kind < 9:
            name, data = f"{index:05d}-upscaled.jpg", mnist_as_upload(digit, index)
        else:
            name, data = f"{index:05d}-canvas.png", canvas_png(digit)
        (folder / name).write_bytes(data)
    return sorted(folder.iterdir())


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds process ``pid`` has used so far (Linux: /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    """User + system CPU seconds of this process's finished children."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_server(base_url: str, paths: list[Path]) -> tuple[float, list[int | None]]:
    """Wall seconds to POST every file in turn, one at a time (http.client reconnects each
    time the server closes the connection), and the labels."""
    address = urllib.parse.urlsplit(base_url)
    connection = http.client.HTTPConnection(address.hostname or "127.0.0.1", address.port)
    bodies = [(path.read_bytes(), CONTENT_TYPES[path.suffix]) for path in paths]
    labels: list[int | None] = []
    started = time.perf_counter()
    for body, content_type in bodies:
        connection.request("POST", "/predict", body, {"Content-Type": content_type})
        response = connection.getresponse()
        answer = json.loads(response.read())
        labels.append(answer.get("label") if response.status == 200 else None)
    elapsed = time.perf_counter() - started
    connection.close()
    return elapsed, labels


def time_cli(folder: Path, jobs: int | None) -> tuple[float, float, list[int | None]]:
    """Wall and CPU seconds of ``python -m serve.cli FOLDER --format jsonl`` (its decode
    workers included) and the labels."""
    command = [sys.executable, "-m", "serve.cli", str(folder), "--format", "jsonl"]
    command += ["--jobs", str(jobs)] if jobs else []
    cpu_before, started = children_cpu_seconds(), time.perf_counter()
    completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    elapsed, cpu = time.perf_counter() - started, children_cpu_seconds() - cpu_before
    if completed.returncode not in (0, 1):
        raise RuntimeError(f"mnist-predict failed ({completed.returncode}):\n{completed.stderr}")
    return elapsed, cpu, [json.loads(line)["label"] for line in completed.stdout.splitlines()]


def main(argv: list[str] | None = None) -> int:
    """Make the folder, time the server and the CLI (best of ``--rounds``), print both."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000, help="uploads in the folder")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--jobs", type=int, default=None, help="CLI --jobs (default: its own)")
    parser.add_argument("--rounds", type=int, default=1, help="timings of each; best is kept")
    arguments = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mnist-cli-bench-") as temporary:
        folder = Path(temporary)
        paths = make_uploads(folder, arguments.count)
        size = sum(path.stat().st_size for path in paths)
        print(f"{len(paths)} uploads, {size / 1e6:.1f} MB, CPUs usable: {usable_cpus()}")
        server_times, server_cpu, cli_times, cli_cpu = [], [], [], []
        with gunicorn_server(ROOT / "onnx_models", workers=arguments.workers) as server:
            for _ in range(arguments.rounds):
                pids = server.worker_pids()
                before = sum(map(process_cpu_seconds, pids)) + time.process_time()
                server_seconds, server_labels = time_server(server.base_url, paths)
                after = sum(map(process_cpu_seconds, pids)) + time.process_time()
                server_times.append(server_seconds)
                server_cpu.append(after - before)
                # Interleaved with the server's rounds, so that both see the same noise;
                # the server's workers sit idle meanwhile.
                cli_seconds, cpu_seconds, cli_labels = time_cli(folder, arguments.jobs)
                cli_times.append(cli_seconds)
                cli_cpu.append(cpu_seconds)
    agree = sum(a == b for a, b in zip(server_labels, cli_labels, strict=True))
    server_best, cli_best = min(server_times), min(cli_times)
    print(
        f"server, one file at a time ({arguments.workers} gunicorn workers): "
        f"{server_best:.2f} s wall ({len(paths) / server_best:.0f} images/s), "
        f"{min(server_cpu):.2f} s CPU (workers and client)"
    )
    print(
        f"mnist-predict on the folder (start-up included): "
        f"{cli_best:.2f} s wall ({len(paths) / cli_best:.0f} images/s), "
        f"{min(cli_cpu):.2f} s CPU (all its processes)"
    )
    rounds = " ".join(f"{a / b:.2f}x" for a, b in zip(server_times, cli_times, strict=True))
    print(f"ratio: {server_best / cli_best:.2f}x (each round: {rounds})")
    print(f"same label from both for {agree} of {len(paths)} uploads")
    print(f"load average: {' '.join(f'{load:.1f}' for load in os.getloadavg())}")
    return 0 if agree == len(paths) else 1


if __name__ == "__main__":
    sys.exit(main())
