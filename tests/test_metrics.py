"""GET /metrics: Prometheus text with Triton's names, counts that follow the requests, and
totals that add up across gunicorn workers."""

from __future__ import annotations

import base64
import concurrent.futures
import os
import re
import signal
import time
from pathlib import Path

import falcon.testing
import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from tests.images import stroke_png
from tests.servers import encode_multipart, gunicorn_server, request

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

TRITON_COUNTERS = (
    "nv_inference_request_success",
    "nv_inference_request_failure",
    "nv_inference_count",
    "nv_inference_exec_count",
    "nv_inference_request_duration_us",
    "nv_inference_compute_input_duration_us",
    "nv_inference_compute_infer_duration_us",
    "nv_inference_compute_output_duration_us",
)


_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)$")
_LABEL = re.compile(r'(?P<key>[a-zA-Z_][a-zA-Z0-9_]*)="(?P<value>(?:[^"\\]|\\.)*)"')


def parse(text: str) -> Samples:
    """Every sample of a Prometheus text exposition, by the name and labels written on its
    line (prometheus_client's own parser renames counters to ``*_total``; Prometheus and
    Triton dashboards do not)."""
    samples: Samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        labels = frozenset(
            (label["key"], label["value"]) for label in _LABEL.finditer(match["labels"] or "")
        )
        samples[(match["name"], labels)] = float(match["value"])
    return samples


