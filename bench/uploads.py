"""How long reading an upload takes, end to end: one client sending one upload at a time to
``gunicorn serve:app`` (2 workers; it closes each connection after its answer, so every
request opens its own, as a client of it would), for three kinds of upload, each
kind's mean latency as a multiple of the tutorial CNN's batch-1 onnxruntime latency on one
thread (the yardstick of ``bench.model_latency``), measured in the same run.

The kinds: MNIST's own 28x28 PNG; a mid-size phone photo (640x480 JPEG, uneven light,
EXIF-rotated); a full-size phone photo (4032x3024 JPEG, the same). Each request is encoded
once and sent with one ``sendall`` on a TCP_NODELAY socket. Prints the yardstick, each
kind's latency and ratio against its target, where the time goes (decode, preprocess and
inference timed in process; the rest of the workers' CPU per request, from their threads'
``/proc`` schedstat: HTTP, multipart, Falcon; the client's CPU; and the remainder, time
nobody was on a CPU for the request: the kernel's loopback, scheduling, other processes),
the workers' minor page faults per request, and how much a worker's peak RSS grows while
it reads full-size photos.

    OPENBLAS_NUM_THREADS=1 python -m bench.uploads [--rounds 5] [--requests 40]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import http.client
import io
import os
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
from PIL import Image

from bench import model_latency, samples
from bench.breakdown import cpu_microseconds
from bench.load import DEFAULT_MODEL_DIR
from serve.images import decode, normalise
from serve.model.runtime import CPU, OnnxModel
from tests.recognition_sets import FULL_PHOTO, MID_PHOTO, phone_photo
from tests.servers import encode_multipart, gunicorn_server

MAX_PIXELS = 40_000_000
#: Each kind's target: mean latency at most this many times the yardstick.
TARGETS = {
    "MNIST 28x28 PNG": 2.5,
    "phone photo 640x480 JPEG": 5.0,
    "phone photo 4032x3024 JPEG": 60.0,
}
#: A worker's peak RSS may grow by at most this many MiB while it reads a full-size photo.
RSS_TARGET_MB = 60.0


def uploads(digit: np.ndarray) -> dict[str, bytes]:
    """The three kinds of upload, made from one MNIST digit."""
    buffer = io.BytesIO()
    Image.fromarray(digit, mode="L").save(buffer, format="PNG")
    return dict(
        zip(
            TARGETS,
            [
                buffer.getvalue(),
                phone_photo(digit, MID_PHOTO, 1, 6),
                phone_photo(digit, FULL_PHOTO, 1, 6),
            ],
            strict=True,
        )
    )


def yardstick_ms(rounds: int = 5, calls: int = 400) -> float:
    """Median batch-1 latency of the tutorial CNN in onnxruntime on one thread, in ms."""
    runner = model_latency.session(model_latency.tutorial_onnx())
    image = np.random.default_rng(0).random((1, 28, 28, 1), dtype=np.float32)
    model_latency.time_round(runner, image, calls)
    timings = [t for _ in range(rounds) for t in model_latency.time_round(runner, image, calls)]
    return statistics.median(timings)


def predict_request(data: bytes, host: str) -> bytes:
    """The whole HTTP/1.1 request posting ``data`` as a multipart file to ``/predict``."""
    body, content_type = encode_multipart([("file", "digit", data)], "image/jpeg")
    head = (
        f"POST /predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("ascii") + body


class Client:
    """One HTTP/1.1 client (TCP_NODELAY) sending encoded requests on a kept connection, and
    opening a new one, inside the timed request, whenever the server closed the last."""

    def __init__(self, base_url: str) -> None:
        address = urlsplit(base_url)
        self.host = address.netloc
        self._address = (address.hostname, address.port)
        self._socket: socket.socket | None = None

    def post(self, request: bytes) -> float:
        """Send one request with one ``sendall``, read the answer; the wall seconds it
        took, connecting included when there was no open connection."""
        started = time.perf_counter()
        if self._socket is None:
            self._socket = socket.create_connection(self._address, timeout=60)
            self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._socket.sendall(request)
        response = http.client.HTTPResponse(self._socket)
        response.begin()
        response.read()
        elapsed = time.perf_counter() - started
        if response.will_close:
            self.close()
        if response.status != 200:
            raise RuntimeError(f"/predict answered {response.status}")
        return elapsed

    def close(self) -> None:
        """Close the connection, if one is open."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def peak_rss_mb(pid: int) -> float:
    """Peak resident memory (VmHWM) of process ``pid`` so far, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for process {pid}")


def cpu_seconds_of_threads(pids: list[int]) -> float:
    """CPU seconds the threads of processes ``pids`` have run so far (``/proc`` schedstat:
    nanoseconds, not clock ticks)."""
    total = 0
    for pid in pids:
        for stat in Path(f"/proc/{pid}/task").glob("*/schedstat"):
            with contextlib.suppress(FileNotFoundError):
                total += int(stat.read_text().split()[0])
    return total / 1e9


def minor_faults(pids: list[int]) -> int:
    """Minor page faults processes ``pids`` have taken so far (``/proc`` stat)."""
    return sum(
        int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[7]) for pid in pids
    )


@dataclasses.dataclass
class Timings:
    """What one kind's requests took: wall seconds of each, and CPU seconds and minor page
    faults in all of the workers, CPU seconds of the client."""

    latencies: list[float] = dataclasses.field(default_factory=list)
    worker_cpu: float = 0.0
    worker_faults: int = 0
    client_cpu: float = 0.0

    def add_round(self, client: Client, request: bytes, count: int, workers: list[int]) -> None:
        """Send ``request`` ``count`` times and add what it took."""
        faults_before = minor_faults(workers)
        worker_before, client_before = cpu_seconds_of_threads(workers), time.process_time()
        self.latencies.extend(client.post(request) for _ in range(count))
        self.client_cpu += time.process_time() - client_before
        self.worker_cpu += cpu_seconds_of_threads(workers) - worker_before
        self.worker_faults += minor_faults(workers) - faults_before


def stage_split(data: bytes, model: OnnxModel, repeat: int) -> dict[str, float]:
    """CPU milliseconds of decode, preprocess and inference of one upload, in process."""
    image = decode.decode(data, MAX_PIXELS)
    redecode = functools.partial(decode.decode, data, MAX_PIXELS)
    array = normalise.to_mnist(image, redecode)[np.newaxis]
    decoding = cpu_microseconds(lambda: decode.decode(data, MAX_PIXELS), repeat)
    both = cpu_microseconds(
        lambda: normalise.to_mnist(decode.decode(data, MAX_PIXELS), redecode), repeat
    )
    inference = cpu_microseconds(lambda: model.predict(array), repeat)
    return {
        "decode": decoding / 1e3,
        "preprocess": (both - decoding) / 1e3,
        "inference": inference / 1e3,
    }


@contextlib.contextmanager
def client_of(base_url: str) -> Iterator[Client]:
    """A Client, closed on exit."""
    client = Client(base_url)
    try:
        yield client
    finally:
        client.close()


def main() -> int:
    """Measure and print; exit status 1 when a target is missed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--requests", type=int, default=40, help="per kind per round")
    arguments = parser.parse_args()
    if os.environ.get("OPENBLAS_NUM_THREADS") != "1":
        print("warning: set OPENBLAS_NUM_THREADS=1, as each worker runs on one core")
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="metrics-"))
    kinds = uploads(samples.mnist_digits(1)[0])
    yardstick = yardstick_ms()
    timings = {name: Timings() for name in kinds}
    env = {"OPENBLAS_NUM_THREADS": "1"}
    with (
        gunicorn_server(arguments.model_dir, 2, env=env) as server,
        client_of(server.base_url) as client,
    ):
        requests = {name: predict_request(data, client.host) for name, data in kinds.items()}
        for name in list(kinds)[:2]:
            for _ in range(20):
                client.post(requests[name])
        workers = server.worker_pids()
        before = {pid: peak_rss_mb(pid) for pid in workers}
        for _ in range(5):
            client.post(requests["phone photo 4032x3024 JPEG"])
        growth = max(peak_rss_mb(pid) - before[pid] for pid in workers)
        for _ in range(arguments.rounds):
            for name, request in requests.items():
                timings[name].add_round(client, request, arguments.requests, workers)
    model = OnnxModel(arguments.model_dir / "cnn.onnx", [CPU], 1)
    print(f"yardstick: tutorial CNN, onnxruntime batch 1, one thread: {yardstick:.3f} ms (median)")
    print(
        f"one client, one upload at a time, a connection each, gunicorn serve:app with 2 workers; "
        f"{arguments.rounds} interleaved rounds of {arguments.requests} requests per kind; "
        f"load average {' '.join(f'{load:.2f}' for load in os.getloadavg())} at the end"
    )
    print(
        "| upload | bytes | mean ms | x yardstick | target | decode ms | preprocess ms "
        "| inference ms | rest of worker CPU ms | client CPU ms | off CPU ms "
        "| worker page faults |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    missed = False
    for name, data in kinds.items():
        timing = timings[name]
        count = len(timing.latencies)
        mean = statistics.fmean(timing.latencies) * 1e3
        ratio = mean / yardstick
        split = stage_split(data, model, 50 if "4032" in name else 500)
        worker, client_cpu = timing.worker_cpu / count * 1e3, timing.client_cpu / count * 1e3
        missed |= ratio > TARGETS[name]
        print(
            f"| {name} | {len(data):,} | {mean:.3f} | {ratio:.1f} | <= {TARGETS[name]:g} | "
            f"{split['decode']:.3f} | {split['preprocess']:.3f} | {split['inference']:.3f} | "
            f"{worker - sum(split.values()):.3f} | {client_cpu:.3f} | "
            f"{mean - worker - client_cpu:.3f} | {timing.worker_faults / count:.0f} |"
        )
    print(
        f"worker peak RSS growth reading 4032x3024 JPEGs: {growth:.1f} MiB "
        f"(target <= {RSS_TARGET_MB:g})"
    )
    missed |= growth > RSS_TARGET_MB
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
