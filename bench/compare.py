"""Before/after of a server setting or a revision: several gunicorn servers side by side,
each given its own command-line arguments, environment or checkout, driven in turn by wrk for
a few rounds, so that whatever else the machine does hits every variant alike.

    python -m bench.compare --variant 'access log=ACCESS_LOG=-' --variant 'no access log' \\
        --variant 'gthread=--worker-class gthread'
    python -m bench.compare --variant now --variant before --checkout before=569d76a \\
        --nginx --peer

A variant is ``NAME=[VAR=value ...] [gunicorn arguments ...]``; ``--checkout NAME=REV`` runs
that variant from ``git archive REV`` instead of this working tree. ``--nginx`` also drives
each variant through deploy/run-behind-nginx.sh, and ``--peer`` adds the FastAPI peer
(``uvicorn[standard] --workers 2``, bench/peers/) straight. Prints req/s, worker CPU per
request and latency of each round, for /predict (28x28 PNG), v2 JSON infer and /health/live,
then each variant's medians; on a shared machine compare medians of many short rounds.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import shlex
import statistics
import subprocess
import tarfile
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from bench import samples
from bench.load import DEFAULT_MODEL_DIR, Result, Route, drive, v2_json_body
from bench.processes import uvicorn_peer
from tests.servers import ROOT, behind_nginx, encode_multipart, gunicorn_server

PEER = "FastAPI uvicorn[standard]"


@dataclasses.dataclass(frozen=True)
class Target:
    """One server to drive: its base URL and the worker pids whose CPU time is counted."""

    base_url: str
    worker_pids: tuple[int, ...]


def parse_variant(text: str) -> tuple[str, dict[str, str], list[str]]:
    """Split ``NAME=[VAR=value ...] [arguments ...]`` into name, environment, arguments."""
    name, _, rest = text.partition("=")
    environment: dict[str, str] = {}
    arguments: list[str] = []
    for word in shlex.split(rest):
        if not arguments and "=" in word and not word.startswith("-"):
            key, _, value = word.partition("=")
            environment[key] = value
        else:
            arguments.append(word)
    return name, environment, arguments


def checkout(revision: str, folder: Path) -> Path:
    """``git archive`` of ``revision`` unpacked under ``folder``; returns its root."""
    archive = subprocess.run(
        ["git", "archive", revision], cwd=ROOT, capture_output=True, check=True
    ).stdout
    root = folder / f"checkout-{revision}"
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(root, filter="data")
    return root


def main() -> None:
    """Run every variant in turn for ``--rounds`` rounds and print each round's figures."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--variant", action="append", required=True)
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--checkout", action="append", default=[], metavar="NAME=REV")
    parser.add_argument("--nginx", action="store_true", help="also drive each through nginx")
    parser.add_argument("--peer", action="store_true", help="add the FastAPI peer, straight")
    arguments = parser.parse_args()
    revisions = dict(text.split("=", 1) for text in arguments.checkout)
    digit = samples.mnist_digits(1)[0]
    body, content_type = encode_multipart([("file", "digit.png", samples.png_28(digit))])
    routes = [
        Route("/predict png", "POST", "/predict?model=cnn", body, content_type),
        Route(
            "v2 infer JSON",
            "POST",
            "/v2/models/cnn/infer",
            v2_json_body("image", [-1, 28, 28, 1], 1),
            "application/json",
        ),
        Route("/health/live", "GET", "/health/live"),
    ]
    with tempfile.TemporaryDirectory() as temporary, ExitStack() as stack:
        folder = Path(temporary)
        targets: dict[str, Target] = {}
        for text in arguments.variant:
            name, environment, extra = parse_variant(text)
            root = checkout(revisions[name], folder) if name in revisions else ROOT
            server = stack.enter_context(
                gunicorn_server(
                    arguments.model_dir, arguments.workers, environment, extra, root=root
                )
            )
            pids = tuple(server.worker_pids())
            targets[name] = Target(server.base_url, pids)
            if arguments.nginx:
                targets[f"{name}, behind nginx"] = Target(
                    stack.enter_context(behind_nginx(server.base_url)), pids
                )
        if arguments.peer:
            peer_url, peer_pids = stack.enter_context(
                uvicorn_peer(arguments.model_dir, arguments.workers, stack=("httptools", "uvloop"))
            )
            targets[PEER] = Target(peer_url, tuple(peer_pids))
        time.sleep(1.0)
        runs: dict[tuple[str, str], list[Result]] = {
            (name, route.name): [] for name in targets for route in routes
        }
        for _ in range(arguments.rounds):
            for name, target in targets.items():
                for route in routes:
                    runs[name, route.name].append(
                        drive(
                            target.base_url,
                            route,
                            arguments.seconds,
                            arguments.concurrency,
                            folder,
                            target.worker_pids,
                        )
                    )
    for (name, route_name), taken in runs.items():
        print(
            f"{name} | {route_name} | req/s "
            + ", ".join(f"{result.requests_per_second:.0f}" for result in taken)
            + " | worker CPU ms/req "
            + ", ".join(f"{result.worker_cpu_ms or 0:.3f}" for result in taken)
            + " | p50/p99 ms "
            + ", ".join(f"{result.p50_ms:.1f}/{result.p99_ms:.1f}" for result in taken)
            + f" | errors {sum(result.errors for result in taken)}"
        )
    print()
    print(
        "| variant | route | median req/s | best req/s | median p99 ms | median worker CPU ms/req |"
    )
    print("|---|---|---:|---:|---:|---:|")
    for (name, route_name), taken in runs.items():
        rates = [result.requests_per_second for result in taken]
        cpu = [result.worker_cpu_ms or 0.0 for result in taken]
        p99 = [result.p99_ms for result in taken]
        print(
            f"| {name} | {route_name} | {statistics.median(rates):.0f} | {max(rates):.0f} "
            f"| {statistics.median(p99):.1f} | {statistics.median(cpu):.3f} |"
        )


if __name__ == "__main__":
    main()
