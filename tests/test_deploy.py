"""deploy/: the Kubernetes manifests (their schemas and the facts they must keep), the KServe
InferenceService, nginx in front of a real gunicorn, and the container image (marker
``container``: built with deploy/build-image.sh and run with podman)."""

from __future__ import annotations

import configparser
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import numpy as np
import onnxruntime
import pytest
import setuptools
import yaml

from tests.images import stroke_png
from tests.servers import ROOT, encode_multipart, free_port, gunicorn_server, request

DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
NGINX = Path(os.environ.get("NGINX", "/usr/sbin/nginx"))
IN_CI = os.environ.get("CI") == "true"
#: The oldest Kubernetes the manifests are for (autoscaling/v2 ContainerResource is GA in
#: 1.30), and the newest schema kubernetes-validate ships.
KUBERNETES_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
#: The service's body limit (MNIST_MAX_BODY_BYTES' default), which nginx must let through.
MAX_BODY_BYTES = 10 * 1024 * 1024
#: Ports inside the pod: nginx for everyone, gunicorn for nginx only.
POD_NGINX_PORT = 8080
POD_GUNICORN_PORT = 8081


def gunicorn_setting(name: str) -> int:
    """A whole-number setting of gunicorn.conf.py (``name = 20``), read from the file."""
    text = (ROOT / "gunicorn.conf.py").read_text()
    found = re.search(rf"^{name} = (\d+)$", text, re.MULTILINE)
    assert found, f"{name} not set in gunicorn.conf.py"
    return int(found.group(1))


def load_yaml(path: Path) -> list[dict[str, Any]]:
    """Every document in a YAML file."""
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


def kustomization() -> dict[str, Any]:
    (document,) = load_yaml(K8S / "kustomization.yaml")
    return document


def k8s_objects() -> list[dict[str, Any]]:
    """The objects of deploy/k8s's resource files, as written (before kustomize)."""
    return [obj for name in kustomization()["resources"] for obj in load_yaml(K8S / name)]


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [obj for obj in objects if obj["kind"] == kind]
    return found


def containers(deployment: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in deployment["spec"]["template"]["spec"]["containers"]}


def fill_in(template: str, listen: str, upstream: str, runtime_dir: str) -> str:
    """deploy/nginx.conf with its placeholders filled in outside comments, as
    deploy/run-behind-nginx.sh does."""
    lines = []
    for line in template.splitlines(keepends=True):
        if not line.lstrip().startswith("#"):
            line = line.replace("@LISTEN@", listen).replace("@UPSTREAM@", upstream)
            line = line.replace("@RUNTIME_DIR@", runtime_dir)
        lines.append(line)
    return "".join(lines)


def nginx_directives(text: str) -> dict[str, list[str]]:
    """Each directive of an nginx configuration, by name, with the value of every occurrence
    (comments dropped; enough for the flat configuration here)."""
    found: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.endswith(";"):
            name, _, value = line[:-1].partition(" ")
            found.setdefault(name, []).append(value.strip())
    return found


def size_bytes(value: str) -> int:
    """An nginx size (``11m``, ``2m``, ``16k``) in bytes."""
    found = re.fullmatch(r"(\d+)([kKmM]?)", value)
    assert found, f"not an nginx size: {value!r}"
    return int(found.group(1)) * {"": 1, "k": 1024, "m": 1024 * 1024}[found.group(2).lower()]


def seconds(value: str) -> int:
    return int(value.removesuffix("s"))


