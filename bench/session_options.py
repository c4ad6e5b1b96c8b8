"""onnxruntime session options compared on the committed CNN: CPU microseconds per image at
batch 1 and 64, one intra-op thread (what each gunicorn worker gets), best of 3 rounds.

``python -m bench.session_options`` prints one line per variant; serve/model/runtime.py uses the
one marked "serve/model/runtime.py".
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime

from bench import samples

DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "onnx_models" / "cnn.onnx"
LEVEL = onnxruntime.GraphOptimizationLevel


def session(path: Path, **changes: Any) -> onnxruntime.InferenceSession:
    """A CPU session with serve/model/runtime.py's options, some of them changed."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = LEVEL.ORT_ENABLE_ALL
    for name, value in changes.items():
        setattr(options, name, value)
    return onnxruntime.InferenceSession(
        str(path), sess_options=options, providers=["CPUExecutionProvider"]
    )


def cpu_us_per_image(model: onnxruntime.InferenceSession, batch: np.ndarray, calls: int) -> float:
    """Process CPU time per image of ``calls`` runs on ``batch``, in microseconds."""
    feed = {model.get_inputs()[0].name: batch}
    model.run(None, feed)
    started = time.process_time()
    for _ in range(calls):
        model.run(None, feed)
    return (time.process_time() - started) / calls / len(batch) * 1e6


def main() -> None:
    """Print each variant's CPU per image at batch 1 and 64."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    arguments = parser.parse_args()
    path = arguments.model
    variants = {
        "onnxruntime defaults (threads = cores)": onnxruntime.InferenceSession(
            str(path), providers=["CPUExecutionProvider"]
        ),
        "serve/model/runtime.py: ENABLE_ALL, 1 thread": session(path),
        "ENABLE_EXTENDED": session(path, graph_optimization_level=LEVEL.ORT_ENABLE_EXTENDED),
        "ENABLE_BASIC": session(path, graph_optimization_level=LEVEL.ORT_ENABLE_BASIC),
        "DISABLE_ALL": session(path, graph_optimization_level=LEVEL.ORT_DISABLE_ALL),
        "ENABLE_ALL, no memory arena": session(path, enable_cpu_mem_arena=False),
        "ENABLE_ALL, no memory pattern": session(path, enable_mem_pattern=False),
    }
    shape = variants["serve/model/runtime.py: ENABLE_ALL, 1 thread"].get_inputs()[0].shape
    batches = {size: samples.normalised_batch(size).reshape([size, *shape[1:]]) for size in (1, 64)}
    best: dict[str, dict[int, float]] = {name: {1: np.inf, 64: np.inf} for name in variants}
    for _ in range(3):
        for name, model in variants.items():
            for size, batch in batches.items():
                figure = cpu_us_per_image(model, batch, 2000 if size == 1 else 60)
                best[name][size] = min(best[name][size], figure)
    print("| session options | batch 1 CPU us/image | batch 64 CPU us/image |")
    print("|---|---:|---:|")
    for name, figures in best.items():
        print(f"| {name} | {figures[1]:.1f} | {figures[64]:.1f} |")


if __name__ == "__main__":
    main()