def scrape(client: falcon.testing.TestClient) -> Samples:
    """GET /metrics through the app and parse it."""
    result = client.simulate_get("/metrics")
    assert result.status_code == 200
    return parse(result.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample ``name`` with exactly ``labels`` (0 when absent)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def predict(
    client: falcon.testing.TestClient, files: list[bytes], model: str = "cnn"
) -> falcon.testing.Result:
    body, content_type = encode_multipart(
        [("file", f"digit{index}.png", data) for index, data in enumerate(files)]
    )
    return client.simulate_post(
        "/predict",
        body=body,
        headers={"Content-Type": content_type},
        query_string=f"model={model}",
    )


def test_metrics_are_prometheus_text_with_triton_counters(
    client: falcon.testing.TestClient,
) -> None:
    result = client.simulate_get("/metrics")
    assert result.status_code == 200
    assert result.headers["Content-Type"].startswith("text/plain")
    for name in TRITON_COUNTERS:
        # Triton's own spelling: typed counter, no _total suffix.
        assert f"# TYPE {name} counter\n" in result.text
    assert "# TYPE mnist_http_requests_total counter" in result.text
    assert "# TYPE mnist_http_request_duration_seconds histogram" in result.text
    assert "# TYPE mnist_image_decode_duration_seconds histogram" in result.text
    # Every line is valid exposition format for Prometheus' own parser too.
    families = {family.name for family in text_string_to_metric_families(result.text)}
    assert set(TRITON_COUNTERS) <= families


def test_http_requests_counted_by_route_template_method_and_status(
    client: falcon.testing.TestClient,
) -> None:
    before = scrape(client)
    for _ in range(3):
        assert client.simulate_get("/health/live").status_code == 200
    assert client.simulate_get("/v2/models/nope").status_code == 404
    assert client.simulate_get("/no/such/page").status_code == 404
    after = scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    requests_total = "mnist_http_requests_total"
    live = {"route": "/health/live", "method": "GET", "status": "200", "model": ""}
    assert delta(requests_total, **live) == 3
    # The template, not the path: the label set stays bounded whatever clients send.
    model_route = {"route": "/v2/models/{name}", "method": "GET", "status": "404", "model": ""}
    assert delta(requests_total, **model_route) == 1
    unmatched = {"route": "unmatched", "method": "GET", "status": "404", "model": ""}
    assert delta(requests_total, **unmatched) == 1
    duration_count = "mnist_http_request_duration_seconds_count"
    assert delta(duration_count, route="/health/live", method="GET") == 3


@pytest.mark.filterwarnings("ignore:Unknown REQUEST_METHOD")
def test_unknown_methods_share_one_label(client: falcon.testing.TestClient) -> None:
    before = scrape(client)
    result = client.simulate_request("BREW", "/health/live")
    assert result.status_code in (400, 405)
    after = scrape(client)
    labels = {
        "route": "/health/live",
        "method": "other",
        "status": str(result.status_code),
        "model": "",
    }
    assert value(after, "mnist_http_requests_total", **labels) == (
        value(before, "mnist_http_requests_total", **labels) + 1
    )


def test_predict_counts_images_and_executions(client: falcon.testing.TestClient) -> None:
    before = scrape(client)
    assert predict(client, [stroke_png()]).status_code == 200
    assert predict(client, [stroke_png(), stroke_png(40), stroke_png(56)]).status_code == 200
    after = scrape(client)
    model = {"model": "cnn", "version": "1"}

    def delta(name: str) -> float:
        return value(after, name, **model) - value(before, name, **model)

    assert delta("nv_inference_request_success") == 2
    assert delta("nv_inference_request_failure") == 0
    assert delta("nv_inference_count") == 4
    assert delta("nv_inference_exec_count") == 2
    for name in (
        "nv_inference_request_duration_us",
        "nv_inference_compute_input_duration_us",
        "nv_inference_compute_infer_duration_us",
        "nv_inference_compute_output_duration_us",
    ):
        assert delta(name) > 0, name
    # Triton's counters hold the whole request; its parts fit inside it.
    assert delta("nv_inference_compute_infer_duration_us") < delta(
        "nv_inference_request_duration_us"
    )
    decoded = value(after, "mnist_image_decode_duration_seconds_count") - value(
        before, "mnist_image_decode_duration_seconds_count"
    )
    preprocessed = value(after, "mnist_preprocess_duration_seconds_count") - value(
        before, "mnist_preprocess_duration_seconds_count"
    )
    assert decoded == preprocessed == 4
    executions = value(after, "mnist_inference_duration_seconds_count", **model) - value(
        before, "mnist_inference_duration_seconds_count", **model
    )
    assert executions == 2


def test_failed_inference_counted_as_failure_without_inferences(
    client: falcon.testing.TestClient,
) -> None:
    before = scrape(client)
    assert predict(client, [b"not an image"], model="softmax").status_code == 400
    after = scrape(client)
    model = {"model": "softmax", "version": "1"}
    assert value(after, "nv_inference_request_failure", **model) == (
        value(before, "nv_inference_request_failure", **model) + 1
    )
    for name in ("nv_inference_request_success", "nv_inference_count", "nv_inference_exec_count"):
        assert value(after, name, **model) == value(before, name, **model), name


def test_v2_infer_counts_batch_as_one_execution(client: falcon.testing.TestClient) -> None:
    before = scrape(client)
    document = {
        "inputs": [
            {
                "name": "image_bytes",
                "shape": [2],
                "datatype": "BYTES",
                "data": [base64.b64encode(stroke_png()).decode()] * 2,
            }
        ]
    }
    result = client.simulate_post("/v2/models/softmax/infer", json=document)
    assert result.status_code == 200, result.text
    after = scrape(client)
    model = {"model": "softmax", "version": "1"}
    assert value(after, "nv_inference_count", **model) - value(
        before, "nv_inference_count", **model
    ) == (2)
    assert value(after, "nv_inference_exec_count", **model) - value(
        before, "nv_inference_exec_count", **model
    ) == (1)
    assert value(after, "nv_inference_request_success", **model) - value(
        before, "nv_inference_request_success", **model
    ) == (1)


def _per_worker_counts(folder: Path, name: str) -> dict[int, float]:
    """``name`` summed over labels, per worker pid, read from each worker's own files."""
    counts: dict[int, float] = {}
    for path in folder.glob("*.db"):
        pid = int(path.stem.rsplit("_", 1)[1])
        for metric in MultiProcessCollector.merge([str(path)]):
            for sample in metric.samples:
                if sample.name == name:
                    counts[pid] = counts.get(pid, 0.0) + sample.value
    return counts


@pytest.mark.slow
def test_totals_add_up_across_gunicorn_workers(fake_models: Path, tmp_path: Path) -> None:
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    stale = metrics_dir / "counter_999999.db"
    stale.write_bytes(b"left over by a previous run")
    requests_per_round = 48
    body, content_type = encode_multipart([("file", "one.png", stroke_png())])

    def post(_: int) -> int:
        status, _, _ = request(
            "POST", url + "/predict?model=cnn", body, {"Content-Type": content_type}
        )
        return status

    env = {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    with gunicorn_server(fake_models, workers=2, env=env) as server:
        url = server.base_url
        assert not stale.exists(), "on_starting must clear the previous run's files"
        workers = set(server.worker_pids())
        assert len(workers) == 2
        # The kernel may hand a burst of connections to one worker; send more rounds
        # (a bounded number) until both have served, so the sum really spans workers.
        requests_sent = 0
        for _ in range(10):
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                statuses = list(pool.map(post, range(requests_per_round)))
            assert statuses == [200] * requests_per_round
            requests_sent += requests_per_round
            per_worker = _per_worker_counts(metrics_dir, "nv_inference_count")
            if set(per_worker) == workers:
                break

        assert set(per_worker) == workers, "both workers must have served requests"
        assert all(count > 0 for count in per_worker.values())
        assert sum(per_worker.values()) == requests_sent

        status, _, text = request("GET", url + "/metrics")
        assert status == 200
        samples = parse(text.decode())
        model = {"model": "cnn", "version": "1"}
        assert value(samples, "nv_inference_count", **model) == requests_sent
        assert value(samples, "nv_inference_exec_count", **model) == requests_sent
        assert value(samples, "nv_inference_request_success", **model) == requests_sent
        predict_ok = {"route": "/predict", "method": "POST", "status": "200", "model": "cnn"}
        assert value(samples, "mnist_http_requests_total", **predict_ok) == requests_sent

        # A worker that dies takes none of the counts it made with it.
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            current = set(server.worker_pids())
            if len(current) == 2 and victim not in current:
                break
            time.sleep(0.1)
        assert victim not in server.worker_pids()
        status, _, text = request("GET", url + "/metrics")
        assert status == 200
        assert value(parse(text.decode()), "nv_inference_count", **model) == requests_sent


@pytest.mark.slow
def test_gunicorn_shares_metrics_without_any_configuration(fake_models: Path) -> None:
    body, content_type = encode_multipart([("file", "one.png", stroke_png())])
    requests_sent = 16
    with gunicorn_server(fake_models, workers=2) as server:

        def post(_: int) -> int:
            status, _, _ = request(
                "POST",
                server.base_url + "/predict?model=softmax",
                body,
                {"Content-Type": content_type},
            )
            return status

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            assert list(pool.map(post, range(requests_sent))) == [200] * requests_sent
        # Whichever worker answers the scrape, it reports every worker's counts.
        for _ in range(6):
            status, _, text = request("GET", server.base_url + "/metrics")
            assert status == 200
            samples = parse(text.decode())
            assert value(samples, "nv_inference_count", model="softmax", version="1") == 16
