"""Bookkeeping held while a worker is busy (serve/bookkeeping.py), and the metrics and
access-log lines that go through it."""

from __future__ import annotations

import datetime
import io
import json
import logging
import math
from collections.abc import Iterator

import falcon.testing
import prometheus_client
import pytest
from prometheus_client import CollectorRegistry, Histogram

from serve import bookkeeping, metrics
from serve.requestlog import ACCESS_LOGGER, StderrLines
from tests.images import stroke_png
from tests.servers import encode_multipart


@pytest.fixture()
def holding() -> Iterator[None]:
    """Bookkeeping held, as in a keep-alive worker, for one test."""
    bookkeeping.hold()
    try:
        yield
    finally:
        bookkeeping.release()


def test_items_are_written_at_once_unless_held() -> None:
    written: list[list[int]] = []
    queue = bookkeeping.Deferred(written.append)
    queue.add(1)
    queue.add(2, 3)
    assert written == [[1], [2, 3]]
    assert not bookkeeping.held()


def test_held_items_are_written_in_one_batch_in_order(holding: None) -> None:
    written: list[list[int]] = []
    queue = bookkeeping.Deferred(written.append)
    queue.add(1)
    queue.add(2, 3)
    assert written == []
    assert bookkeeping.held()
    bookkeeping.flush()
    assert written == [[1, 2, 3]]
    assert not bookkeeping.held()
    bookkeeping.flush()
    assert written == [[1, 2, 3]]


