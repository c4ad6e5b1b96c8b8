"""Prometheus metrics: Triton's inference metric names, plus our own HTTP and image timings.

Under gunicorn ``PROMETHEUS_MULTIPROC_DIR`` is set (``gunicorn.conf.py`` does it before the
workers start), every worker writes its values to files there, and ``GET /metrics`` on any
worker sums them all. Without it (tests, a plain WSGI server) one in-process registry is used.

Triton's metrics are plain monotonic counts named without ``_total`` (``nv_inference_count``);
prometheus_client insists on ``_total`` for counters, so they are kept as gauges that are only
ever incremented (summed across workers, kept after a worker exits) and typed back as counters
in the exposition, which is what Triton dashboards read.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from typing import Any

import falcon
import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess

# The same series whether one process or many: the multiprocess files keep no ``_created``.
prometheus_client.disable_created_metrics()

MODEL_LABELS = ("model", "version")
MICROSECONDS = 1_000_000.0
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
#: Methods counted under their own name; anything else a client sends is counted as "other".
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: Route label of requests that matched no route (the path itself would be unbounded).
UNMATCHED_ROUTE = "unmatched"


#: Names of the Triton counts, typed back as counters in the exposition.
TRITON_COUNTER_NAMES: list[str] = []


def _triton_counter(name: str, documentation: str) -> Gauge:
    """A Triton-named count, labelled by model and version, summed across workers."""
    TRITON_COUNTER_NAMES.append(name)
    return Gauge(name, documentation, MODEL_LABELS, multiprocess_mode="sum")


INFERENCE_REQUEST_SUCCESS = _triton_counter(
    "nv_inference_request_success", "Number of successful inference requests, all batch sizes"
)
INFERENCE_REQUEST_FAILURE = _triton_counter(
    "nv_inference_request_failure", "Number of failed inference requests, all batch sizes"
)
INFERENCE_COUNT = _triton_counter(
    "nv_inference_count", "Number of inferences performed (images; a batch of n counts n)"
)
INFERENCE_EXEC_COUNT = _triton_counter(
    "nv_inference_exec_count", "Number of model executions performed (batches)"
)
INFERENCE_REQUEST_DURATION = _triton_counter(
    "nv_inference_request_duration_us",
    "Cumulative end-to-end handling time of successful inference requests, in microseconds",
)
COMPUTE_INPUT_DURATION = _triton_counter(
    "nv_inference_compute_input_duration_us",
    "Cumulative time preparing model inputs (image decode and normalisation, JSON tensors), "
    "in microseconds",
)
COMPUTE_INFER_DURATION = _triton_counter(
    "nv_inference_compute_infer_duration_us",
    "Cumulative time running the model in onnxruntime, in microseconds",
)
COMPUTE_OUTPUT_DURATION = _triton_counter(
    "nv_inference_compute_output_duration_us",
    "Cumulative time turning model outputs into the response, in microseconds",
)

HTTP_REQUESTS = Counter(
    "mnist_http_requests",
    "HTTP requests answered, by route template, method, status code and model (empty when "
    "the request named none)",
    ("route", "method", "status", "model"),
)
HTTP_REQUEST_DURATION = Histogram(
    "mnist_http_request_duration_seconds",
    "Time from the request reaching the app to the response leaving it, by route and method",
    ("route", "method"),
    buckets=LATENCY_BUCKETS,
)
HTTP_REQUESTS_ABORTED = Counter(
    "mnist_http_requests_aborted",
    "HTTP requests a worker was handling when gunicorn killed it at its timeout, by method",
    ("method",),
)
IMAGE_DECODE_DURATION = Histogram(
    "mnist_image_decode_duration_seconds",
    "Time decoding one uploaded image (PNG, JPEG, ...) into pixels",
    buckets=LATENCY_BUCKETS,
)
PREPROCESS_DURATION = Histogram(
    "mnist_preprocess_duration_seconds",
    "Time normalising one decoded image into the 28x28 the model reads",
    buckets=LATENCY_BUCKETS,
)
INFER_DURATION = Histogram(
    "mnist_inference_duration_seconds",
    "Time of one model execution (one batch) in onnxruntime",
    MODEL_LABELS,
    buckets=LATENCY_BUCKETS,
)


@functools.lru_cache(maxsize=4096)
def _http_children(route: str, method: str, status: str, model: str) -> tuple[Any, Any]:
    """The labelled children for one route/method/status/model, looked up once per worker."""
    return (
        HTTP_REQUESTS.labels(route, method, status, model),
        HTTP_REQUEST_DURATION.labels(route, method),
    )


@dataclasses.dataclass(frozen=True)
class _ModelSeries:
    """The labelled series of one model version, looked up once per worker."""

    request_success: Any
    request_failure: Any
    inference_count: Any
    exec_count: Any
    request_duration: Any
    compute_input: Any
    compute_infer: Any
    compute_output: Any
    infer_latency: Any


@functools.lru_cache(maxsize=256)
def _model_series(model: str, version: str) -> _ModelSeries:
    """The Triton counters and the latency histogram of one model version."""

    def labelled(metric: Gauge | Histogram) -> Any:
        return metric.labels(model, version)

    return _ModelSeries(
        request_success=labelled(INFERENCE_REQUEST_SUCCESS),
        request_failure=labelled(INFERENCE_REQUEST_FAILURE),
        inference_count=labelled(INFERENCE_COUNT),
        exec_count=labelled(INFERENCE_EXEC_COUNT),
        request_duration=labelled(INFERENCE_REQUEST_DURATION),
        compute_input=labelled(COMPUTE_INPUT_DURATION),
        compute_infer=labelled(COMPUTE_INFER_DURATION),
        compute_output=labelled(COMPUTE_OUTPUT_DURATION),
        infer_latency=labelled(INFER_DURATION),
    )


def observe_decode(seconds: float) -> None:
    """Record the time decoding one image took."""
    IMAGE_DECODE_DURATION.observe(seconds)


def observe_preprocess(seconds: float) -> None:
    """Record the time normalising one decoded image to 28x28 took."""
    PREPROCESS_DURATION.observe(seconds)


def observe_inference(
    model: str,
    version: str,
    *,
    images: int,
    infer_seconds: float,
    batches: int = 1,
    input_seconds: float = 0.0,
    output_seconds: float = 0.0,
) -> None:
    """Record one inference: ``images`` inputs run in ``batches`` model executions taking
    ``infer_seconds`` in total, after ``input_seconds`` preparing the inputs and before
    ``output_seconds`` building the answer (the Triton counters and our latency histogram)."""
    series = _model_series(model, version)
    series.inference_count.inc(images)
    series.exec_count.inc(batches)
    series.compute_input.inc(input_seconds * MICROSECONDS)
    series.compute_infer.inc(infer_seconds * MICROSECONDS)
    series.compute_output.inc(output_seconds * MICROSECONDS)
    series.infer_latency.observe(infer_seconds / max(1, batches))


def observe_aborted(method: str) -> None:
    """Count one request cut short by gunicorn's worker timeout."""
    HTTP_REQUESTS_ABORTED.labels(method if method in KNOWN_METHODS else "other").inc()


