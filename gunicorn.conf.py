"""gunicorn settings for ``gunicorn serve:app``; values come from the environment.

``PORT`` (default 8001), ``BIND_HOST`` (default 0.0.0.0) and ``WEB_CONCURRENCY`` (default:
the CPUs this process may really use, cgroup quota and affinity included) are the usual
knobs. Check with ``gunicorn --check-config serve:app``. docs/serving.md explains the choices.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import logging
import os
import shutil
import socket
import struct
import tempfile
from typing import Any

from serve.cpus import usable_cpus
from serve.settings import threads_per_worker

bind = [f"{os.environ.get('BIND_HOST') or '0.0.0.0'}:{os.environ.get('PORT') or '8001'}"]

# One worker per usable CPU, each running one request at a time: gunicorn's plain `sync`
# worker, which answers each request on its own connection and closes it. Measured against
# `gthread` (kept connections, a thread hand-off per request) it was faster on every route
# and had the lower p99, straight and behind nginx (docs/performance.md). Each worker builds
# its own onnxruntime sessions after fork.
workers = int(os.environ.get("WEB_CONCURRENCY") or usable_cpus())
worker_class = "sync"
preload_app = False

# The worker count is exported so that serve.settings sizes each worker's intra-op threads
# to cores / workers.
os.environ["WEB_CONCURRENCY"] = str(workers)

# A worker that has not come back from a request after `timeout` seconds is killed and
# replaced; on SIGTERM, the request in flight gets `graceful_timeout` seconds to finish.
timeout = 30
graceful_timeout = 20

# A client socket read or write that makes no progress for this many seconds fails, so a
# client that stops halfway through its request head, or never reads its answer, releases
# the worker it holds (set on the listeners; accepted sockets inherit it).
SOCKET_STALL_SECONDS = 10

# Allocations of at least this many bytes are mapped on their own and returned to the
# system when freed (glibc), so a worker's memory shrinks back after a large image; the heap
# below is kept up to TRIM_THRESHOLD_BYTES free, so it is not handed back and faulted in
# again on every request.
MMAP_THRESHOLD_BYTES = 4 << 20
TRIM_THRESHOLD_BYTES = 8 << 20
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

# A safety net besides returning freed memory (post_fork): each worker is replaced after about
# a million requests, staggered by the jitter.
max_requests = 1_000_000
max_requests_jitter = 100_000

# Request-line and header limits (bytes, count, bytes), against oversized or hostile headers.
limit_request_line = 4094
limit_request_fields = 100
limit_request_field_size = 8190

# Error log on standard error, for the container runtime to collect. gunicorn's own access
# log is off unless ACCESS_LOG names a file ("-": standard output): the app logs one JSON
# line per request (serve/observability/requestlog.py).
accesslog = os.environ.get("ACCESS_LOG") or None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info")

# No runtime control socket: one fixed path per user would be shared by every instance on
# the machine; signals (HUP, TTIN, TTOU, TERM) do the same job.
control_socket_disable = True

# Worker heartbeat files in memory rather than on a possibly slow disk.
if os.path.isdir("/dev/shm"):
    worker_tmp_dir = "/dev/shm"


def when_ready(server: Any) -> None:
    """Once the listeners are open: bound how long one read or write on a client socket may
    wait (SOCKET_STALL_SECONDS)."""
    stall = struct.pack("ll", SOCKET_STALL_SECONDS, 0)
    for listener in server.LISTENERS:
        for option in (socket.SO_RCVTIMEO, socket.SO_SNDTIMEO):
            listener.sock.setsockopt(socket.SOL_SOCKET, option, stall)


def post_fork(server: Any, worker: Any) -> None:
    """In each new worker, before it loads the app: tell it how many workers there are
    (``-w`` or SIGTTIN/SIGTTOU may have changed the count) so that it sizes its onnxruntime
    and BLAS threads, return large freed blocks to the system, and send the app's own log
    lines to gunicorn's error log."""
    os.environ["WEB_CONCURRENCY"] = str(server.num_workers)
    libc_name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(libc_name) if libc_name else None
    if libc is not None and hasattr(libc, "mallopt"):  # glibc only.
        libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
        libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    # numpy's OpenBLAS, loaded with the app after this hook, would start a thread per CPU
    # in every worker and oversubscribe the cores.
    for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        os.environ.setdefault(variable, str(threads_per_worker()))
    app_logger = logging.getLogger("serve")
    app_logger.setLevel(server.log.error_log.level)
    app_logger.handlers = list(server.log.error_log.handlers)
    app_logger.propagate = False


def worker_abort(worker: Any) -> None:
    """A worker is being killed at the timeout (SIGABRT): log the request it was stuck on."""
    from serve.observability import requestlog

    requestlog.log_aborted()


# Prometheus metrics (serve/observability/metrics.py): the workers share their counts
# through files in PROMETHEUS_MULTIPROC_DIR. prometheus_client is imported only inside the
# hooks, after the variable is set, so that every worker imports it in multiprocess mode.
_METRICS_DIR_PREFIX = "mnist-serve-metrics-"


def on_starting(server: Any) -> None:
    """Before any worker starts: empty PROMETHEUS_MULTIPROC_DIR of a previous run's files,
    or, when it is not set, create a fresh folder under the system temp dir and set it."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        os.makedirs(folder, exist_ok=True)
        for stale in glob.glob(os.path.join(folder, "*.db")):
            os.remove(stale)
    else:
        folder = tempfile.mkdtemp(prefix=_METRICS_DIR_PREFIX)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    server.log.info("Prometheus multiprocess metrics in %s", folder)


def child_exit(server: Any, worker: Any) -> None:
    """A worker exited: drop its live-gauge files (its counts stay, as counters must)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server: Any) -> None:
    """Remove the metrics folder when on_starting created it."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
    if os.path.dirname(folder) == tempfile.gettempdir() and os.path.basename(folder).startswith(
        _METRICS_DIR_PREFIX
    ):
        shutil.rmtree(folder, ignore_errors=True)
