"""Where one ``/predict`` request's time goes: multipart parse, decode, preprocess,
inference, JSON answer, request log, metrics, the rest of the Falcon app (routing, hooks),
and gunicorn's HTTP handling (worker CPU per request under wrk minus the app's own time).

``python -m bench.breakdown`` prints microseconds of CPU per stage, for a 28x28 PNG and a
300x300 JPEG. Each stage is run alone many times and timed with the process CPU clock, so
the split does not depend on what else the machine is doing ("warm": the stage over and
over, its code and data in the CPU caches). A served request runs every stage once, each
after the others pushed it out of the caches, so each stage is also timed right after a
whole decode + preprocess + inference ("cold", the median of single calls).
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import falcon
import falcon.testing
import numpy as np
import orjson
from PIL import Image

from bench import processes, samples
from bench.load import DEFAULT_MODEL_DIR, Route, drive
from serve.api import predict, uploads
from serve.app import create_app
from serve.images import decode, normalise
from serve.model.runtime import ModelRepository
from serve.observability import metrics, requestlog
from serve.settings import Settings
from tests.servers import encode_multipart, gunicorn_server


def cpu_microseconds(action: Callable[[], object], repeat: int, chunks: int = 5) -> float:
    """Process CPU time of one call of ``action`` in microseconds: the least mean over
    ``chunks`` runs of ``repeat / chunks`` calls, which discards the runs another process
    disturbed."""
    action()
    size = max(1, repeat // chunks)
    best = float("inf")
    for _ in range(chunks):
        started = time.process_time()
        for _ in range(size):
            action()
        best = min(best, (time.process_time() - started) / size)
    return best * 1e6


def _start_response(
    status: str, headers: list[tuple[str, str]], exc_info: object = None
) -> Callable[[bytes], object]:
    return len


def _app_call(app: falcon.App, body: bytes, content_type: str, path: str) -> Callable[[], None]:
    def call() -> None:
        environ = falcon.testing.create_environ(
            path=path.split("?")[0],
            query_string=path.partition("?")[2],
            method="POST",
            body=body,
            headers={"Content-Type": content_type},
        )
        for _ in app(environ, _start_response):
            pass

    return call


def _environ_only(body: bytes, content_type: str, path: str) -> Callable[[], None]:
    def build() -> None:
        falcon.testing.create_environ(
            path=path.split("?")[0],
            query_string=path.partition("?")[2],
            method="POST",
            body=body,
            headers={"Content-Type": content_type},
        )

    return build


def stages(
    payload: bytes, content_type_of_part: str, settings: Settings, repository: ModelRepository,
    app: falcon.App, model_name: str, repeat: int,
) -> dict[str, float]:  # fmt: skip
    """CPU microseconds of each stage of one request carrying ``payload``."""
    body, content_type = encode_multipart([("file", "digit", payload)], content_type_of_part)
    limits = uploads.UploadLimits.from_settings(settings)
    model = repository.get(model_name)
    image = decode.decode(payload, settings.max_image_pixels)
    array = normalise.to_mnist(image)[np.newaxis]
    probabilities = model.predict(array)[0]
    path = f"/predict?model={model_name}"
    access_log = _silent_access_log()
    http_metrics = metrics.RequestMetrics()

    def new_request() -> falcon.Request:
        return falcon.testing.create_req(
            method="POST", path="/predict", body=body, headers={"Content-Type": content_type}
        )

    def new_exchange() -> tuple[falcon.Request, falcon.Response]:
        return new_request(), falcon.Response()

    def parse() -> None:
        uploads.read_uploads(new_request(), limits)

    def log_line() -> None:
        request, response = new_exchange()
        access_log.process_request(request, response)
        access_log.process_response(request, response, None, True)

    def record_metrics() -> None:
        request, response = new_exchange()
        http_metrics.process_request(request, response)
        request.context.model, request.context.model_version = model.info.name, "1"
        metrics.observe_decode(2e-5)
        metrics.observe_preprocess(5e-4)
        metrics.observe_inference(model.info.name, "1", images=1, infer_seconds=1e-4)
        http_metrics.process_response(request, response, None, True)

    def decoded() -> Image.Image:
        return decode.decode(payload, settings.max_image_pixels)

    work = {
        "multipart parse": (parse, new_request),
        "decode": (decoded, None),
        # On a freshly decoded image each time: Pillow caches some work (EXIF) per image.
        "preprocess": (lambda: normalise.to_mnist(decoded()), decoded),
        "inference": (lambda: model.predict(array), None),
        "JSON answer": (
            lambda: orjson.dumps(predict.describe(model.info, probabilities, None)),
            None,
        ),
        "request log": (log_line, new_exchange),
        "metrics": (record_metrics, new_exchange),
    }
    split: dict[str, float] = {}
    for name, (action, baseline) in work.items():
        split[name] = cpu_microseconds(action, repeat)
        if baseline is not None:  # Only the stage: what it is built on is subtracted.
            split[name] -= cpu_microseconds(baseline, repeat)
    whole = cpu_microseconds(_app_call(app, body, content_type, path), repeat)
    whole -= cpu_microseconds(_environ_only(body, content_type, path), repeat)
    split["rest of the Falcon app"] = whole - sum(split.values())
    split["app total"] = whole
    return split


def _silent_access_log() -> requestlog.RequestLog:
    """The request log middleware, writing its lines (as in a worker) to /dev/null."""
    handler = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115 (for the process's life)
    handler.setFormatter(requestlog.JsonFormatter())
    logger = logging.getLogger("bench.breakdown.access")
    logger.handlers = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return requestlog.RequestLog(logger)


def gunicorn_cpu_per_request(
    model_dir: Path, payload: bytes, content_type_of_part: str, model_name: str, seconds: int
) -> float:
    """Worker CPU microseconds per request of real gunicorn (one worker with one intra-op
    thread, wrk at concurrency 1), from the worker's /proc utime + stime."""
    body, content_type = encode_multipart([("file", "digit", payload)], content_type_of_part)
    route = Route("predict", "POST", f"/predict?model={model_name}", body, content_type)
    # One thread for onnxruntime and for numpy's OpenBLAS: as the stages above, as 2 workers get.
    one_thread = {"MNIST_INTRA_OP_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    with (
        tempfile.TemporaryDirectory() as folder,
        gunicorn_server(model_dir, 1, env=one_thread) as server,
    ):
        worker = server.worker_pids()[0]
        drive(server.base_url, route, 1, 1, Path(folder))
        before = processes.cpu_seconds(worker)
        result = drive(server.base_url, route, seconds, 1, Path(folder))
        spent = processes.cpu_seconds(worker) - before
    return spent / (result.requests_per_second * seconds) * 1e6