def observe_request(model: str, version: str, succeeded: bool, seconds: float) -> None:
    """Record the outcome of one inference request (success or failure) and, for a success,
    its end-to-end duration. The middleware calls this for every request that named a model."""
    series = _model_series(model, version)
    if succeeded:
        series.request_success.inc()
        series.request_duration.inc(seconds * MICROSECONDS)
    else:
        series.request_failure.inc()


class RequestMetrics:
    """Falcon middleware: counts every request by route template, method and status, times
    it, and records the inference outcome of requests whose resource set ``req.context.model``
    (and ``req.context.model_version``)."""

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Stamp the start time."""
        req.context.metrics_started = time.perf_counter()

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: object, req_succeeded: bool
    ) -> None:
        """Count and time the request; record the inference outcome if a model was named."""
        started = req.context.get("metrics_started")
        seconds = time.perf_counter() - started if started is not None else 0.0
        status = resp.status_code
        method = req.method if req.method in KNOWN_METHODS else "other"
        route = req.uri_template or UNMATCHED_ROUTE
        model = req.context.get("model")
        counter, histogram = _http_children(route, method, str(status), model or "")
        counter.inc()
        histogram.observe(seconds)
        if model is not None:
            version = str(req.context.get("model_version") or "")
            observe_request(model, version, req_succeeded and status < 400, seconds)


def multiprocess_dir() -> str | None:
    """The folder the workers share metrics through, or None when not under gunicorn."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


@functools.lru_cache(maxsize=1)
def _registry() -> CollectorRegistry:
    """What ``/metrics`` collects: every worker's files, or this process's registry."""
    if multiprocess_dir() is None:
        return prometheus_client.REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


_TYPE_FIXES = tuple(
    (f"# TYPE {name} gauge\n".encode(), f"# TYPE {name} counter\n".encode())
    for name in TRITON_COUNTER_NAMES
)


def exposition() -> bytes:
    """The current metrics in Prometheus text format, the Triton counts typed as counters."""
    text = prometheus_client.generate_latest(_registry())
    for gauge_line, counter_line in _TYPE_FIXES:
        text = text.replace(gauge_line, counter_line, 1)
    return text


class Metrics:
    """``GET /metrics``: Prometheus text format, summed over every gunicorn worker."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Answer the current exposition."""
        resp.content_type = prometheus_client.CONTENT_TYPE_LATEST
        resp.data = exposition()
