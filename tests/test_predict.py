"""POST /predict and /upload: answers, models, batches, debug image, bad images."""

from __future__ import annotations

import base64
import io

import falcon.testing
import numpy as np
import pytest
from PIL import Image, ImageDraw

from serve.app import create_app
from serve.images import decode, normalise
from serve.model.runtime import ModelRepository
from serve.settings import Settings
from tests.images import encoded, png_declaring
from tests.servers import encode_multipart


def digit(stroke: tuple[int, int, int, int] = (30, 20, 70, 80), size: int = 100) -> bytes:
    """A PNG of a dark stroke on white paper (``size`` x ``size``)."""
    image = Image.new("L", (size, size), 255)
    ImageDraw.Draw(image).line(stroke, fill=0, width=max(2, size // 12))
    return encoded(image)


STROKES = [(30, 20, 70, 80), (50, 10, 50, 90), (20, 30, 80, 30), (20, 80, 80, 20)]


def expected(repository: ModelRepository, model: str, data: bytes) -> np.ndarray:
    """What the model says about ``data`` when run directly, without HTTP."""
    image = normalise.to_mnist(decode.decode(data, 10**8))
    return repository.get(model).predict(image[np.newaxis])[0]


def post_files(
    client: falcon.testing.TestClient, files: list[tuple[str, bytes]], query: str = ""
) -> falcon.testing.Result:
    body, content_type = encode_multipart([("file", name, data) for name, data in files])
    return client.simulate_post(
        "/predict", body=body, headers={"Content-Type": content_type}, query_string=query
    )


def assert_error(result: falcon.testing.Result, statuses: set[int], *words: str) -> None:
    """The answer is one of ``statuses`` with a JSON title and a description naming every word."""
    assert result.status_code in statuses, result.text
    assert set(result.json) == {"title", "description"}
    for word in words:
        assert word.lower() in result.json["description"].lower(), result.json


def test_one_image_answers_label_confidence_probabilities(
    client: falcon.testing.TestClient, repository: ModelRepository
) -> None:
    data = digit()
    result = post_files(client, [("seven.png", data)])
    assert result.status_code == 200
    assert result.headers["content-type"].startswith("application/json")
    answer = result.json
    assert list(answer) == ["classifier", "model", "label", "confidence", "probabilities"]
    assert answer["classifier"] == "CNNClassifier"
    assert answer["model"] == "cnn"
    probabilities = expected(repository, "cnn", data)
    assert type(answer["label"]) is int
    assert answer["label"] == int(np.argmax(probabilities))
    np.testing.assert_allclose(answer["probabilities"], probabilities, rtol=1e-6)
    assert answer["confidence"] == pytest.approx(max(answer["probabilities"]))
    assert sum(answer["probabilities"]) == pytest.approx(1.0, abs=1e-5)


def test_upload_is_an_alias_of_predict(client: falcon.testing.TestClient) -> None:
    body, content_type = encode_multipart([("image", "seven.png", digit())])
    headers = {"Content-Type": content_type}
    upload = client.simulate_post("/upload", body=body, headers=headers)
    predict = client.simulate_post("/predict", body=body, headers=headers)
    assert upload.status_code == 200
    assert upload.json == predict.json


def test_raw_body_answers_like_multipart(client: falcon.testing.TestClient) -> None:
    data = digit()
    raw = client.simulate_post("/predict", body=data, headers={"Content-Type": "image/png"})
    assert raw.status_code == 200
    assert raw.json == post_files(client, [("seven.png", data)]).json


def test_model_parameter_picks_the_model(
    client: falcon.testing.TestClient, repository: ModelRepository
) -> None:
    data = digit()
    result = post_files(client, [("seven.png", data)], "model=softmax")
    assert result.status_code == 200
    assert result.json["model"] == "softmax"
    assert result.json["classifier"] == "SoftmaxClassifier"
    np.testing.assert_allclose(
        result.json["probabilities"], expected(repository, "softmax", data), rtol=1e-6
    )
    cnn = post_files(client, [("seven.png", data)], "model=cnn").json
    assert cnn["probabilities"] != result.json["probabilities"]


def test_default_model_comes_from_settings(settings: Settings, repository: ModelRepository) -> None:
    settings.default_model = "softmax"
    repository.default = "softmax"
    client = falcon.testing.TestClient(create_app(settings, repository))
    assert post_files(client, [("seven.png", digit())]).json["model"] == "softmax"


def test_unknown_model_is_404_listing_known_ones(client: falcon.testing.TestClient) -> None:
    result = post_files(client, [("seven.png", digit())], "model=resnet")
    assert_error(result, {404}, "resnet", "cnn", "softmax")


def test_several_images_answer_one_prediction_each_in_order(
    client: falcon.testing.TestClient, repository: ModelRepository
) -> None:
    files = [(f"digit-{index}.png", digit(stroke)) for index, stroke in enumerate(STROKES)]
    result = post_files(client, files, "model=softmax")
    assert result.status_code == 200
    answer = result.json
    assert list(answer) == ["model", "classifier", "predictions"]
    assert (answer["model"], answer["classifier"]) == ("softmax", "SoftmaxClassifier")
    assert [prediction["filename"] for prediction in answer["predictions"]] == [
        name for name, _ in files
    ]
    for (_, data), prediction in zip(files, answer["predictions"], strict=True):
        probabilities = expected(repository, "softmax", data)
        assert prediction["label"] == int(np.argmax(probabilities))
        np.testing.assert_allclose(prediction["probabilities"], probabilities, rtol=1e-5)


def test_several_images_run_as_one_batch(
    client: falcon.testing.TestClient, repository: ModelRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = repository.get("cnn")
    batches: list[tuple[int, ...]] = []
    original = model.predict

    def recording_predict(images: np.ndarray) -> np.ndarray:
        batches.append(images.shape)
        return original(images)

    monkeypatch.setattr(model, "predict", recording_predict)
    files = [(f"{index}.png", digit(stroke)) for index, stroke in enumerate(STROKES)]
    assert post_files(client, files).status_code == 200
    assert batches == [(len(STROKES), 28, 28)]


def test_label_zero_is_a_result(
    client: falcon.testing.TestClient, repository: ModelRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    certain_zero = np.eye(10, dtype=np.float32)[[0]]
    monkeypatch.setattr(repository.get("cnn"), "predict", lambda images: certain_zero)
    answer = post_files(client, [("zero.png", digit())]).json
    assert answer["label"] == 0
    assert answer["confidence"] == 1.0


def test_debug_returns_the_28x28_the_model_saw(client: falcon.testing.TestClient) -> None:
    data = digit()
    answer = post_files(client, [("seven.png", data)], "debug=1").json
    prefix = "data:image/png;base64,"
    assert answer["input_image"].startswith(prefix)
    seen = Image.open(io.BytesIO(base64.b64decode(answer["input_image"][len(prefix) :])))
    assert seen.size == (28, 28)
    model_input = normalise.to_mnist(decode.decode(data, 10**8))
    np.testing.assert_allclose(np.asarray(seen.convert("L")) / 255.0, model_input, atol=1 / 255)
    assert "input_image" not in post_files(client, [("seven.png", data)]).json


def test_debug_applies_to_every_prediction(client: falcon.testing.TestClient) -> None:
    files = [(f"{index}.png", digit(stroke)) for index, stroke in enumerate(STROKES[:2])]
    answer = post_files(client, files, "debug=true").json
    assert all(p["input_image"].startswith("data:image/png") for p in answer["predictions"])


def test_bad_debug_value_is_400(client: falcon.testing.TestClient) -> None:
    result = post_files(client, [("seven.png", digit())], "debug=perhaps")
    assert result.status_code == 400
    assert "debug" in result.json["description"]


@pytest.mark.parametrize("image_format", ["JPEG", "GIF", "BMP", "TIFF", "WEBP"])
def test_common_formats_are_read(client: falcon.testing.TestClient, image_format: str) -> None:
    image = Image.open(io.BytesIO(digit())).convert("RGB")
    result = post_files(client, [(f"seven.{image_format.lower()}", encoded(image, image_format))])
    assert result.status_code == 200, result.text


@pytest.mark.parametrize(
    ("data", "statuses"),
    [
        (b"hello, this is not an image", {400, 415}),
        (digit()[:60], {400}),
        (b'<svg xmlns="http://www.w3.org/2000/svg"><text>7</text></svg>', {400, 415}),
        (b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n", {400, 415}),
        (b"<!DOCTYPE html><html><body>7</body></html>", {400, 415}),
    ],
    ids=["random", "truncated", "svg", "pdf", "html"],
)
def test_unreadable_images_are_4xx_with_a_reason(
    client: falcon.testing.TestClient, data: bytes, statuses: set[int]
) -> None:
    assert_error(post_files(client, [("seven.png", data)]), statuses)


def test_a_bad_file_among_several_is_named(client: falcon.testing.TestClient) -> None:
    files = [("good.png", digit()), ("broken.png", b"not an image at all")]
    assert_error(post_files(client, files), {400, 415}, "broken.png")


def test_decompression_bomb_is_413(client: falcon.testing.TestClient) -> None:
    assert_error(post_files(client, [("bomb.png", png_declaring(20000, 20000))]), {413})


def test_pixel_limit_comes_from_settings(settings: Settings, repository: ModelRepository) -> None:
    settings.max_image_pixels = 50 * 50
    client = falcon.testing.TestClient(create_app(settings, repository))
    assert post_files(client, [("small.png", digit(size=40))]).status_code == 200
    assert_error(post_files(client, [("large.png", digit(size=60))]), {413})


@pytest.mark.parametrize("shade", [0, 255])
def test_blank_image_is_422(client: falcon.testing.TestClient, shade: int) -> None:
    blank = encoded(Image.new("L", (64, 64), shade))
    assert_error(post_files(client, [("blank.png", blank)]), {422})
