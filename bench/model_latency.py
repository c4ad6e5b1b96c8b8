"""Batch-1 latency of the committed CNN against the original tutorial CNN, side by side.

Both run in onnxruntime on one CPU thread in the same process, timed in interleaved rounds
so that a busy machine slows both alike. The tutorial architecture (conv5x5x32, pool,
conv5x5x64, pool, dense 1024, dense 10) is built untrained and exported the same way as
ours. Prints each model's median milliseconds per call (robust to a busy machine preempting
some calls) and the ratio.

    python bench/model_latency.py [--model onnx_models/cnn.onnx] [--rounds 15]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def session(model: onnx.ModelProto) -> onnxruntime.InferenceSession:
    """An onnxruntime CPU session on one intra-op and one inter-op thread."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    return onnxruntime.InferenceSession(
        model.SerializeToString(), sess_options=options, providers=["CPUExecutionProvider"]
    )


def time_round(runner: onnxruntime.InferenceSession, image: np.ndarray, calls: int) -> list[float]:
    """Milliseconds taken by each of ``calls`` consecutive batch-1 calls."""
    feed = {runner.get_inputs()[0].name: image}
    timings = []
    for _ in range(calls):
        started = time.perf_counter_ns()
        runner.run(None, feed)
        timings.append((time.perf_counter_ns() - started) / 1e6)
    return timings


def tutorial_onnx() -> onnx.ModelProto:
    """The tutorial CNN, untrained, exported like ours."""
    from train.quiet import import_tensorflow, stderr_silenced

    import_tensorflow()
    from export.convert import to_onnx
    from train.models import build_tutorial_cnn

    with stderr_silenced():
        return to_onnx(build_tutorial_cnn())


def parameter_count(model: onnx.ModelProto) -> int:
    """Number of weights stored in the model's initializers."""
    return sum(int(np.prod(tensor.dims)) for tensor in model.graph.initializer)


def main() -> int:
    """Time both models and print the figures; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=ROOT / "onnx_models" / "cnn.onnx")
    parser.add_argument("--rounds", type=int, default=15, help="interleaved timing rounds")
    parser.add_argument("--calls", type=int, default=400, help="batch-1 calls per round")
    arguments = parser.parse_args()

    ours = onnx.load(str(arguments.model))
    models = {"tutorial CNN": tutorial_onnx(), f"ours ({arguments.model.name})": ours}
    runners = {name: session(model) for name, model in models.items()}
    image = np.random.default_rng(0).random((1, 28, 28, 1), dtype=np.float32)
    for runner in runners.values():
        time_round(runner, image, arguments.calls)
    timings: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(arguments.rounds):
        for name, runner in runners.items():
            timings[name].extend(time_round(runner, image, arguments.calls))

    medians = {name: statistics.median(values) for name, values in timings.items()}
    calls = arguments.rounds * arguments.calls
    print(
        f"onnxruntime {onnxruntime.__version__}, CPU, 1 thread, batch 1: "
        f"median of {calls} timed calls per model, in {arguments.rounds} interleaved rounds"
    )
    for name, model in models.items():
        size_mb = len(model.SerializeToString()) / 1e6
        print(
            f"{name:24s} {medians[name]:.4f} ms/image  "
            f"{parameter_count(model):>9,d} parameters  {size_mb:.2f} MB"
        )
    tutorial, ours_ms = medians.values()
    print(f"ratio ours/tutorial: {ours_ms / tutorial:.3f} (target <= 0.333)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