def test_held_items_are_written_once_they_waited_max_delay(
    holding: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    written: list[list[int]] = []
    queue = bookkeeping.Deferred(written.append)
    bookkeeping.flush_if_overdue()
    queue.add(1)
    bookkeeping.flush_if_overdue()
    assert written == []
    monkeypatch.setattr(bookkeeping, "MAX_DELAY", 0.0)
    bookkeeping.flush_if_overdue()
    assert written == [[1]]
    assert not bookkeeping.held()


def test_a_failing_write_is_logged_and_the_others_still_happen(
    holding: None, caplog: pytest.LogCaptureFixture
) -> None:
    def fail(items: list[int]) -> None:
        raise OSError("disk full")

    written: list[list[int]] = []
    failing, working = bookkeeping.Deferred(fail), bookkeeping.Deferred(written.append)
    failing.add(1)
    working.add(2)
    with caplog.at_level(logging.ERROR, logger=bookkeeping.__name__):
        bookkeeping.flush()
    assert written == [[2]]
    assert "Could not write 1 held bookkeeping items" in caplog.text
    assert not bookkeeping.held()


def test_release_writes_what_is_held(holding: None) -> None:
    written: list[list[int]] = []
    queue = bookkeeping.Deferred(written.append)
    queue.add(1)
    bookkeeping.release()
    assert written == [[1]]
    queue.add(2)
    assert written == [[1], [2]]


#: Series whose change a /predict request makes is the same every time.
COUNTED = (
    ("nv_inference_count", {"model": "cnn", "version": "1"}),
    ("nv_inference_exec_count", {"model": "cnn", "version": "1"}),
    ("nv_inference_request_success", {"model": "cnn", "version": "1"}),
    (
        "mnist_http_requests_total",
        {"route": "/predict", "method": "POST", "status": "200", "model": "cnn"},
    ),
    ("mnist_http_request_duration_seconds_count", {"route": "/predict", "method": "POST"}),
    ("mnist_image_decode_duration_seconds_count", {}),
    ("mnist_preprocess_duration_seconds_count", {}),
    ("mnist_inference_duration_seconds_count", {"model": "cnn", "version": "1"}),
)


def _counted() -> list[float]:
    registry = prometheus_client.REGISTRY
    return [registry.get_sample_value(name, labels) or 0.0 for name, labels in COUNTED]


def _post_predictions(client: falcon.testing.TestClient, count: int) -> None:
    body, content_type = encode_multipart([("file", "one.png", stroke_png())])
    for _ in range(count):
        result = client.simulate_post(
            "/predict?model=cnn", body=body, headers={"Content-Type": content_type}
        )
        assert result.status_code == 200


def test_held_metrics_add_up_to_what_direct_ones_do(client: falcon.testing.TestClient) -> None:
    before = _counted()
    _post_predictions(client, 3)
    direct = [now - then for now, then in zip(_counted(), before, strict=True)]
    assert all(change > 0 for change in direct)

    bookkeeping.hold()
    try:
        before = _counted()
        _post_predictions(client, 3)
        assert _counted() == before
        bookkeeping.flush()
        held = [now - then for now, then in zip(_counted(), before, strict=True)]
    finally:
        bookkeeping.release()
    assert held == direct


def test_a_scrape_writes_out_its_own_workers_held_metrics(
    client: falcon.testing.TestClient, holding: None
) -> None:
    before = _counted()
    _post_predictions(client, 1)
    text = client.simulate_get("/metrics").text
    assert _counted()[0] == before[0] + 1
    assert f'nv_inference_count{{model="cnn",version="1"}} {before[0] + 1}' in text


def test_observing_values_together_gives_what_observing_each_gives() -> None:
    values = [0.0, 0.0005, 0.001, 0.0011, 0.3, 0.3, 7.0, 1e9, float("inf"), -1.0, float("nan")]
    one_by_one, together = CollectorRegistry(), CollectorRegistry()
    buckets = metrics.LATENCY_BUCKETS
    each = Histogram("latency", "d", ("route",), buckets=buckets, registry=one_by_one)
    batched = Histogram("latency", "d", ("route",), buckets=buckets, registry=together)
    for value in values:
        each.labels("/a").observe(value)
    metrics.observe_all(batched.labels("/a"), values)

    def samples(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
        return {
            (sample.name, sample.labels.get("le", "")): sample.value
            for family in registry.collect()
            for sample in family.samples
            if not sample.name.endswith("_sum")
        }

    assert samples(together) == samples(one_by_one)
    assert samples(together)[("latency_count", "")] == len(values) - 1  # NaN is in no bucket.

    finite = [value for value in values if math.isfinite(value)]
    for value in finite:
        each.labels("/b").observe(value)
    metrics.observe_all(batched.labels("/b"), finite)
    sums = [
        registry.get_sample_value("latency_sum", {"route": "/b"})
        for registry in (one_by_one, together)
    ]
    assert sums[1] == pytest.approx(sums[0]) == pytest.approx(sum(finite))


@pytest.fixture()
def access_stream() -> Iterator[io.StringIO]:
    """What the access logger's own handler writes (a StringIO in place of stderr)."""
    logger = logging.getLogger(ACCESS_LOGGER)
    saved = logger.handlers[:]
    handler = StderrLines()
    written = io.StringIO()
    handler.setStream(written)
    logger.handlers[:] = [handler]
    try:
        yield written
    finally:
        logger.handlers[:] = saved


def test_held_log_lines_are_written_together_with_their_own_times(
    client: falcon.testing.TestClient, access_stream: io.StringIO, holding: None
) -> None:
    started = datetime.datetime.now(datetime.UTC)
    for index in range(3):
        result = client.simulate_get("/health/live", headers={"X-Request-ID": f"held-{index}"})
        assert result.headers["X-Request-ID"] == f"held-{index}"
    assert access_stream.getvalue() == ""
    bookkeeping.flush()
    lines = [json.loads(line) for line in access_stream.getvalue().splitlines()]
    assert [line["request_id"] for line in lines] == ["held-0", "held-1", "held-2"]
    for line in lines:
        answered = datetime.datetime.fromisoformat(line["time"])
        assert started - datetime.timedelta(seconds=1) <= answered
        assert answered <= datetime.datetime.now(datetime.UTC)
        assert line["route"] == "/health/live"
        assert line["status"] == 200
