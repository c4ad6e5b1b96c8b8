"""``POST /predict`` (and ``POST /upload``, the original path): classify uploaded digit images."""

from __future__ import annotations

import time
from typing import Any

import falcon
import numpy as np

from serve import images
from serve.api import uploads
from serve.images import normalise
from serve.model.runtime import ModelInfo, ModelRepository, OnnxModel
from serve.observability import metrics
from serve.settings import Settings


class Prediction:
    """Classify the images of one request, all in one batch, with the ``?model=`` chosen."""

    def __init__(self, settings: Settings, repository: ModelRepository) -> None:
        self.limits = uploads.UploadLimits.from_settings(settings)
        self._max_pixels = settings.max_image_pixels
        self._max_request_pixels = settings.max_request_pixels
        self._repository = repository

    @falcon.before(uploads.reject_oversized_body)
    @falcon.before(uploads.require_upload_content_type)
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        model = self._repository.get(req.get_param("model"))
        req.context.model, req.context.model_version = model.info.name, model.info.version
        debug = req.get_param_as_bool("debug", default=False)
        files = uploads.read_uploads(req, self.limits)
        images.require_pixel_budget([upload.data for upload in files], self._max_request_pixels)
        req.context.batch_size = len(files)
        answers = self._classify(model, files, debug)
        resp.media = answers[0] if len(files) == 1 else batch_answer(model.info, files, answers)

    def _classify(
        self, model: OnnxModel, files: list[uploads.Upload], debug: bool
    ) -> list[dict[str, Any]]:
        """Normalise every file, run them through ``model`` as one batch and describe each
        result; records the inference timings."""
        started = time.perf_counter()
        # With several files, an error names the file it is about.
        named = len(files) > 1
        digits = np.stack(
            [
                images.read_digit(upload.data, self._max_pixels, upload.filename if named else None)
                for upload in files
            ]
        )
        inferring = time.perf_counter()
        probabilities = model.predict(digits)
        answering = time.perf_counter()
        answers = [
            describe(model.info, row, image if debug else None)
            for row, image in zip(probabilities, digits, strict=True)
        ]
        metrics.observe_inference(
            model.info.name,
            model.info.version,
            images=len(files),
            input_seconds=inferring - started,
            infer_seconds=answering - inferring,
            output_seconds=time.perf_counter() - answering,
        )
        return answers


def describe(
    info: ModelInfo, probabilities: np.ndarray, image: np.ndarray | None
) -> dict[str, Any]:
    """The answer for one image: classifier, model, label, confidence, the ten
    probabilities, and with ``image`` the 28x28 the model saw as a PNG data URL."""
    label = int(np.argmax(probabilities))
    answer: dict[str, Any] = {
        "classifier": info.classifier,
        "model": info.name,
        "label": label,
        "confidence": float(probabilities[label]),
        "probabilities": probabilities.tolist(),
    }
    if image is not None:
        answer["input_image"] = normalise.to_png_data_url(image)
    return answer


def batch_answer(
    info: ModelInfo, files: list[uploads.Upload], answers: list[dict[str, Any]]
) -> dict[str, Any]:
    """The answer for several images: one prediction per file, each with its filename."""
    predictions = [
        {"filename": upload.filename, **answer}
        for upload, answer in zip(files, answers, strict=True)
    ]
    return {"model": info.name, "classifier": info.classifier, "predictions": predictions}
