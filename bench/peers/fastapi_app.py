"""The peer: what a user would write with FastAPI instead, over the same models
(serve.model.runtime) and the same image reading (serve.images.decode, serve.images.normalise).

It answers ``/health/live``, ``/predict`` and the v2 JSON infer of the model's own FP32
input, each as the FastAPI documentation would have it written (pydantic models for the JSON).
Run it the way its documentation says, one worker per core:
``uvicorn bench.peers.fastapi_app:app --workers 2 --port 8002``.
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI, File, Request, UploadFile
from fastapi.responses import JSONResponse
from pydantic import BaseModel

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


class InferInput(BaseModel):
    """One v2 input tensor, JSON data."""

    name: str
    datatype: str
    shape: list[int]
    data: list[float]


class InferRequest(BaseModel):
    """A v2 inference request carrying JSON tensors."""

    inputs: list[InferInput]


@app.post("/v2/models/{name}/infer")
async def infer(name: str, request: InferRequest) -> dict[str, Any]:
    """Run the model's own FP32 input, answering the probabilities as a v2 JSON response."""
    onnx_model = repository.get(name)
    tensor = request.inputs[0]
    pixels = np.asarray(tensor.data, dtype=np.float32).reshape(tensor.shape)
    probabilities = onnx_model.run(pixels)
    return {
        "model_name": onnx_model.info.name,
        "model_version": onnx_model.info.version,
        "outputs": [
            {
                "name": onnx_model.info.output_name,
                "datatype": "FP32",
                "shape": list(probabilities.shape),
                "data": probabilities.ravel().tolist(),
            }
        ],
    }
