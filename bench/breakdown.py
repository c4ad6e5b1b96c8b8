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
from serve import imaging, metrics, predict, preprocess, requestlog, uploads
from serve.app import create_app
from serve.runtime import ModelRepository
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


def cold_microseconds(
    action: Callable[[], object], evict: Callable[[], object], repeat: int
) -> float:
    """Thread CPU time of one call of ``action`` made right after ``evict`` (which runs other
    work through the CPU caches), in microseconds: the median of ``repeat`` such calls."""
    spent = []
    for _ in range(repeat):
        evict()
        started = time.thread_time_ns()
        action()
        spent.append(time.thread_time_ns() - started)
    return float(np.median(spent)) / 1000.0


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
) -> dict[str, dict[str, float]]:  # fmt: skip
    """CPU microseconds of each stage of one request carrying ``payload``, warm and cold."""
    body, content_type = encode_multipart([("file", "digit", payload)], content_type_of_part)
    limits = uploads.UploadLimits.from_settings(settings)
    model = repository.get(model_name)
    image = imaging.decode(payload, settings.max_image_pixels)
    array = preprocess.to_mnist(image)[np.newaxis]
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

    def whole_request() -> None:
        model.predict(preprocess.to_mnist(decode())[np.newaxis])

    def decode() -> Image.Image:
        return imaging.decode(payload, settings.max_image_pixels)

    work = {
        "multipart parse": (parse, new_request),
        "decode": (decode, None),
        # On a freshly decoded image each time: Pillow caches some work (EXIF) per image.
        "preprocess": (lambda: preprocess.to_mnist(decode()), decode),
        "inference": (lambda: model.predict(array), None),
        "JSON answer": (
            lambda: orjson.dumps(predict.describe(model.info, probabilities, None)),
            None,
        ),
        "request log": (log_line, new_exchange),
        "metrics": (record_metrics, new_exchange),
    }
    cold_repeat = max(50, repeat // 10)
    warm: dict[str, float] = {}
    cold: dict[str, float] = {}
    for name, (action, baseline) in work.items():
        warm[name] = cpu_microseconds(action, repeat)
        cold[name] = cold_microseconds(action, whole_request, cold_repeat)
        if baseline is not None:  # Only the stage: what it is built on is subtracted.
            warm[name] -= cpu_microseconds(baseline, repeat)
            cold[name] -= cold_microseconds(baseline, whole_request, cold_repeat)
    call = _app_call(app, body, content_type, path)
    environ_only = _environ_only(body, content_type, path)
    for split, total in (
        (warm, cpu_microseconds(call, repeat) - cpu_microseconds(environ_only, repeat)),
        (cold, cold_microseconds(call, whole_request, cold_repeat)
         - cold_microseconds(environ_only, whole_request, cold_repeat)),
    ):  # fmt: skip
        split["rest of the Falcon app"] = total - sum(split.values())
        split["app total"] = total
    return {"warm": warm, "cold": cold}


def _silent_access_log() -> requestlog.RequestLog:
    """The request log middleware, writing its lines (as in a worker) to /dev/null."""
    handler = requestlog.StderrLines()
    handler.setStream(open(os.devnull, "w"))  # noqa: SIM115 (open for the process's life)
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
    one_thread = {"MNIST_INTRA_OP_THREADS": "1"}  # As the stages above, and as 2 workers get.
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
        split = stages(
            payload, part_type, settings, repository, app, arguments.model, arguments.repeat
        )
        if not arguments.no_gunicorn:
            worker = gunicorn_cpu_per_request(
                arguments.model_dir, payload, part_type, arguments.model, arguments.seconds
            )
            for column in split.values():
                column["gunicorn HTTP + kernel"] = worker - column["app total"]
                column["worker total"] = worker
        for kind, column in split.items():
            columns[f"{name} {kind}"] = column
    rows = list(next(iter(columns.values())))
    print("| stage | " + " | ".join(f"{name} us" for name in columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for row in rows:
        print(f"| {row} | " + " | ".join(f"{columns[name][row]:.0f}" for name in columns) + " |")


if __name__ == "__main__":
    main()
