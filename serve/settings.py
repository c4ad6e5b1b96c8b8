"""Service settings: one object, read once from the environment (prefix ``MNIST_``)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "onnx_models"
PROVIDER_CHOICES = ("auto", "cpu", "cuda")


def _default_threads() -> int:
    """Intra-op threads so that gunicorn workers x threads = cores (at least 1)."""
    cores = os.cpu_count() or 1
    workers = int(os.environ.get("WEB_CONCURRENCY", cores) or cores)
    return max(1, cores // max(1, workers))


@dataclasses.dataclass
class Settings:
    """Everything the service can be told; tests build one and override fields."""

    #: Folder holding ``<name>.onnx`` files; every file there is served under its stem.
    model_dir: Path = DEFAULT_MODEL_DIR
    #: Model used by /predict when no ``?model=`` is given.
    default_model: str = "cnn"
    #: ``auto`` (CUDA where a session really runs on it, else CPU), ``cpu`` or ``cuda``
    #: (fails at start-up when CUDA cannot be had).
    providers: str = "auto"
    #: onnxruntime intra-op threads per session; default sized so workers x threads = cores.
    intra_op_threads: int = dataclasses.field(default_factory=_default_threads)
    #: Largest request body accepted, in bytes (413 beyond, before the body is read).
    max_body_bytes: int = 10 * 1024 * 1024
    #: Largest decoded image, in pixels (413 beyond, checked from the header, before decoding).
    max_image_pixels: int = 40_000_000
    #: Most images in one /predict request (413 beyond).
    max_files: int = 64
    #: Most tensor elements in one v2 infer request (413 beyond).
    max_tensor_elements: int = 64 * 784 * 4

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        """Build settings from ``MNIST_*`` variables, keeping defaults for the rest."""
        env = os.environ if environ is None else environ
        settings = cls()
        converters = {field.name: field.type for field in dataclasses.fields(cls)}
        for name in converters:
            raw = env.get(f"MNIST_{name.upper()}")
            if raw is None or raw == "":
                continue
            current = getattr(settings, name)
            value: object = type(current)(raw) if not isinstance(current, Path) else Path(raw)
            setattr(settings, name, value)
        if settings.providers not in PROVIDER_CHOICES:
            raise ValueError(
                f"MNIST_PROVIDERS must be one of {', '.join(PROVIDER_CHOICES)}, "
                f"not {settings.providers!r}"
            )
        return settings
