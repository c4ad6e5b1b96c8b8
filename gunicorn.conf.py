"""gunicorn settings for ``gunicorn serve:app``; values come from the environment.

``PORT`` (default 8001) and ``WEB_CONCURRENCY`` (default: the CPU count) are the usual
knobs; everything else is fixed here. Check with ``gunicorn --check-config serve:app``.
"""

from __future__ import annotations

import logging
import os
from typing import Any

# Where to listen: every interface, on $PORT (the original project's 8001 by default).
bind = [f"0.0.0.0:{os.environ.get('PORT') or '8001'}"]

# One worker per core; each builds its own onnxruntime sessions after fork. The worker is
# gunicorn's sync worker (one request at a time, no threads) that keeps a client's connection
# open between requests and hands each new connection to the worker holding the fewest
# (serve/worker.py).
workers = int(os.environ.get("WEB_CONCURRENCY") or os.cpu_count() or 1)
worker_class = "serve.worker.KeepAliveWorker"
preload_app = False

# The worker count is exported so that serve.settings sizes intra-op threads to
# workers x threads = cores.
os.environ["WEB_CONCURRENCY"] = str(workers)

# A worker silent for `timeout` seconds is killed and replaced; on SIGTERM, in-flight
# requests get `graceful_timeout` seconds to finish. A kept connection idle for `keepalive`
# seconds is closed (`--keep-alive 0`: one request per connection, as the sync worker).
timeout = 30
graceful_timeout = 20
keepalive = 5

# Request-line and header limits (bytes, count, bytes), against oversized or hostile headers.
limit_request_line = 4094
limit_request_fields = 100
limit_request_field_size = 8190

# Error log on standard error, for the container runtime to collect. gunicorn's own access
# line is off unless ACCESS_LOG names a file ("-": standard output): the app already logs
# one JSON line per request (serve/requestlog.py), and gunicorn's costs about 90 us of CPU
# per request, a quarter of a /health/live request (bench/, Performance in the README).
accesslog = os.environ.get("ACCESS_LOG") or None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info")
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms "%(a)s"'

# No runtime control socket (gunicorn >= 25): one fixed path per user would be shared by
# every instance on the machine; signals (HUP, TTIN, TTOU, TERM) do the same job.
control_socket_disable = True

# Worker heartbeat files in memory rather than on a possibly slow disk.
if os.path.isdir("/dev/shm"):
    worker_tmp_dir = "/dev/shm"


# Each worker keeps to a CPU of its own while there are no more workers than CPUs, so that
# its caches stay warm between requests (2-3% more /predict requests/s on 2 cores,
# Performance in the README). PIN_WORKERS=0 leaves placement to the kernel.
def pre_fork(server: Any, worker: Any) -> None:
    """In the master, before a worker forks: give it (``worker.cpu``) the CPU that the fewest
    live workers hold (none when pinning is off or there are more workers than CPUs). While
    SIGHUP's new workers start beside the old ones two share a CPU, until the old one exits."""
    worker.cpu = None
    if os.environ.get("PIN_WORKERS") == "0" or not hasattr(os, "sched_setaffinity"):
        return
    cpus = sorted(os.sched_getaffinity(0))
    if server.num_workers > len(cpus):
        return
    held = [getattr(other, "cpu", None) for other in server.WORKERS.values()]
    worker.cpu = min(cpus, key=held.count)


def post_fork(server: Any, worker: Any) -> None:
    """In each new worker, before it loads the app: keep to the CPU pre_fork chose, tell it
    how many workers there are (``-w`` on the command line or SIGTTIN/SIGTTOU may have
    changed the count) so that it sizes its onnxruntime and BLAS threads, and send the app's
    own log lines (which provider each model got, ...) to gunicorn's error log, at its
    level."""
    if worker.cpu is not None:
        os.sched_setaffinity(0, {worker.cpu})
    os.environ["WEB_CONCURRENCY"] = str(server.num_workers)
    # numpy's OpenBLAS (not loaded yet: the app is imported after this hook) would start a
    # thread per CPU in every worker and oversubscribe the cores: a 300x300 photo's
    # resampling product ran 2.6x slower that way. Each worker gets its share, as onnxruntime.
    from serve.settings import threads_per_worker

    for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        os.environ.setdefault(variable, str(threads_per_worker()))
    app_logger = logging.getLogger("serve")
    app_logger.setLevel(server.log.error_log.level)
    app_logger.handlers = list(server.log.error_log.handlers)
    app_logger.propagate = False


# Prometheus metrics (serve/metrics.py): the workers share their counts through files in
# PROMETHEUS_MULTIPROC_DIR. prometheus_client is imported only inside the hooks, after the
# variable is set, so that every worker imports it in multiprocess mode.
_METRICS_DIR_PREFIX = "mnist-serve-metrics-"


def on_starting(server: Any) -> None:
    """Before any worker starts: empty PROMETHEUS_MULTIPROC_DIR of a previous run's files,
    or, when it is not set, create a fresh folder under the system temp dir and set it."""
    import glob
    import tempfile

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
    import shutil
    import tempfile

    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
    if os.path.dirname(folder) == tempfile.gettempdir() and os.path.basename(folder).startswith(
        _METRICS_DIR_PREFIX
    ):
        shutil.rmtree(folder, ignore_errors=True)
