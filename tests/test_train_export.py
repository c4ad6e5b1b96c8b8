"""End to end on a small slice: ``python -m train --quick``, ``python -m export``, onnxruntime."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest

from export import metadata
from train import data

ROOT = Path(__file__).resolve().parent.parent
TEST_IMAGES = 1_000
CONTRACT_KEYS = {
    "name",
    "classifier",
    "version",
    "labels",
    "input_layout",
    "input_scaling",
    "test_accuracy",
    "test_images",
    "opset",
    "parameters",
    "train_data_sha256",
    "trained_at",
    "training_command",
    "epochs",
    "seed",
    "versions",
    "exported_at",
}


@pytest.mark.parametrize("package", ["train", "export"])
def test_help_is_useful(package: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", package, "--help"], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 0
    assert result.stdout.startswith(f"usage: python -m {package} ")
    for option in ("--model", "--data-dir", "--output"):
        assert option in result.stdout
    assert result.stderr == ""


@pytest.mark.parametrize("script", ["mnist-train", "mnist-export"])
def test_console_scripts_show_their_own_name(script: str) -> None:
    path = shutil.which(script, path=str(Path(sys.executable).parent))
    if path is None:
        pytest.skip(f"{script} is not installed: pip install -e .")
    result = subprocess.run([path, "--help"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0
    assert result.stdout.startswith(f"usage: {script} ")


@pytest.fixture(scope="module")
def quick_run(mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CNN trained by the quick mode, saved in a temporary folder."""
    from train.__main__ import main

    keras_path = tmp_path_factory.mktemp("run") / "cnn.keras"
    arguments = ["--model", "cnn", "--quick", "--data-dir", str(mnist_dir)]
    assert main([*arguments, "--output", str(keras_path)]) == 0
    return keras_path


@pytest.mark.slow
def test_quick_training_writes_model_and_summary(quick_run: Path, mnist_dir: Path) -> None:
    summary = json.loads(quick_run.with_suffix(".json").read_text())
    assert quick_run.is_file()
    assert summary["quick"] is True
    assert summary["train_images"] == 3_000
    assert summary["epochs"] == 1
    assert summary["parameters"] == 75_866
    assert summary["train_data_sha256"] == data.load_mnist(mnist_dir).train_sha256
    assert 0.0 <= summary["test_accuracy"] <= 1.0
    assert {"tensorflow", "keras", "numpy", "python"} <= set(summary["versions"])


@pytest.mark.slow
def test_export_runs_in_onnxruntime(
    quick_run: Path, mnist_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from export.__main__ import main

    onnx_path = tmp_path / "cnn.onnx"
    arguments = ["--model", "cnn", "--input", str(quick_run), "--output", str(onnx_path)]
    extra = ["--data-dir", str(mnist_dir), "--test-images", str(TEST_IMAGES)]
    assert main([*arguments, *extra]) == 0
    assert "parity passed" in capsys.readouterr().out

    model = onnx.load(str(onnx_path))
    onnx.checker.check_model(model, full_check=True)
    assert {opset.version for opset in model.opset_import if opset.domain == ""} == {17}
    entries = metadata.read(model)
    assert set(entries) >= CONTRACT_KEYS
    assert entries["name"] == "cnn" and entries["classifier"] == "CNNClassifier"
    assert entries["input_layout"] == "NHWC"
    assert json.loads(entries["labels"]) == [str(digit) for digit in range(10)]
    assert entries["test_images"] == str(TEST_IMAGES)

    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (model_input,), (model_output,) = session.get_inputs(), session.get_outputs()
    assert (model_input.name, model_input.shape) == ("image", ["batch", 28, 28, 1])
    assert (model_output.name, model_output.shape) == ("probabilities", ["batch", 10])
    test = data.load_mnist(mnist_dir).test.head(TEST_IMAGES)
    probabilities = session.run(None, {"image": data.to_float(test.images)})[0]
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    accuracy = float(np.mean(probabilities.argmax(axis=1) == test.labels))
    assert abs(accuracy - float(entries["test_accuracy"])) <= 0.0005


@pytest.mark.slow
def test_export_refuses_a_wrong_conversion(
    quick_run: Path, mnist_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Swap a perturbed ONNX model in for tf2onnx's: the gate must stop it, writing nothing."""
    from onnx import numpy_helper

    from export import convert, pipeline

    real_to_onnx = convert.to_onnx

    def perturbed_to_onnx(model: object, opset: int = convert.OPSET) -> onnx.ModelProto:
        onnx_model = real_to_onnx(model, opset)
        largest = max(onnx_model.graph.initializer, key=lambda tensor: np.prod(tensor.dims))
        values = numpy_helper.to_array(largest)
        noise = np.random.default_rng(0).normal(0.0, 0.05, values.shape).astype(values.dtype)
        largest.CopyFrom(numpy_helper.from_array(values + noise, largest.name))
        return onnx_model

    monkeypatch.setattr(convert, "to_onnx", perturbed_to_onnx)
    output = tmp_path / "wrong.onnx"
    request = pipeline.Request(
        "cnn", quick_run, output, data_dir=mnist_dir, test_images=TEST_IMAGES
    )
    with pytest.raises(pipeline.ExportError, match=r"parity check failed: 1000 images: .* max"):
        pipeline.export(request)
    assert not output.exists()


def test_export_without_training_says_what_to_run(tmp_path: Path) -> None:
    from export import pipeline

    request = pipeline.Request("cnn", tmp_path / "missing.keras", tmp_path / "cnn.onnx")
    with pytest.raises(pipeline.ExportError, match="python -m train --model cnn"):
        pipeline.export(request)
