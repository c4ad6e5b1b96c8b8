"""``GET /openapi.json``: the OpenAPI 3.0 document of every route the app serves.

The document is the static file ``openapi.json`` next to this module; its v2 part follows
the Open Inference Protocol's REST specification. Only what depends on the deployment is
filled in here: the served models' names, versions and inputs, and the server's version.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import falcon
import orjson

from serve.model.runtime import ModelRepository
from serve.v2.metadata import server_version
from serve.v2.tensors import IMAGE_INPUT

#: The document as shipped in the package, without the deployment's values.
DOCUMENT_FILE = Path(__file__).resolve().parent / "openapi.json"


def _choice(values: list[str], example: str) -> dict[str, Any]:
    """A string schema's ``enum`` and ``example``."""
    return {"enum": values, "example": example}


def document(repository: ModelRepository) -> dict[str, Any]:
    """The OpenAPI document, with ``repository``'s model names, versions and input names
    as the enums of the ModelName, ModelVersion and InputName schemas."""
    result: dict[str, Any] = orjson.loads(DOCUMENT_FILE.read_bytes())
    result["info"]["version"] = server_version()
    versions = sorted({model.info.version for model in repository})
    inputs = sorted({model.info.input_name for model in repository} | {IMAGE_INPUT})
    schemas = result["components"]["schemas"]
    schemas["ModelName"].update(_choice(repository.names(), repository.default))
    schemas["ModelVersion"].update(_choice(versions, versions[0]))
    schemas["InputName"].update(_choice(inputs, IMAGE_INPUT))
    return result


class OpenApiDocument:
    """``GET /openapi.json``: the document of ``repository``'s models, serialised once."""

    def __init__(self, repository: ModelRepository) -> None:
        self._body = orjson.dumps(document(repository))

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Answer the document."""
        resp.content_type = falcon.MEDIA_JSON
        resp.data = self._body
