"""Load the real service with wrk and print the Performance table, in one run.

``python -m bench.load`` starts ``gunicorn serve:app`` (2 workers) on 127.0.0.1, drives each
route with wrk for a fixed time at the given concurrencies, reads every worker's RSS before
and after, measures the in-process limit (bench/inprocess.py) and the FastAPI peer
(bench/peers/: ``uvicorn --workers 2`` as ``pip install fastapi uvicorn`` gives it, h11 on
asyncio; the same with TCP_NODELAY restored, see bench/peers/uvicorn_nodelay.py; and, when
``uvicorn[standard]`` is installed, ``uvicorn --workers 2`` on httptools and uvloop, which
FastAPI's own ``pip install "fastapi[standard]"`` gives), and prints one Markdown table.
Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import importlib.util
import json
import logging
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from bench import inprocess, samples
from bench.processes import cpu_seconds, rss_mb, uvicorn_peer
from tests.servers import encode_multipart, gunicorn_server, request

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Peer:
    """One way to run the FastAPI peer: through bench/peers/uvicorn_nodelay.py or not, and
    uvicorn's ``--http`` and ``--loop`` (each the name of the module it needs)."""

    nodelay: bool
    stack: tuple[str, str]


#: The peer's runs: as ``uvicorn --workers`` starts it from a plain install, the same with
#: TCP_NODELAY restored, and ``uvicorn --workers`` from ``uvicorn[standard]``.
PEERS = {
    "uvicorn --workers 2": Peer(nodelay=False, stack=("h11", "asyncio")),
    "uvicorn, TCP_NODELAY on": Peer(nodelay=True, stack=("h11", "asyncio")),
    "uvicorn[standard] --workers 2": Peer(nodelay=False, stack=("httptools", "uvloop")),
}
WRK_DIR = Path(__file__).resolve().parent / "wrk"
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "onnx_models"


@dataclasses.dataclass(frozen=True)
class Route:
    """One request that wrk repeats: where it goes, what it carries, how many images it
    classifies, and which in-process workload is its limit."""

    name: str
    method: str
    path: str
    body: bytes = b""
    content_type: str = ""
    header: tuple[str, str] | None = None
    images: int = 1
    limit: str | None = None


@dataclasses.dataclass
class Result:
    """What wrk measured for one route at one concurrency."""

    route: Route
    concurrency: int
    requests_per_second: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    errors: int
    #: CPU time the server's workers spent per request, in milliseconds (None: not measured).
    worker_cpu_ms: float | None = None
    #: Each worker's share of the CPU the workers spent, in the order they were given.
    worker_cpu_shares: tuple[float, ...] = ()

    @property
    def images_per_second(self) -> float:
        """Images classified per second (requests/s times images per request)."""
        return self.requests_per_second * self.route.images


