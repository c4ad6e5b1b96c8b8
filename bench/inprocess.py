"""The limit: the same work as the service (decode, preprocess, onnxruntime) with no HTTP,
one single-threaded process per core, all running at once. As gunicorn.conf.py does for the
workers, each process keeps to a CPU of its own and numpy's OpenBLAS gets one thread.

``python -m bench.inprocess --seconds 5`` prints images/s and CPU ms per image for each
workload.
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import os
import time
from multiprocessing.synchronize import Barrier
from pathlib import Path

import numpy as np

from bench import samples
from serve.images import decode, normalise
from serve.model.runtime import ModelRepository
from serve.settings import DEFAULT_MODEL_DIR, Settings

BLAS_THREADS = "OPENBLAS_NUM_THREADS"


@dataclasses.dataclass(frozen=True)
class Workload:
    """One kind of work: ``payload`` image bytes through the whole pipeline, or (when
    ``payload`` is None) a ready tensor of ``batch`` MNIST digits straight into the model."""

    name: str
    model: str
    payload: bytes | None = None
    batch: int = 1


def _worker(
    workload: Workload,
    model_dir: Path,
    seconds: float,
    barrier: Barrier,
    results: object,
    cpu: int | None,
) -> None:
    """Loop over the workload for ``seconds`` after every process is ready; put the count."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    repository = ModelRepository.load(model_dir, workload.model, "cpu", 1)
    repository.warm_up()
    model = repository.get(workload.model)
    max_pixels = Settings().max_image_pixels
    images = samples.normalised_batch(workload.batch)
    tensor = np.ascontiguousarray(images).reshape((-1, *model.info.input_shape[1:]))
    barrier.wait()
    count = 0
    cpu_started = time.process_time()
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        if workload.payload is None:
            model.run(tensor)
        else:
            image = decode.decode(workload.payload, max_pixels)
            model.predict(normalise.to_mnist(image)[np.newaxis])
        count += 1
    spent = time.process_time() - cpu_started
    results.put((count * workload.batch, spent))  # type: ignore[attr-defined]


@dataclasses.dataclass(frozen=True)
class Limit:
    """What the processes achieved together."""

    images_per_second: float
    #: CPU time per image, in milliseconds (independent of what else the machine runs).
    cpu_ms_per_image: float


def measure(
    workload: Workload,
    seconds: float = 5.0,
    processes: int | None = None,
    model_dir: Path = DEFAULT_MODEL_DIR,
) -> Limit:
    """Images per second and CPU per image of ``workload`` run by ``processes`` (default:
    one per core) single-threaded processes at once."""
    processes = processes or os.cpu_count() or 1
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes)
    results = context.Queue()
    workers = [
        context.Process(
            target=_worker,
            args=(workload, model_dir, seconds, barrier, results,
                  cpus[index] if processes <= len(cpus) else None),
        )
        for index in range(processes)
    ]  # fmt: skip
    blas = os.environ.get(BLAS_THREADS)
    os.environ[BLAS_THREADS] = "1"  # Read by each new process when it imports numpy.
    try:
        for worker in workers:
            worker.start()
    finally:
        if blas is None:
            del os.environ[BLAS_THREADS]
        else:
            os.environ[BLAS_THREADS] = blas
    counts = [results.get(timeout=seconds + 120) for _ in workers]
    for worker in workers:
        worker.join()
    images = sum(count for count, _ in counts)
    cpu = sum(cpu_seconds for _, cpu_seconds in counts)
    return Limit(images / seconds, cpu / max(images, 1) * 1000)


def standard_workloads() -> list[Workload]:
    """The workloads bench/load.py compares the service against, one per route."""
    digits = samples.mnist_digits(1)
    return [
        Workload("png28 cnn", "cnn", payload=samples.png_28(digits[0])),
        Workload("jpeg300 cnn", "cnn", payload=samples.photo_jpeg(digits[0])),
        Workload("tensor b1 cnn", "cnn", batch=1),
        Workload("tensor b64 cnn", "cnn", batch=64),
    ]


def main() -> None:
    """Print images/s of each standard workload."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--processes", type=int, default=None)
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR)
    arguments = parser.parse_args()
    for workload in standard_workloads():
        limit = measure(workload, arguments.seconds, arguments.processes, arguments.model_dir)
        print(
            f"{workload.name:<16} {limit.images_per_second:10.1f} images/s "
            f"{limit.cpu_ms_per_image:8.3f} CPU ms/image"
        )


if __name__ == "__main__":
    main()
