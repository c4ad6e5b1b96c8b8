"""Hostile rounds against real gunicorn (2 workers), and slow clients through the shipped
nginx: what each hostile request is answered, how long it took and how much worker CPU
it cost; each worker's RSS before and after the repeated rounds; and legitimate
latencies while 1,400 slow, unfinished and idle connections are held open.

``python -m bench.hostile --rounds 5 --hold-seconds 30`` prints the figures that
docs/reliability.md quotes, and exits 1 on a 5xx, a replaced worker or RSS growth over
25% per worker (each keeps up to 8 MiB of free heap: gunicorn.conf.py).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import json
import resource
import socket
import statistics
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from bench.load import DEFAULT_MODEL_DIR
from bench.processes import cpu_seconds, rss_mb
from tests.images import png_declaring
from tests.servers import (
    GunicornServer,
    behind_nginx,
    encode_multipart,
    gunicorn_server,
    request,
)

MAX_RSS_GROWTH = 0.25
HEAVY_SIDE = 6324


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _heavy_png() -> bytes:
    """A real 6324x6324 RGBA PNG (about 180 KB; 40 million pixels once decoded)."""
    canvas = np.zeros((HEAVY_SIDE, HEAVY_SIDE), np.uint8)
    canvas[HEAVY_SIDE // 4 : 3 * HEAVY_SIDE // 4, HEAVY_SIDE // 2 - 300 : HEAVY_SIDE // 2 + 300] = (
        255
    )
    return _png(Image.fromarray(canvas).convert("RGBA"))


def _lying_png(width: int, height: int) -> bytes:
    """A PNG header declaring ``width`` x ``height`` over a 28x28 payload."""
    rows = b"".join(b"\x00" + bytes(28) for _ in range(28))
    return png_declaring(width, height, zlib.compress(rows))


def _http(path: str, headers: dict[str, str], body: bytes) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: bench", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _raw(
    base_url: str, data: bytes, half_close: bool = False, timeout: float = 40.0
) -> tuple[str, bytes]:
    """Send ``data``; returns (status or what happened, start of the answer's body)."""
    host, port = base_url.rsplit("/", 1)[1].split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as connection:
        connection.sendall(data)
        if half_close:
            connection.shutdown(socket.SHUT_WR)
        answer = b""
        try:
            while b"\r\n\r\n" not in answer or len(answer.partition(b"\r\n\r\n")[2]) < 2:
                chunk = connection.recv(65536)
                if not chunk:
                    break
                answer += chunk
                if answer.endswith(b"}") or answer.endswith(b"</html>"):
                    break
        except TimeoutError:
            return "no answer", answer[:80]
    if not answer:
        return "closed", b""
    head, _, body = answer.partition(b"\r\n\r\n")
    return head.split(b" ", 2)[1].decode(), body[:160]


def hostile_cases() -> list[tuple[str, Callable[[str], tuple[str, bytes]]]]:
    """(case, send it to a base URL) for every case of issue 16 a request can carry."""
    heavy = _heavy_png()
    many, many_type = encode_multipart([("file", f"{i}.png", heavy) for i in range(57)])
    one, one_type = encode_multipart([("file", "big.png", heavy)])
    budget_v2 = json.dumps(
        {
            "inputs": [
                {
                    "name": "image_bytes",
                    "shape": [2],
                    "datatype": "BYTES",
                    "data": [base64.b64encode(_lying_png(6000, 6000)).decode()] * 2,
                }
            ]
        }
    ).encode()
    chunked = (
        b"POST /predict HTTP/1.1\r\nHost: bench\r\nContent-Type: image/png\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    short = (
        b"POST /predict HTTP/1.1\r\nHost: bench\r\nContent-Type: image/png\r\n"
        b"Content-Length: 1000\r\n\r\n" + heavy[:64]
    )
    return [
        ("57 PNGs 6324x6324 RGBA in one /predict",
         lambda url: _raw(url, _http("/predict", {"Content-Type": many_type}, many))),
        ("one PNG 6324x6324 RGBA (the largest allowed)",
         lambda url: _raw(url, _http("/predict", {"Content-Type": one_type}, one))),
        ("v2 image_bytes over the pixel budget",
         lambda url: _raw(url, _http("/v2/models/cnn/infer",
                                     {"Content-Type": "application/json"}, budget_v2))),
        ("chunk size -5", lambda url: _raw(url, chunked + b"-5\r\nhello\r\n0\r\n\r\n")),
        ("chunk size zz", lambda url: _raw(url, chunked + b"zz\r\nhello\r\n0\r\n\r\n")),
        ("chunk terminator missing", lambda url: _raw(url, chunked + b"5\r\nhelloXX0\r\n\r\n")),
        ("chunked body cut short, half-closed",
         lambda url: _raw(url, chunked + b"100\r\n" + heavy[:64], half_close=True)),
        ("body short of Content-Length, half-closed",
         lambda url: _raw(url, short, half_close=True)),
        ("body short of Content-Length, left open", lambda url: _raw(url, short)),
        ("50 MB announced with Expect: 100-continue",
         lambda url: _raw(url, b"POST /predict HTTP/1.1\r\nHost: bench\r\n"
                          b"Content-Type: image/png\r\nContent-Length: 52428800\r\n"
                          b"Expect: 100-continue\r\n\r\n")),
    ]  # fmt: skip


def _workers_cpu(server: GunicornServer) -> float:
    return sum(cpu_seconds(pid) for pid in server.worker_pids())


def run_rounds(server: GunicornServer, rounds: int) -> bool:
    """Run every hostile case ``rounds`` times; print answers, time and worker CPU, and
    RSS per worker before and after. Returns whether everything held."""
    cases = hostile_cases()
    workers = sorted(server.worker_pids())
    before = {pid: rss_mb(pid) for pid in workers}
    healthy = True
    for round_number in range(1, rounds + 1):
        for name, send in cases:
            cpu, started = _workers_cpu(server), time.monotonic()
            status, body = send(server.base_url)
            seconds, spent = time.monotonic() - started, _workers_cpu(server) - cpu
            if round_number == 1:
                print(f"  {name:48s} {status:>9s} {seconds:6.2f} s  cpu {spent:5.2f} s  {body!r}")
            healthy &= not status.startswith("5") and status not in ("closed", "no answer")
        after = {pid: rss_mb(pid) for pid in workers}
        print(
            f"round {round_number}: RSS per worker (MiB) "
            + ", ".join(f"{pid}: {before[pid]:.0f} -> {after[pid]:.0f}" for pid in workers)
        )
    grown = {pid: after[pid] / before[pid] - 1 for pid in workers}
    print("RSS growth per worker: " + ", ".join(f"{pid}: {g:+.0%}" for pid, g in grown.items()))
    same = sorted(server.worker_pids()) == workers
    print(f"same worker processes afterwards: {same}")
    return healthy and same and max(grown.values()) <= MAX_RSS_GROWTH


@contextlib.contextmanager
def held_connections(base_url: str, count: int) -> Iterator[None]:
    """Hold ``count`` connections open: a third trickle a request line, a third sent half
    a body, a third sent nothing."""
    host, port = base_url.rsplit("/", 1)[1].split(":")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, count + 512)), hard))
    sockets = []
    half_body = _http("/predict", {"Content-Type": "image/png"}, bytes(20000))[:-10000]
    try:
        for index in range(count):
            connection = socket.create_connection((host, int(port)), timeout=10)
            sockets.append(connection)
            connection.sendall([b"GE", half_body, b""][index % 3])
        yield
    finally:
        for connection in sockets:
            connection.close()