# Kubernetes manifests.


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_manifests_match_their_schemas(version: str) -> None:
    objects = k8s_objects()
    assert {obj["kind"] for obj in objects} == {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    }
    for obj in objects:
        kubernetes_validate.validate(obj, version, strict=True)


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    """``kubectl kustomize deploy/k8s``: what ``kubectl apply -k`` would send."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not found: install it (https://kubernetes.io/docs/tasks/tools/)")
    completed = subprocess.run(
        [kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60, check=True
    )
    return [document for document in yaml.safe_load_all(completed.stdout) if document]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_kustomization_renders_valid_objects(rendered: list[dict[str, Any]], version: str) -> None:
    for obj in rendered:
        kubernetes_validate.validate(obj, version, strict=True)
    config_map = one(rendered, "ConfigMap")
    assert config_map["data"]["nginx.conf"] == (K8S / "nginx.conf").read_text()
    deployment = one(rendered, "Deployment")
    volumes = {item["name"]: item for item in deployment["spec"]["template"]["spec"]["volumes"]}
    # The generated name (with its hash) is the one the pod mounts.
    assert volumes["nginx-conf"]["configMap"]["name"] == config_map["metadata"]["name"]
    assert containers(deployment)["app"]["image"] == "localhost/mnist-onnx-serve:latest"


def test_probes_reach_the_app_through_nginx() -> None:
    deployment = one(k8s_objects(), "Deployment")
    app, nginx = containers(deployment)["app"], containers(deployment)["nginx"]
    probes = {kind: app[kind]["httpGet"] for kind in ("startupProbe", "readinessProbe")}
    probes["livenessProbe"] = app["livenessProbe"]["httpGet"]
    assert probes["startupProbe"]["path"] == "/v2/health/ready"
    assert probes["readinessProbe"]["path"] == "/v2/health/ready"
    assert probes["livenessProbe"]["path"] == "/v2/health/live"
    # gunicorn listens on 127.0.0.1 only; the kubelet comes from outside the pod.
    assert {probe["port"] for probe in probes.values()} == {POD_NGINX_PORT}
    assert nginx["ports"] == [{"name": "http", "containerPort": POD_NGINX_PORT, "protocol": "TCP"}]


def test_gunicorn_listens_inside_the_pod_only_and_nginx_points_at_it() -> None:
    deployment = one(k8s_objects(), "Deployment")
    app = containers(deployment)["app"]
    env = {item["name"]: item["value"] for item in app["env"]}
    assert env == {"BIND_HOST": "127.0.0.1", "PORT": str(POD_GUNICORN_PORT)}
    assert "ports" not in app
    assert "BIND_HOST" in (ROOT / "gunicorn.conf.py").read_text()
    directives = nginx_directives((K8S / "nginx.conf").read_text())
    assert directives["server"] == [f"127.0.0.1:{POD_GUNICORN_PORT}"]
    assert directives["listen"][0].split()[0] == str(POD_NGINX_PORT)
    service = one(k8s_objects(), "Service")
    assert [port["targetPort"] for port in service["spec"]["ports"]] == ["http"]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


def test_the_pods_nginx_conf_is_the_template_filled_in() -> None:
    pod_conf = (K8S / "nginx.conf").read_text()
    header, _, body = pod_conf.partition("\n\n")
    assert header.startswith("# Generated from deploy/nginx.conf")
    template = (DEPLOY / "nginx.conf").read_text()
    assert body == fill_in(template, str(POD_NGINX_PORT), f"127.0.0.1:{POD_GUNICORN_PORT}", "/tmp")
    assert "@" not in "".join(
        line for line in body.splitlines() if not line.lstrip().startswith("#")
    )


def test_termination_outlasts_the_pause_and_the_drain() -> None:
    pod = one(k8s_objects(), "Deployment")["spec"]["template"]["spec"]
    for container in pod["containers"]:
        command = container["lifecycle"]["preStop"]["exec"]["command"]
        assert command[0] == "sleep"
        pause = int(command[1])
        assert pod["terminationGracePeriodSeconds"] > pause + gunicorn_setting("graceful_timeout")


def test_containers_run_unprivileged_on_read_only_roots() -> None:
    pod = one(k8s_objects(), "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    empty_dirs = {item["name"] for item in pod["volumes"] if "emptyDir" in item}
    for container in pod["containers"]:
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"]["drop"] == ["ALL"]
        assert context["runAsUser"] > 0
        mounts = {item["mountPath"]: item["name"] for item in container["volumeMounts"]}
        assert mounts["/tmp"] in empty_dirs
    # The pod runs the app as the image's own user, whose metrics folder is under /tmp.
    containerfile = (ROOT / "Containerfile").read_text()
    uid = re.search(r"^ARG APP_UID=(\d+)$", containerfile, re.MULTILINE)
    (app,) = [item for item in pod["containers"] if item["name"] == "app"]
    assert uid and app["securityContext"]["runAsUser"] == int(uid.group(1))
    assert "PROMETHEUS_MULTIPROC_DIR=/tmp/metrics" in containerfile


def test_resources_and_replicas() -> None:
    deployment = one(k8s_objects(), "Deployment")
    assert deployment["spec"]["replicas"] == 2
    for container in containers(deployment).values():
        resources = container["resources"]
        assert set(resources["requests"]) == set(resources["limits"]) == {"cpu", "memory"}
        # Requests equal to limits: Guaranteed QoS, whole CPUs for the app.
        assert resources["requests"] == resources["limits"]
    assert containers(deployment)["app"]["resources"]["limits"]["cpu"] == "2"


def test_autoscaler_and_disruption_budget() -> None:
    objects = k8s_objects()
    deployment = one(objects, "Deployment")
    hpa = one(objects, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "ContainerResource"
    assert metric["containerResource"]["name"] == "cpu"
    assert metric["containerResource"]["container"] == "app"
    assert hpa["spec"]["minReplicas"] >= 2
    pdb = one(objects, "PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["selector"] == deployment["spec"]["selector"]
    assert pdb["spec"]["maxUnavailable"] == 1


def test_prometheus_scrape_annotations() -> None:
    template = one(k8s_objects(), "Deployment")["spec"]["template"]
    assert template["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(POD_NGINX_PORT),
        "prometheus.io/path": "/metrics",
    }


# KServe.


@pytest.fixture(scope="module")
def inference_service() -> dict[str, Any]:
    (document,) = load_yaml(DEPLOY / "kserve" / "inferenceservice.yaml")
    return document


def test_inference_service(inference_service: dict[str, Any]) -> None:
    assert inference_service["apiVersion"] == "serving.kserve.io/v1beta1"
    assert inference_service["kind"] == "InferenceService"
    assert inference_service["metadata"]["annotations"] == {
        "serving.kserve.io/enable-prometheus-scraping": "true",
        "prometheus.kserve.io/port": "8080",
        "prometheus.kserve.io/path": "/metrics",
    }
    predictor = inference_service["spec"]["predictor"]
    (container,) = predictor["containers"]
    assert container["name"] == "kserve-container"
    assert {"name": "PROTOCOL", "value": "v2"} in container["env"]
    assert container["ports"] == [{"name": "http1", "containerPort": 8080, "protocol": "TCP"}]
    # One request in flight per gunicorn worker, one worker per CPU of the limit.
    assert predictor["containerConcurrency"] == int(container["resources"]["limits"]["cpu"]) == 2
    assert container["startupProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": 8080}
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": 8080}
    assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": 8080}
    assert container["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_inference_service_pod_parts_match_the_pod_schema(
    inference_service: dict[str, Any], version: str
) -> None:
    """The predictor's containers and volumes are a PodSpec's: checked as one."""
    predictor = inference_service["spec"]["predictor"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "predictor"},
        "spec": {"containers": predictor["containers"], "volumes": predictor["volumes"]},
    }
    kubernetes_validate.validate(pod, version, strict=True)


# nginx.


def test_nginx_conf_buffers_and_bounds() -> None:
    directives = nginx_directives((DEPLOY / "nginx.conf").read_text())
    assert directives["proxy_request_buffering"] == ["on"]
    assert directives["proxy_buffering"] == ["on"]
    assert "X-Request-ID $proxied_request_id" in directives["proxy_set_header"]
    assert "X-Forwarded-For $proxy_add_x_forwarded_for" in directives["proxy_set_header"]
    (body_limit,) = directives["client_max_body_size"]
    assert MAX_BODY_BYTES < size_bytes(body_limit) <= 2 * MAX_BODY_BYTES
    for name in ("client_header_timeout", "client_body_timeout", "send_timeout"):
        assert seconds(directives[name][0]) <= 10
    assert int(directives["worker_connections"][0]) >= 1400
    assert int(directives["worker_rlimit_nofile"][0]) >= 2 * int(
        directives["worker_connections"][0]
    )
    assert "daemon" not in directives  # given on the command line, as the nginx images do
    # nginx waits a little longer than gunicorn's worker timeout.
    assert seconds(directives["proxy_read_timeout"][0]) > gunicorn_setting("timeout")


@pytest.fixture(scope="module")
def nginx() -> Path:
    """Debian's nginx; skipped when missing (fails under CI=true)."""
    if not os.access(NGINX, os.X_OK):
        message = f"{NGINX} not found: install nginx (Debian: apt-get install nginx)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return NGINX


