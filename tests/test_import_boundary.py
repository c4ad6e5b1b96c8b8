"""Serving never loads TensorFlow, tf2onnx or the training code (500 MB per worker)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = ("tensorflow", "tf2onnx", "keras", "train", "export")


def test_building_the_app_and_answering_imports_no_training_code() -> None:
    script = """
import json, sys
import serve
application = serve.app
from falcon import testing
client = testing.TestClient(application)
assert client.simulate_get("/health/ready").status_code == 200
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""
    completed = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={"MNIST_PROVIDERS": "cpu", "PATH": "/usr/bin:/bin"},
    )
    loaded = set(json.loads(completed.stdout.strip().splitlines()[-1]))
    assert "onnxruntime" in loaded and "falcon" in loaded
    assert loaded.isdisjoint(FORBIDDEN), sorted(loaded & set(FORBIDDEN))