def main() -> None:
    """Print the split for a 28x28 PNG and a 300x300 JPEG."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--model", default="cnn")
    parser.add_argument("--repeat", type=int, default=2000)
    parser.add_argument("--seconds", type=int, default=5, help="of wrk against gunicorn")
    parser.add_argument("--no-gunicorn", action="store_true")
    arguments = parser.parse_args()
    if os.environ.get("OPENBLAS_NUM_THREADS") != "1":
        print("warning: set OPENBLAS_NUM_THREADS=1, or numpy's threads are counted in the stages")
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="metrics-"))
    settings = Settings(model_dir=arguments.model_dir, providers="cpu", intra_op_threads=1)
    repository = ModelRepository.load(settings.model_dir, arguments.model, "cpu", 1)
    repository.warm_up()
    app = create_app(settings, repository)
    digit = samples.mnist_digits(1)[0]
    payloads = {
        "png 28x28": (samples.png_28(digit), "image/png"),
        "jpeg 300x300": (samples.photo_jpeg(digit), "image/jpeg"),
    }
    columns: dict[str, dict[str, float]] = {}
    for name, (payload, part_type) in payloads.items():
        columns[name] = stages(
            payload, part_type, settings, repository, app, arguments.model, arguments.repeat
        )
        if not arguments.no_gunicorn:
            worker = gunicorn_cpu_per_request(
                arguments.model_dir, payload, part_type, arguments.model, arguments.seconds
            )
            columns[name]["gunicorn HTTP + kernel"] = worker - columns[name]["app total"]
            columns[name]["worker total"] = worker
    rows = list(next(iter(columns.values())))
    print("| stage | " + " | ".join(f"{name} us" for name in columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for row in rows:
        print(f"| {row} | " + " | ".join(f"{columns[name][row]:.0f}" for name in columns) + " |")


if __name__ == "__main__":
    main()
