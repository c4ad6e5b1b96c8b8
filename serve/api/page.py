"""``GET /``: the demo page (draw or upload a digit), and its script and style sheet.

Everything is read from ``serve/api/static`` once, when the routes are added: no build step, no
CDN, no file opened per request. Assets are linked with a content hash (``?v=...``) so
browsers may cache them for a year and still see a new version at once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import html
import string
from pathlib import Path

import falcon

from serve.model.runtime import ModelRepository

STATIC_DIR = Path(__file__).resolve().parent / "static"
CONTENT_TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
#: Scripts and styles only from this origin; images may be data or blob URLs (the 28x28
#: the model saw, the chosen file); requests only to this origin.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
ONE_YEAR = 365 * 24 * 3600


@dataclasses.dataclass(frozen=True)
class Asset:
    """One static file held in memory, with its content type and content hash."""

    body: bytes
    content_type: str
    digest: str

    @classmethod
    def read(cls, path: Path) -> Asset:
        """Read ``path``; its content type comes from the suffix."""
        body = path.read_bytes()
        return cls(body, CONTENT_TYPES[path.suffix], hashlib.sha256(body).hexdigest()[:16])


def load_assets(directory: Path = STATIC_DIR) -> dict[str, Asset]:
    """Every file of ``directory`` whose type we serve, by file name (no subfolders, so no
    client-chosen path ever reaches the file system)."""
    return {
        path.name: Asset.read(path)
        for path in sorted(directory.iterdir())
        if path.is_file() and path.suffix in CONTENT_TYPES
    }


def _accuracy_note(metadata: dict[str, str]) -> str:
    """``" (99.62% test accuracy)"`` when the model's metadata records its accuracy."""
    try:
        accuracy = float(metadata["test_accuracy"])
    except (KeyError, ValueError):
        return ""
    return f" ({accuracy:.2%} test accuracy)"


def model_options(repository: ModelRepository) -> str:
    """The ``<option>`` elements of the model picker, the default model selected."""
    options = []
    for model in repository:
        info = model.info
        selected = " selected" if info.name == repository.default else ""
        text = f"{info.name}{_accuracy_note(info.metadata)}"
        options.append(
            f'<option value="{html.escape(info.name)}"{selected}>{html.escape(text)}</option>'
        )
    return "\n          ".join(options)


def render_page(repository: ModelRepository, assets: dict[str, Asset]) -> bytes:
    """``index.html`` with the served models and the hashed asset links filled in."""
    template = string.Template((STATIC_DIR / "index.html").read_text(encoding="utf-8"))
    return template.substitute(
        model_options=model_options(repository),
        script_version=assets["app.js"].digest,
        style_version=assets["style.css"].digest,
    ).encode("utf-8")


def _set_common_headers(resp: falcon.Response) -> None:
    resp.set_header("X-Content-Type-Options", "nosniff")
    resp.set_header("Referrer-Policy", "no-referrer")


class Page:
    """``GET /``: the page, rendered once per worker (the model list does not change)."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = falcon.MEDIA_HTML
        resp.data = self._body
        resp.cache_control = ["no-cache"]
        resp.set_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        _set_common_headers(resp)

    on_head = on_get


class StaticFile:
    """``GET /static/{name}``: one of the in-memory assets, with caching headers."""

    def __init__(self, assets: dict[str, Asset]) -> None:
        self._assets = assets

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        asset = self._assets.get(name)
        if asset is None:
            raise falcon.HTTPNotFound(description=f"no static file named {name!r}")
        # A link carrying the current hash can never go stale; any other is revalidated.
        if req.get_param("v") == asset.digest:
            resp.cache_control = ["public", f"max-age={ONE_YEAR}", "immutable"]
        else:
            resp.cache_control = ["no-cache"]
        resp.etag = asset.digest
        _set_common_headers(resp)
        if req.if_none_match and any(tag in ("*", asset.digest) for tag in req.if_none_match):
            resp.status = falcon.HTTP_304
            return
        resp.content_type = asset.content_type
        resp.data = asset.body

    on_head = on_get