def test_nginx_accepts_both_configurations(nginx: Path, tmp_path: Path) -> None:
    template = (DEPLOY / "nginx.conf").read_text()
    local = tmp_path / "local.conf"
    local.write_text(fill_in(template, "127.0.0.1:18080", "127.0.0.1:18081", str(tmp_path)))
    pod = tmp_path / "pod.conf"
    pod.write_text((K8S / "nginx.conf").read_text().replace("/tmp/", f"{tmp_path}/"))
    for conf in (local, pod):
        subprocess.run(
            [str(nginx), "-t", "-q", "-p", str(tmp_path), "-e", "stderr", "-c", str(conf)],
            check=True,
            timeout=30,
        )


@contextlib.contextmanager
def script_behind_nginx(
    upstream_port: int, folder: Path
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """deploy/run-behind-nginx.sh on a free port in front of 127.0.0.1:``upstream_port``,
    its temporary folder under ``folder``; yields its base URL and process."""
    port = free_port()
    log = (folder / "nginx.log").open("wb")
    process = subprocess.Popen(
        [str(DEPLOY / "run-behind-nginx.sh"), str(port), str(upstream_port)],
        env={**os.environ, "TMPDIR": str(folder), "NGINX": str(NGINX)},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None, (folder / "nginx.log").read_text()
            with contextlib.suppress(OSError):
                if request("GET", base_url + "/health/live", timeout=2)[0] == 200:
                    break
            assert time.monotonic() < deadline, (folder / "nginx.log").read_text()
            time.sleep(0.1)
        yield base_url, process
    finally:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def half_sent_upload(base_url: str) -> tuple[socket.socket, bytes]:
    """A connection that sent the head and half the body of a /predict upload (a drawn "1")
    and then stalls; returns it and the rest of the body."""
    host, port = base_url.removeprefix("http://").split(":")
    client = socket.create_connection((host, int(port)), timeout=10)
    body, content_type = encode_multipart([("file", "one.png", stroke_png())])
    head = (
        f"POST /predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    client.sendall(head.encode() + body[: len(body) // 2])
    return client, body[len(body) // 2 :]


def established_to(port: int) -> int:
    """How many TCP connections to 127.0.0.1:``port`` are established (Linux)."""
    table = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return sum(
        1 for row in table if row.split()[1].endswith(f":{port:04X}") and row.split()[3] == "01"
    )


def read_response(client: socket.socket) -> tuple[int, bytes]:
    """Read a ``Connection: close`` response to its end; returns its status and body. (A
    server that answers before the body is sent may reset the connection after its answer.)"""
    answer = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := client.recv(65536):
            answer += chunk
    client.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


@pytest.mark.slow
def test_run_behind_nginx(nginx: Path, tmp_path: Path) -> None:
    """Through deploy/run-behind-nginx.sh to a real gunicorn: answers and headers pass,
    stalled uploads wait at nginx without holding gunicorn, and SIGTERM exits cleanly."""
    workers = 2
    with gunicorn_server(ROOT / "onnx_models", workers=workers) as server:
        upstream_port = int(server.base_url.rsplit(":", 1)[1])
        with script_behind_nginx(upstream_port, tmp_path) as (base_url, process):
            status, _, answer = request("GET", base_url + "/health/ready")
            assert status == 200
            assert {model["name"] for model in json.loads(answer)["models"]} == {"cnn", "softmax"}

            # Twice as many stalled uploads as gunicorn has workers: sent to gunicorn itself,
            # they would hold every worker for its 10 s socket timeout. nginx keeps them, and
            # opens no connection to gunicorn for them.
            connections = established_to(upstream_port)
            stalled = [half_sent_upload(base_url)[0] for _ in range(2 * workers)]
            time.sleep(0.5)
            assert established_to(upstream_port) <= connections
            body, content_type = encode_multipart([("file", "one.png", stroke_png())])
            headers = {"Content-Type": content_type, "X-Request-ID": "deploy-test-1"}
            started = time.monotonic()
            status, answer_headers, answer = request(
                "POST", base_url + "/predict", body, headers, timeout=10
            )
            assert time.monotonic() - started < 3
            assert status == 200
            prediction = json.loads(answer)
            assert prediction["model"] == "cnn"
            assert prediction["label"] == 1
            assert len(prediction["probabilities"]) == 10
            assert {key.lower(): value for key, value in answer_headers.items()}[
                "x-request-id"
            ] == "deploy-test-1"
            for client in stalled:
                client.close()

            # A body over the service's limit and nginx's is refused at nginx, from its head.
            host, port = base_url.removeprefix("http://").split(":")
            client = socket.create_connection((host, int(port)), timeout=10)
            client.sendall(
                b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                b"Content-Length: 12582912\r\nConnection: close\r\n\r\n"
            )
            assert read_response(client)[0] == 413

            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=15) == 0
        assert not list(tmp_path.glob("nginx-mnist-*")), "temporary folder left behind"


# The container image.


def test_the_install_ships_every_serving_module() -> None:
    """The image runs the installed package (``pip install .``), not the checkout: every
    folder of Python modules under serve/ must be a package that setup.cfg's discovery finds
    (with ``packages = find:``, one with an ``__init__.py``)."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    way = config["options"]["packages"].strip()
    include = config["options.packages.find"]["include"].split()
    discover = (
        setuptools.find_namespace_packages if way == "find_namespace:" else setuptools.find_packages
    )
    found = set(discover(where=str(ROOT), include=include))
    folders = {
        ".".join(folder.relative_to(ROOT).parts)
        for folder in [ROOT / "serve", *(ROOT / "serve").rglob("*")]
        if folder.is_dir() and folder.name != "__pycache__" and any(folder.glob("*.py"))
    }
    assert folders <= found, f"not installed: {sorted(folders - found)}"


IMAGE = os.environ.get("CONTAINER_IMAGE", "localhost/mnist-onnx-serve:latest")
PODMAN_FLAGS = os.environ.get(
    "PODMAN_FLAGS", "--runtime=runc --cgroup-manager=cgroupfs --storage-driver=vfs"
).split()
ULIMITS = ["--ulimit", "nofile=1024:4096", "--ulimit", "nproc=1024:4096"]


def podman(*arguments: str, timeout: float = 60, check: bool = True) -> str:
    """Run podman with this machine's global options; returns its standard output."""
    completed = subprocess.run(
        ["podman", *PODMAN_FLAGS, *arguments], capture_output=True, text=True, timeout=timeout
    )
    if check and completed.returncode != 0:
        raise AssertionError(f"podman {' '.join(arguments)}: {completed.stderr}")
    return completed.stdout


def logs(name: str) -> str:
    """What the container wrote (gunicorn logs to standard error)."""
    completed = subprocess.run(
        ["podman", *PODMAN_FLAGS, "logs", name], capture_output=True, text=True, timeout=30
    )
    return completed.stdout + completed.stderr


@pytest.fixture(scope="module")
def image() -> str:
    """The image: CONTAINER_IMAGE when set (already built), else built (or brought up to
    date, from its layer cache) by deploy/build-image.sh. Skipped without podman (fails
    under CI=true)."""
    if shutil.which("podman") is None:
        message = (
            "podman not found: install it (Debian: apt-get install podman runc mmdebstrap "
            "uidmap), or set CONTAINER_IMAGE to an image built elsewhere"
        )
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    if "CONTAINER_IMAGE" not in os.environ:
        subprocess.run(
            [str(DEPLOY / "build-image.sh")],
            env={**os.environ, "IMAGE": IMAGE},
            check=True,
            timeout=900,
        )
    size = int(podman("image", "inspect", "--format", "{{.Size}}", IMAGE))
    assert size <= 450_000_000, f"image is {size / 1e6:.0f} MB"
    return IMAGE


def v2_tensor() -> np.ndarray:
    """A drawn "1" (a vertical white stroke on black), [1, 28, 28, 1] float32 in [0, 1]."""
    pixels = np.zeros((28, 28), dtype=np.float32)
    pixels[4:24, 13:16] = 1.0
    return pixels.reshape(1, 28, 28, 1)


@contextlib.contextmanager
def container(image: str, *options: str) -> Iterator[tuple[str, str]]:
    """Run ``image`` as the pod does (read-only root, /tmp in memory, no capabilities) on a
    free port with podman ``options``, wait until /v2/health/ready answers 200 and yield its
    base URL and name; removed on exit."""
    port = free_port()
    name = f"mnist-test-{uuid.uuid4().hex[:8]}"
    base_url = f"http://127.0.0.1:{port}"
    podman(
        "run", "--detach", "--name", name, "--network=host", *ULIMITS,
        "--read-only", "--tmpfs", "/tmp:rw,size=64m", "--cap-drop=ALL",
        "--security-opt=no-new-privileges", "-e", f"PORT={port}", *options, image,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError):
                if request("GET", base_url + "/v2/health/ready", timeout=2)[0] == 200:
                    break
            state = podman("container", "inspect", "--format", "{{.State.Status}}", name)
            assert state.strip() == "running", f"the container {state.strip()}:\n{logs(name)}"
            assert time.monotonic() < deadline, f"not ready after 60 s:\n{logs(name)}"
            time.sleep(0.5)
        yield base_url, name
    finally:
        podman("rm", "--force", name, check=False)


@pytest.mark.container
def test_container_starts_a_worker_per_cpu_of_its_quota(image: str) -> None:
    """With a 1-CPU quota on a machine with more, gunicorn starts one worker, not one per
    CPU of the machine (serve/cpus.py)."""
    with container(image, "--cpus=1") as (_, name):
        assert logs(name).count("Booting worker") == 1, logs(name)


@pytest.mark.container
def test_container_serves_and_drains_on_sigterm(image: str) -> None:
    """The image as in the pod (2 CPUs): v2 infer and /predict answer, and SIGTERM lets a
    request in flight finish before gunicorn exits 0."""
    with container(image, "--cpus=2") as (base_url, name):
        tensor = v2_tensor()
        session = onnxruntime.InferenceSession(
            str(ROOT / "onnx_models" / "cnn.onnx"), providers=["CPUExecutionProvider"]
        )
        expected = int(np.argmax(session.run(None, {session.get_inputs()[0].name: tensor})[0]))
        assert expected == 1
        status, _, answer = request("GET", base_url + "/v2/models/cnn")
        assert status == 200
        input_name = json.loads(answer)["inputs"][0]["name"]
        infer = {
            "inputs": [
                {
                    "name": input_name,
                    "shape": [1, 28, 28, 1],
                    "datatype": "FP32",
                    "data": tensor.ravel().tolist(),
                }
            ]
        }
        status, _, answer = request(
            "POST",
            base_url + "/v2/models/cnn/infer",
            json.dumps(infer).encode(),
            {"Content-Type": "application/json"},
        )
        assert status == 200, answer
        result = json.loads(answer)
        assert result["model_name"] == "cnn"
        assert int(np.argmax(result["outputs"][0]["data"])) == expected

        body, content_type = encode_multipart([("file", "one.png", stroke_png())])
        status, _, answer = request(
            "POST", base_url + "/predict", body, {"Content-Type": content_type}
        )
        assert status == 200, answer
        prediction = json.loads(answer)
        assert (prediction["model"], prediction["label"]) == ("cnn", 1)

        status, _, answer = request("GET", base_url + "/metrics")
        assert status == 200 and answer

        # A slow upload is in flight (head and half its body sent) when SIGTERM comes.
        client, rest = half_sent_upload(base_url)
        time.sleep(0.5)
        podman("kill", "--signal", "TERM", name)
        time.sleep(2)
        client.sendall(rest)
        status, answer = read_response(client)
        assert status == 200, answer
        assert json.loads(answer)["label"] == 1

        exit_code = podman("wait", name, timeout=40).strip()
        assert exit_code == "0", logs(name)
        assert "telemetry" not in logs(name)  # ORT_DISABLE_TELEMETRY, set in the image
