"""Model runtime: onnxruntime sessions and the metadata export/ wrote; knows nothing of HTTP."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime

from serve.errors import ModelNotFound

log = logging.getLogger(__name__)

IMAGE_SIDE = 28
NUM_CLASSES = 10
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"

#: Names the original project gave its models; kept as the ``classifier`` field of responses.
DEFAULT_CLASSIFIER_NAMES = {"softmax": "SoftmaxClassifier", "cnn": "CNNClassifier"}


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """What serving knows about one model, read from the ONNX file itself."""

    name: str
    classifier: str
    version: str
    input_name: str
    #: The model's input shape; -1 stands for a dynamic dimension (the batch).
    input_shape: tuple[int, ...]
    output_name: str
    output_shape: tuple[int, ...]
    labels: tuple[str, ...]
    provider: str
    #: Every ``metadata_props`` entry of the file (accuracy, opset, data checksum, ...).
    metadata: dict[str, str]


def resolve_providers(choice: str) -> list[str]:
    """Map the ``auto``/``cpu``/``cuda`` setting to an onnxruntime provider list."""
    available = onnxruntime.get_available_providers()
    if choice == "cpu":
        return [CPU]
    if choice == "cuda":
        if CUDA not in available:
            raise RuntimeError(
                "MNIST_PROVIDERS=cuda but this onnxruntime has no CUDAExecutionProvider; "
                "install onnxruntime-gpu (and not onnxruntime) on a machine with a GPU"
            )
        return [CUDA, CPU]
    return [CUDA, CPU] if CUDA in available else [CPU]


def _dims(shape: list[object]) -> tuple[int, ...]:
    return tuple(dim if isinstance(dim, int) else -1 for dim in shape)


class OnnxModel:
    """One onnxruntime session over one ``.onnx`` file, with its metadata."""

    def __init__(self, path: Path, providers: list[str], intra_op_threads: int) -> None:
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle intra-op threads sleep instead of spinning: with more than one thread per
        # worker, spinning burned CPU the other workers needed (python -m bench.session_options).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = onnxruntime.InferenceSession(
            str(path), sess_options=options, providers=providers
        )
        active = self._session.get_providers()
        if providers[0] == CUDA and CUDA not in active:
            log.warning("model %s: CUDA was asked for but is not active; running on CPU", path)
        metadata: dict[str, str] = dict(self._session.get_modelmeta().custom_metadata_map)
        model_input = self._session.get_inputs()[0]
        model_output = self._session.get_outputs()[0]
        name = metadata.get("name", path.stem)
        self.info = ModelInfo(
            name=name,
            classifier=metadata.get("classifier") or DEFAULT_CLASSIFIER_NAMES.get(name, name),
            version=metadata.get("version", "1"),
            input_name=model_input.name,
            input_shape=_dims(model_input.shape),
            output_name=model_output.name,
            output_shape=_dims(model_output.shape),
            labels=tuple(json.loads(metadata.get("labels", "[]")))
            or tuple(str(digit) for digit in range(NUM_CLASSES)),
            provider=active[0],
            metadata=metadata,
        )
        self._image_shape = (-1, *self.info.input_shape[1:])

    def run(self, tensor: np.ndarray) -> np.ndarray:
        """Run the model on a float32 tensor already in its own input layout; returns
        the ``[batch, 10]`` probabilities."""
        outputs = self._session.run([self.info.output_name], {self.info.input_name: tensor})
        return np.asarray(outputs[0])

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Classify ``[batch, 28, 28]`` float32 images in [0, 1] (MNIST-normalised);
        returns ``[batch, 10]`` probabilities. The model's own layout is read, not assumed."""
        tensor = np.ascontiguousarray(images, dtype=np.float32).reshape(self._image_shape)
        return self.run(tensor)

    def warm_up(self) -> None:
        """Run one blank batch so the first real request does not pay for allocation."""
        self.predict(np.zeros((1, IMAGE_SIDE, IMAGE_SIDE), dtype=np.float32))


class ModelRepository:
    """Every model of a folder, by name; the read-only state a worker shares across requests."""

    def __init__(self, models: dict[str, OnnxModel], default: str) -> None:
        if not models:
            raise RuntimeError("no models to serve")
        if default not in models:
            raise RuntimeError(f"default model {default!r} is not among {sorted(models)}")
        self._models = models
        self.default = default
        self.ready = False

    @classmethod
    def load(
        cls, model_dir: Path, default: str, providers: str, intra_op_threads: int
    ) -> ModelRepository:
        """Open a session for each ``*.onnx`` in ``model_dir``."""
        provider_list = resolve_providers(providers)
        paths = sorted(Path(model_dir).glob("*.onnx"))
        if not paths:
            raise RuntimeError(f"no .onnx files in {model_dir}")
        models: dict[str, OnnxModel] = {}
        for path in paths:
            model = OnnxModel(path, provider_list, intra_op_threads)
            if providers == "cuda" and model.info.provider != CUDA:
                raise RuntimeError(
                    f"MNIST_PROVIDERS=cuda but model {model.info.name} runs on "
                    f"{model.info.provider}: onnxruntime-gpu could not start CUDA here "
                    "(check the CUDA and cuDNN libraries and the GPU driver)"
                )
            models[model.info.name] = model
            log.info(
                "model %s version %s loaded from %s on %s",
                model.info.name,
                model.info.version,
                path,
                model.info.provider,
            )
        return cls(models, default)

    def warm_up(self) -> None:
        """Warm every model once, then mark the repository ready."""
        for model in self._models.values():
            model.warm_up()
        self.ready = True

    def get(self, name: str | None = None) -> OnnxModel:
        """The model called ``name`` (the default one for None); ModelNotFound otherwise."""
        key = self.default if name is None else name
        try:
            return self._models[key]
        except KeyError:
            raise ModelNotFound(
                f"unknown model {key!r}; known models: {', '.join(sorted(self._models))}"
            ) from None

    def __iter__(self) -> Iterator[OnnxModel]:
        return iter(self._models.values())

    def names(self) -> list[str]:
        """Names of the served models, sorted."""
        return sorted(self._models)
