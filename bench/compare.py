"""Before/after of a server setting: several gunicorn servers side by side, each given its
own command-line arguments and environment, driven in turn by wrk for a few rounds, so that
whatever else the machine does hits every variant alike.

    python -m bench.compare --variant 'access log=ACCESS_LOG=-' --variant 'no access log' \\
        --variant 'gthread=--worker-class gthread --threads 1'

A variant is ``NAME=[VAR=value ...] [gunicorn arguments ...]``. Prints req/s, worker CPU per
request and latency of each round, for /predict (28x28 PNG) and /health/live, then each
variant's median and best; on a shared machine compare medians of many short rounds.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from bench import samples
from bench.load import DEFAULT_MODEL_DIR, Result, Route, drive
from tests.servers import GunicornServer, encode_multipart, gunicorn_server


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
    arguments = parser.parse_args()
    body, content_type = encode_multipart(
        [("file", "digit.png", samples.png_28(samples.mnist_digits(1)[0]))]
    )
    routes = [
        Route("/predict png", "POST", "/predict?model=cnn", body, content_type),
        Route("/health/live", "GET", "/health/live"),
    ]
    with tempfile.TemporaryDirectory() as temporary, ExitStack() as stack:
        folder = Path(temporary)
        servers: dict[str, GunicornServer] = {}
        for text in arguments.variant:
            name, environment, extra = parse_variant(text)
            servers[name] = stack.enter_context(
                gunicorn_server(arguments.model_dir, arguments.workers, environment, extra)
            )
        time.sleep(1.0)
        runs: dict[tuple[str, str], list[Result]] = {
            (name, route.name): [] for name in servers for route in routes
        }
        for _ in range(arguments.rounds):
            for name, server in servers.items():
                for route in routes:
                    runs[name, route.name].append(
                        drive(
                            server.base_url,
                            route,
                            arguments.seconds,
                            arguments.concurrency,
                            folder,
                            server.worker_pids(),
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
    print("| variant | route | median req/s | best req/s | median worker CPU ms/req |")
    print("|---|---|---:|---:|---:|")
    for (name, route_name), taken in runs.items():
        rates = [result.requests_per_second for result in taken]
        cpu = [result.worker_cpu_ms or 0.0 for result in taken]
        print(
            f"| {name} | {route_name} | {statistics.median(rates):.0f} | {max(rates):.0f} "
            f"| {statistics.median(cpu):.3f} |"
        )


if __name__ == "__main__":
    main()
