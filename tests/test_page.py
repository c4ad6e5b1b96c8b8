"""``GET /`` and its static files, through falcon.testing with the fake models."""

from __future__ import annotations

import re
from pathlib import Path

import falcon
import falcon.testing
import pytest

from serve.api import page
from serve.app import create_app
from serve.model.runtime import ModelRepository
from serve.settings import Settings
from tests.fakes import write_fake_model


def _asset_links(html: str) -> dict[str, str]:
    """``{"app.js": "/static/app.js?v=...", ...}`` from the page's script and style links."""
    return {
        match.group(1): match.group(0) for match in re.finditer(r"/static/([\w.]+)\?v=\w+", html)
    }


def test_page_lists_the_served_models_with_the_default_selected(
    client: falcon.testing.TestClient,
) -> None:
    result = client.simulate_get("/")
    assert result.status_code == 200
    assert result.headers["content-type"].startswith("text/html")
    options = re.findall(r'<option value="(\w+)"( selected)?>', result.text)
    assert options == [("cnn", " selected"), ("softmax", "")]
    assert "cnn (10.00% test accuracy)" in result.text


def test_page_has_the_controls_a_user_needs(client: falcon.testing.TestClient) -> None:
    html = client.simulate_get("/").text
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    assert '<canvas id="pad"' in html
    assert '<input type="file" id="file" name="file" accept="image/*">' in html
    assert '<label for="model">' in html and '<label for="file">' in html
    assert 'aria-live="polite"' in html and 'role="alert"' in html
    assert "${" not in html, "a template placeholder was left unfilled"


def test_page_forbids_scripts_and_styles_from_elsewhere(
    client: falcon.testing.TestClient,
) -> None:
    result = client.simulate_get("/")
    policy = result.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "style-src 'self'" in policy
    assert "<script>" not in result.text and "style=" not in result.text
    assert "http://" not in result.text and "https://" not in result.text
    assert result.headers["cache-control"] == "no-cache"


def test_model_names_are_escaped(tmp_path: Path) -> None:
    write_fake_model(tmp_path / "odd.onnx", name="<b>odd</b>")
    repository = ModelRepository.load(tmp_path, "<b>odd</b>", "cpu", 1)
    repository.warm_up()
    settings = Settings(model_dir=tmp_path, default_model="<b>odd</b>", providers="cpu")
    html = falcon.testing.TestClient(create_app(settings, repository)).simulate_get("/").text
    assert '<option value="&lt;b&gt;odd&lt;/b&gt;" selected>' in html
    assert "<b>odd</b>" not in html


@pytest.mark.parametrize(
    ("name", "content_type"),
    [("app.js", "text/javascript; charset=utf-8"), ("style.css", "text/css; charset=utf-8")],
)
def test_linked_assets_are_served_and_cached_for_good(
    client: falcon.testing.TestClient, name: str, content_type: str
) -> None:
    link = _asset_links(client.simulate_get("/").text)[name]
    path, query = link.split("?")
    result = client.simulate_get(path, query_string=query)
    assert result.status_code == 200
    assert result.headers["content-type"] == content_type
    assert result.content == (page.STATIC_DIR / name).read_bytes()
    assert result.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert result.headers["x-content-type-options"] == "nosniff"


def test_unversioned_asset_is_revalidated_with_its_etag(
    client: falcon.testing.TestClient,
) -> None:
    first = client.simulate_get("/static/app.js")
    assert first.headers["cache-control"] == "no-cache"
    etag = first.headers["etag"]
    again = client.simulate_get("/static/app.js", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    changed = client.simulate_get("/static/app.js", headers={"If-None-Match": '"stale"'})
    assert changed.status_code == 200 and changed.content == first.content


@pytest.mark.parametrize(
    "path",
    ["/static/missing.js", "/static/index.html", "/static/..%2Fpage.py", "/static/../page.py"],
)
def test_other_paths_under_static_are_json_404s(
    client: falcon.testing.TestClient, path: str
) -> None:
    result = client.simulate_get(path)
    assert result.status_code == 404
    assert result.json["title"]


def test_head_answers_without_a_body(client: falcon.testing.TestClient) -> None:
    result = client.simulate_head("/")
    assert result.status_code == 200
    assert result.content == b""
