"""Soak: mixed good and bad requests at high concurrency for a fixed time, then check that
nothing answered 5xx and that worker memory did not grow.

``python -m bench.soak --seconds 60 --concurrency 16`` prints the status counts, the latency
and each worker's RSS before and after (after a warm-up pass of the same mix), and exits 1
on a 5xx, a connection error, a replaced worker or RSS growth of 10% or more.
"""

from __future__ import annotations

import argparse
import io
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from bench import samples
from bench.load import DEFAULT_MODEL_DIR, Route, build_routes, run_wrk
from bench.processes import rss_mb
from tests.servers import encode_multipart, gunicorn_server

log = logging.getLogger(__name__)
MAX_RSS_GROWTH = 0.10


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def bad_routes(model: str) -> list[Route]:
    """Requests that must each get a 4xx: broken, hostile or blank input."""
    rng = np.random.default_rng(0)
    good_png = samples.png_28(samples.mnist_digits(1)[0])
    random_body, random_type = encode_multipart([("file", "x.png", rng.bytes(3000))])
    truncated_body, truncated_type = encode_multipart([("file", "t.png", good_png[:200])])
    svg_body, svg_type = encode_multipart([("file", "x.svg", b"<svg/>")], "image/svg+xml")
    blank_body, blank_type = encode_multipart([("file", "b.png", _png(np.zeros((28, 28), "u1")))])
    nan = np.full((1, 28, 28, 1), np.nan, dtype=np.float32).tobytes()
    nan_header = (
        '{"inputs": [{"name": "image", "shape": [1, 28, 28, 1], "datatype": "FP32", '
        f'"parameters": {{"binary_data_size": {len(nan)}}}}}]}}'
    ).encode()
    wrong_shape = (
        b'{"inputs": [{"name": "image", "shape": [1, 3], "datatype": "FP32", "data": [0, 0, 0]}]}'
    )
    infer = f"/v2/models/{model}/infer"
    predict = f"/predict?model={model}"
    return [
        Route("bad random bytes", "POST", predict, random_body, random_type),
        Route("bad truncated png", "POST", predict, truncated_body, truncated_type),
        Route("bad svg", "POST", predict, svg_body, svg_type),
        Route("bad blank", "POST", predict, blank_body, blank_type),
        Route("bad no boundary", "POST", predict, random_body, "multipart/form-data"),
        Route("bad json to predict", "POST", predict, b"{}", "application/json"),
        Route("bad unknown model", "POST", "/predict?model=nope", blank_body, blank_type),
        Route("bad nan binary", "POST", infer, nan_header + nan, "application/octet-stream",
              ("Inference-Header-Content-Length", str(len(nan_header)))),
        Route("bad wrong shape", "POST", infer, wrong_shape, "application/json"),
    ]  # fmt: skip


def write_manifest(routes: list[Route], folder: Path) -> Path:
    """Write each route's body to a file and the manifest bench/wrk/mixed.lua reads."""
    lines = []
    for index, route in enumerate(routes):
        body_file = folder / f"{index}.body"
        body_file.write_bytes(route.body)
        header = f"{route.header[0]}: {route.header[1]}" if route.header else ""
        lines.append(
            "\t".join(
                [route.method, route.path, route.content_type,
                 str(body_file) if route.body else "", header]
            )
        )  # fmt: skip
    manifest = folder / "manifest.tsv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def main() -> int:
    """Run the soak and return the exit status (0 when it survived)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--model", default="cnn")
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    with (
        tempfile.TemporaryDirectory(prefix="soak-") as temporary,
        gunicorn_server(arguments.model_dir, arguments.workers) as server,
    ):
        routes = build_routes(server.base_url, arguments.model) + bad_routes(arguments.model)
        env = {"WRK_MANIFEST": str(write_manifest(routes, Path(temporary)))}
        url = server.base_url
        run_wrk(url, 5, arguments.concurrency, "mixed.lua", env)  # Warm-up: same mix.
        workers = server.worker_pids()
        before = {pid: rss_mb(pid) for pid in workers}
        result = run_wrk(url, arguments.seconds, arguments.concurrency, "mixed.lua", env)
        after = {pid: rss_mb(pid) for pid in server.worker_pids() if pid in before}

    statuses = {int(status): count for status, count in result["statuses"].items()}
    server_errors = sum(count for status, count in statuses.items() if status >= 500)
    connection_errors = sum(v for k, v in result["errors"].items() if k != "status")
    latency = result["latency_us"]
    bad = sum(1 for route in routes if route.name.startswith("bad"))
    print(
        f"{result['requests']} requests in {result['duration_us'] / 1e6:.1f} s at concurrency "
        f"{arguments.concurrency}, {len(routes)} kinds of request ({bad} of them bad)"
    )
    print("statuses: " + ", ".join(f"{status}: {statuses[status]}" for status in sorted(statuses)))
    print(
        f"latency ms: p50 {latency['p50'] / 1000:.2f}, p90 {latency['p90'] / 1000:.2f}, "
        f"p99 {latency['p99'] / 1000:.2f}, max {latency['max'] / 1000:.2f}"
    )
    print(f"5xx: {server_errors}, connection errors: {connection_errors}")
    failed = server_errors > 0 or connection_errors > 0 or len(after) != len(before)
    for pid, rss_before in before.items():
        if pid not in after:
            print(f"worker {pid}: replaced during the soak")
            continue
        growth = after[pid] / rss_before - 1
        failed = failed or growth >= MAX_RSS_GROWTH
        print(f"worker {pid} RSS: {rss_before:.1f} -> {after[pid]:.1f} MiB ({growth:+.1%})")
    print("FAILED" if failed else "survived")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