def run_wrk(
    url: str,
    seconds: float,
    concurrency: int,
    script: str = "request.lua",
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run wrk (one thread, ``concurrency`` connections) and return the JSON its Lua
    ``done()`` printed."""
    command = [
        "wrk",
        "-t1",
        f"-c{concurrency}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(WRK_DIR / script),
        url,
    ]
    completed = subprocess.run(
        command, env={**os.environ, **(env or {})}, capture_output=True, text=True, check=True
    )
    for line in completed.stdout.splitlines():
        if line.startswith("WRK_RESULT "):
            return dict(json.loads(line.removeprefix("WRK_RESULT ")))
    raise RuntimeError(f"wrk printed no result:\n{completed.stdout}\n{completed.stderr}")


def drive(
    base_url: str,
    route: Route,
    seconds: float,
    concurrency: int,
    folder: Path,
    workers: Sequence[int] = (),
) -> Result:
    """Drive one route with wrk and summarise what it saw; with ``workers`` (server
    process ids), also the CPU time they spent per request."""
    body_file = folder / (re.sub(r"[^A-Za-z0-9]+", "_", route.name) + ".body")
    body_file.write_bytes(route.body)
    env = {
        "WRK_METHOD": route.method,
        "WRK_BODY_FILE": str(body_file) if route.body else "",
        "WRK_CONTENT_TYPE": route.content_type,
        "WRK_HEADER_NAME": route.header[0] if route.header else "",
        "WRK_HEADER_VALUE": route.header[1] if route.header else "",
    }
    cpu_before = [cpu_seconds(pid) for pid in workers]
    raw = run_wrk(base_url + route.path, seconds, concurrency, env=env)
    # A worker replaced during the run (max_requests) counts until it exited.
    spent_each = [
        max(0.0, cpu_seconds(pid) - before) for pid, before in zip(workers, cpu_before, strict=True)
    ]
    cpu_spent = sum(spent_each)
    errors = sum(raw["errors"].values())
    latency = raw["latency_us"]
    return Result(
        route,
        concurrency,
        raw["requests"] / (raw["duration_us"] / 1e6),
        latency["p50"] / 1000,
        latency["p90"] / 1000,
        latency["p99"] / 1000,
        errors,
        cpu_spent / raw["requests"] * 1000 if workers and raw["requests"] else None,
        tuple(spent / cpu_spent for spent in spent_each) if cpu_spent > 0 else (),
    )


def v2_json_body(input_name: str, shape: Sequence[int], batch: int) -> bytes:
    """A v2 infer request carrying ``batch`` MNIST digits as a JSON FP32 tensor."""
    tensor = samples.normalised_batch(batch).reshape([batch, *shape[1:]])
    request = {
        "inputs": [
            {
                "name": input_name,
                "shape": list(tensor.shape),
                "datatype": "FP32",
                "data": tensor.ravel().round(4).tolist(),
            }
        ]
    }
    return json.dumps(request).encode()


def v2_binary_body(
    input_name: str, shape: Sequence[int], output_name: str, batch: int
) -> tuple[bytes, str]:
    """A v2 infer request with the tensor as binary data (and a binary output); returns
    the body and the Inference-Header-Content-Length value."""
    tensor = samples.normalised_batch(batch).reshape([batch, *shape[1:]]).astype(np.float32)
    raw = tensor.tobytes()
    header = {
        "inputs": [
            {
                "name": input_name,
                "shape": list(tensor.shape),
                "datatype": "FP32",
                "parameters": {"binary_data_size": len(raw)},
            }
        ],
        "outputs": [{"name": output_name, "parameters": {"binary_data": True}}],
    }
    encoded = json.dumps(header).encode()
    return encoded + raw, str(len(encoded))


def build_routes(base_url: str, model: str) -> list[Route]:
    """Every route the benchmark drives, with bodies built from MNIST's first digits."""
    digit = samples.mnist_digits(1)[0]
    png_body, png_type = encode_multipart([("file", "digit.png", samples.png_28(digit))])
    jpeg_body, jpeg_type = encode_multipart(
        [("file", "photo.jpg", samples.photo_jpeg(digit))], "image/jpeg"
    )
    predict = f"/predict?model={model}"
    upload_routes = [
        Route("/predict png 28x28", "POST", predict, png_body, png_type, limit="png28"),
        Route("/predict jpeg 300x300", "POST", predict, jpeg_body, jpeg_type, limit="jpeg300"),
    ]
    health = Route("/health/live", "GET", "/health/live")
    status, _, answer = request("GET", f"{base_url}/v2/models/{model}")
    if status != 200:
        log.warning("GET /v2/models/%s answered %s: v2 routes skipped", model, status)
        return [*upload_routes, health]
    metadata = json.loads(answer)
    tensor_input = next(item for item in metadata["inputs"] if item["datatype"] == "FP32")
    input_name, shape = tensor_input["name"], tensor_input["shape"]
    output_name = metadata["outputs"][0]["name"]
    infer = f"/v2/models/{model}/infer"
    binary_1, header_1 = v2_binary_body(input_name, shape, output_name, 1)
    binary_64, header_64 = v2_binary_body(input_name, shape, output_name, 64)
    octet = "application/octet-stream"
    return [
        *upload_routes,
        Route("v2 infer JSON b1", "POST", infer, v2_json_body(input_name, shape, 1),
              "application/json", limit="tensor1"),
        Route("v2 infer binary b1", "POST", infer, binary_1, octet,
              ("Inference-Header-Content-Length", header_1), limit="tensor1"),
        Route("v2 infer binary b64", "POST", infer, binary_64, octet,
              ("Inference-Header-Content-Length", header_64), images=64, limit="tensor64"),
        health,
    ]  # fmt: skip


def limit_workloads(model: str) -> dict[str, inprocess.Workload]:
    """The in-process workload that is each route's limit, by the key routes refer to."""
    digit = samples.mnist_digits(1)[0]
    return {
        "png28": inprocess.Workload("png28", model, payload=samples.png_28(digit)),
        "jpeg300": inprocess.Workload("jpeg300", model, payload=samples.photo_jpeg(digit)),
        "tensor1": inprocess.Workload("tensor1", model, batch=1),
        "tensor64": inprocess.Workload("tensor64", model, batch=64),
    }


def _table(
    results: list[Result],
    limits: dict[str, inprocess.Limit],
    peer: dict[tuple[str, int], Result],
) -> str:
    lines = [
        "| route | conc. | req/s | images/s | p50 ms | p90 ms | p99 ms | errors "
        "| worker CPU ms/req | limit images/s | service/limit | CPU limit/service "
        "| peer req/s | ours/peer |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for result in results:
        limit = limits.get(result.route.limit or "")
        cpu = result.worker_cpu_ms
        cells = [
            result.route.name,
            str(result.concurrency),
            f"{result.requests_per_second:.0f}",
            f"{result.images_per_second:.0f}",
            f"{result.p50_ms:.2f}",
            f"{result.p90_ms:.2f}",
            f"{result.p99_ms:.2f}",
            str(result.errors),
            f"{cpu:.3f}" if cpu is not None else "",
            f"{limit.images_per_second:.0f}" if limit else "",
            f"{result.images_per_second / limit.images_per_second:.1%}" if limit else "",
            f"{limit.cpu_ms_per_image * result.route.images / cpu:.1%}" if limit and cpu else "",
        ]
        candidates = [taken for (_, c), taken in peer.items() if c == result.concurrency]
        peer_result = (
            max(candidates, key=lambda taken: taken.requests_per_second)
            if candidates and result.route.limit == "png28"
            else None
        )
        if peer_result:
            ratio = result.requests_per_second / peer_result.requests_per_second
            cells += [f"{peer_result.requests_per_second:.0f}", f"{ratio:.2f}x"]
        else:
            cells += ["", ""]
        lines.append("| " + " | ".join(cells) + " |")
    for (name, concurrency), peer_result in sorted(peer.items()):
        cpu = peer_result.worker_cpu_ms
        lines.append(
            f"| peer ({name}): /predict png 28x28 | {concurrency} "
            f"| {peer_result.requests_per_second:.0f} | {peer_result.images_per_second:.0f} "
            f"| {peer_result.p50_ms:.2f} | {peer_result.p90_ms:.2f} | {peer_result.p99_ms:.2f} "
            f"| {peer_result.errors} | {f'{cpu:.3f}' if cpu else ''} | | | | | |"
        )
    return "\n".join(lines)


def _best(samples_taken: list[Result]) -> Result:
    """Of repeated runs, the one with the most requests per second (the least disturbed by
    whatever else the machine was doing)."""
    return max(samples_taken, key=lambda result: result.requests_per_second)


def main() -> None:
    """Run the whole benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--model", default="cnn")
    parser.add_argument("--seconds", type=int, default=10, help="per route and concurrency")
    parser.add_argument("--concurrency", default="8", help="comma-separated, e.g. 1,8,32")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--rounds", type=int, default=1, help="repeat everything, keep each figure's best run"
    )
    parser.add_argument("--no-peer", action="store_true", help="skip the FastAPI peer")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    concurrencies = [int(value) for value in arguments.concurrency.split(",")]
    seconds = arguments.seconds
    workloads = limit_workloads(arguments.model)
    runs: dict[tuple[str, int], list[Result]] = collections.defaultdict(list)
    peer_runs: dict[tuple[str, int], list[Result]] = collections.defaultdict(list)
    limit_runs: dict[str, list[inprocess.Limit]] = collections.defaultdict(list)

    load_at_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-") as temporary, ExitStack() as stack:
        folder = Path(temporary)
        started = time.perf_counter()
        server = stack.enter_context(gunicorn_server(arguments.model_dir, arguments.workers))
        start_to_ready = time.perf_counter() - started
        while len(server.worker_pids()) < arguments.workers:
            time.sleep(0.1)
        peers: dict[str, tuple[str, list[int]]] = {}
        if not arguments.no_peer:
            for name, way in PEERS.items():
                missing = [module for module in way.stack if not importlib.util.find_spec(module)]
                if missing:
                    log.info("peer %s skipped: %s not installed", name, ", ".join(missing))
                    continue
                peers[name] = stack.enter_context(
                    uvicorn_peer(
                        arguments.model_dir, arguments.workers, nodelay=way.nodelay, stack=way.stack
                    )
                )
        routes = build_routes(server.base_url, arguments.model)
        peer_route = dataclasses.replace(routes[0], name="peer /predict png 28x28")
        for route in routes:  # One short pass so every worker has seen every route.
            drive(server.base_url, route, 1, arguments.workers, folder)
        for peer_url, _ in peers.values():
            drive(peer_url, peer_route, 1, arguments.workers, folder)
        workers = server.worker_pids()
        rss_before = {pid: rss_mb(pid) for pid in workers}
        # Each route's limit, our run and the peer's are taken one right after the other,
        # so that they see the same machine.
        for _ in range(arguments.rounds):
            limits_taken: set[str] = set()
            for route in routes:
                if route.limit and route.limit not in limits_taken:
                    limits_taken.add(route.limit)
                    limit_runs[route.limit].append(
                        inprocess.measure(
                            workloads[route.limit], min(seconds, 5), model_dir=arguments.model_dir
                        )
                    )
                for concurrency in concurrencies:
                    runs[route.name, concurrency].append(
                        drive(server.base_url, route, seconds, concurrency, folder, workers)
                    )
                    for name, (peer_url, peer_pids) in peers.items():
                        if route is routes[0]:
                            peer_runs[name, concurrency].append(
                                drive(peer_url, peer_route, seconds, concurrency, folder, peer_pids)
                            )
        rss_after = {pid: rss_mb(pid) for pid in server.worker_pids()}
        peer_rss = [rss_mb(pid) for _, pids in peers.values() for pid in pids]
    results = [_best(runs[route.name, c]) for route in routes for c in concurrencies]
    peer = {key: _best(taken) for key, taken in peer_runs.items()}
    limits = {
        key: max(taken, key=lambda limit: limit.images_per_second)
        for key, taken in limit_runs.items()
    }

    print(_table(results, limits, peer))
    print()
    print(f"start to ready: {start_to_ready:.2f} s ({arguments.workers} workers, both models)")
    print(
        f"{arguments.rounds} round(s) of {seconds} s per figure; machine load average (1 min) "
        f"at start and end: {load_at_start:.2f}, {os.getloadavg()[0]:.2f} on "
        f"{os.cpu_count()} cores"
    )
    for pid in workers:
        after = rss_after.get(pid)
        after_text = f"{after:.1f} MiB" if after is not None else "gone (replaced)"
        print(f"worker {pid} RSS: before {rss_before[pid]:.1f} MiB, after {after_text}")
    if peer_rss:
        print("peer worker RSS: " + ", ".join(f"{value:.1f} MiB" for value in peer_rss))
    png_route = routes[0].name
    for name, result in [(f"ours, {png_route}", _best(runs[png_route, concurrencies[-1]]))] + [
        (f"peer ({name})", taken) for (name, c), taken in peer.items() if c == concurrencies[-1]
    ]:
        shares = " / ".join(f"{share:.0%}" for share in result.worker_cpu_shares)
        print(f"worker CPU split, {name} at concurrency {concurrencies[-1]}: {shares}")
    print(
        "limits, no HTTP: "
        + ", ".join(
            f"{key} {limit.images_per_second:.0f} images/s ({limit.cpu_ms_per_image:.3f} "
            "CPU ms/image)"
            for key, limit in limits.items()
        )
    )
    if arguments.json:
        arguments.json.write_text(
            json.dumps(
                {
                    "results": [
                        {**dataclasses.asdict(result), "route": result.route.name}
                        for result in results
                    ],
                    "peer": [
                        dataclasses.asdict(taken) | {"route": f"peer {name}", "concurrency": c}
                        for (name, c), taken in peer.items()
                    ],
                    "limits": {key: dataclasses.asdict(value) for key, value in limits.items()},
                    "start_to_ready_s": start_to_ready,
                    "rss_before_mb": rss_before,
                    "rss_after_mb": rss_after,
                    "peer_rss_mb": peer_rss,
                },
                indent=2,
                default=str,
            )
        )


if __name__ == "__main__":
    main()