def time_legit(base_url: str, seconds: float) -> list[float]:
    """Legitimate /health/ready and /predict, one after the other for ``seconds``; returns
    their latencies (10 s meaning no answer within 10 s)."""
    body, content_type = encode_multipart([("file", "one.png", _png(Image.new("L", (28, 28))))])
    latencies = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for method, path, payload in (("GET", "/health/ready", None), ("POST", "/predict", body)):
            started = time.monotonic()
            try:
                request(method, base_url + path, payload, {"Content-Type": content_type}, 10)
                latencies.append(time.monotonic() - started)
            except OSError:
                latencies.append(10.0)
        time.sleep(0.2)
    return latencies


def _summary(latencies: list[float]) -> str:
    ordered = sorted(latencies)
    return (
        f"{len(ordered)} requests, median {statistics.median(ordered) * 1000:.0f} ms, "
        f"max {ordered[-1] * 1000:.0f} ms, over 0.5 s: {sum(1 for x in ordered if x >= 0.5)}"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the rounds and the slow-client trial; exit 1 when something did not hold."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=1400)
    parser.add_argument("--hold-seconds", type=float, default=30.0)
    parser.add_argument("--bare-connections", type=int, default=50)
    arguments = parser.parse_args(argv)

    held = True
    with gunicorn_server(arguments.model_dir, workers=2) as server:
        print(f"hostile rounds against bare gunicorn, 2 workers, {arguments.rounds} rounds:")
        held &= run_rounds(server, arguments.rounds)
        with behind_nginx(server.base_url) as proxy:
            print(f"{arguments.connections} held connections through nginx:")
            with held_connections(proxy, arguments.connections):
                latencies = time_legit(proxy, arguments.hold_seconds)
            print("  legitimate: " + _summary(latencies))
            held &= max(latencies) < 0.5
        print(f"{arguments.bare_connections} held connections on bare gunicorn:")
        with held_connections(server.base_url, arguments.bare_connections):
            print("  legitimate: " + _summary(time_legit(server.base_url, 5)))
        print(f"same worker processes at the end: {sorted(server.worker_pids())}")
    return 0 if held else 1


if __name__ == "__main__":
    sys.exit(main())
