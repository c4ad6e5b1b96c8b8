"""The peer: what a user would write with FastAPI instead, over the same models
(serve.model.runtime) and the same image reading (serve.images.decode, serve.images.normalise).

Run it the way its documentation says, one worker per core:
``uvicorn bench.peers.fastapi_app:app --workers 2 --port 8002``.
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI, File, Request, UploadFile
from fastapi.responses import JSONResponse

from serve.errors import ServiceError
from serve.images import decode, normalise
from serve.model.runtime import ModelRepository
from serve.settings import Settings

settings = Settings.from_env()
repository = ModelRepository.load(
    settings.model_dir, settings.default_model, settings.providers, settings.intra_op_threads
)
repository.warm_up()
app = FastAPI(title="MNIST peer")


@app.exception_handler(ServiceError)
async def service_error(request: Request, error: ServiceError) -> JSONResponse:
    """The same 4xx statuses and body shape as the Falcon service."""
    return JSONResponse(
        {"title": error.title, "description": error.description}, status_code=error.status
    )


@app.get("/health/live")
async def live() -> dict[str, str]:
    """The process is up."""
    return {"status": "live"}


@app.post("/predict")
async def predict(file: Annotated[UploadFile, File()], model: str | None = None) -> dict[str, Any]:
    """Classify one uploaded digit image, answering the same JSON as ``/predict``."""
    onnx_model = repository.get(model)
    image = decode.decode(await file.read(), settings.max_image_pixels)
    probabilities = onnx_model.predict(normalise.to_mnist(image)[np.newaxis])[0]
    label = int(np.argmax(probabilities))
    return {
        "classifier": onnx_model.info.classifier,
        "model": onnx_model.info.name,
        "label": label,
        "confidence": float(probabilities[label]),
        "probabilities": [float(value) for value in probabilities],
    }
