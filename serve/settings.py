"""Service settings: one object, read once from the environment (prefix ``MNIST_``)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path

from serve.cpus import usable_cpus

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "onnx_models"
PROVIDER_CHOICES = ("auto", "cpu", "cuda")


def threads_per_worker(environ: Mapping[str, str] | None = None) -> int:
    """Threads per worker (onnxruntime intra-op, numpy's BLAS) so that gunicorn workers
    (``WEB_CONCURRENCY``, which gunicorn.conf.py sets) x threads = cores; at least 1."""
    env = os.environ if environ is None else environ
    cores = usable_cpus()
    try:
        workers = int(env.get("WEB_CONCURRENCY") or cores)
    except ValueError:
        workers = cores
    return max(1, cores // max(1, workers))


def _convert(variable: str, raw: str, current: object) -> object:
    """``raw`` as the type of the field's default; ValueError naming ``variable`` otherwise."""
    if isinstance(current, Path):
        return Path(raw)
    if isinstance(current, int):
        try:
            number = int(raw)
        except ValueError:
            raise ValueError(f"{variable} must be a whole number, not {raw!r}") from None
        if number < 1:
            raise ValueError(f"{variable} must be at least 1, not {number}")
        return number
    return raw


@dataclasses.dataclass
class Settings:
    """Everything the service can be told; tests build one and override fields."""

    #: Folder of ``.onnx`` files; each is served under the name in its metadata (else its stem).
    model_dir: Path = DEFAULT_MODEL_DIR
    #: Model used by /predict when no ``?model=`` is given.
    default_model: str = "cnn"
    #: ``auto`` (CUDA where a session really runs on it, else CPU), ``cpu`` or ``cuda``
    #: (fails at start-up when CUDA cannot be had).
    providers: str = "auto"
    #: onnxruntime intra-op threads per session; default sized so workers x threads = cores.
    intra_op_threads: int = dataclasses.field(default_factory=threads_per_worker)
    #: Largest request body accepted, in bytes (413 beyond, before the body is read).
    max_body_bytes: int = 10 * 1024 * 1024
    #: Largest decoded image, in pixels (413 beyond, checked from the header, before decoding).
    max_image_pixels: int = 40_000_000
    #: Most pixels all the images of one request may declare together, /predict and v2
    #: ``image_bytes`` alike (413 beyond, judged from the headers before any is decoded):
    #: this bounds one request's decode work, whatever the number of images.
    max_request_pixels: int = 50_000_000
    #: Most images in one /predict request (413 beyond).
    max_files: int = 64
    #: Most tensor elements in one v2 infer request (413 beyond).
    max_tensor_elements: int = 64 * 784 * 4

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``MNIST_*`` variables (``MNIST_MODEL_DIR``,
        ``MNIST_MAX_FILES``, ...), keeping defaults for the rest; a bad value raises
        ValueError naming the variable."""
        env = os.environ if environ is None else environ
        settings = cls(intra_op_threads=threads_per_worker(env))
        for field in dataclasses.fields(cls):
            variable = f"MNIST_{field.name.upper()}"
            raw = env.get(variable, "").strip()
            if raw:
                setattr(
                    settings, field.name, _convert(variable, raw, getattr(settings, field.name))
                )
        settings.providers = settings.providers.lower()
        if settings.providers not in PROVIDER_CHOICES:
            raise ValueError(
                f"MNIST_PROVIDERS must be one of {', '.join(PROVIDER_CHOICES)}, "
                f"not {settings.providers!r}"
            )
        return settings
