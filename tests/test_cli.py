"""``mnist-predict`` run as a user runs it: a subprocess over generated images, bad files,
folders and stdin, in every output format, with the original project's flags."""

from __future__ import annotations

import configparser
import csv
import fcntl
import gzip
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import termios
import threading
from pathlib import Path
from typing import Any

import falcon.testing
import numpy as np
import pytest
from PIL import Image

from serve import cli, images
from serve.cli import reading
from serve.errors import ServiceError
from serve.model.runtime import ModelRepository
from serve.settings import Settings
from tests.fakes import write_fake_model
from tests.images import encoded, png_declaring, stroke_png
from tests.servers import encode_multipart

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def digit_in_name(path: Path) -> int | None:
    """``scan-two.png`` -> 2: the digit word in an example's name, None without one."""
    words = path.stem.replace("_", "-").split("-")
    return next((DIGITS.index(word) for word in words if word in DIGITS), None)


#: The committed examples and the digit each shows.
EXAMPLE_LABELS = {
    path.name: label
    for path in sorted(EXAMPLES.glob("*"))
    if path.suffix in (".png", ".jpg") and (label := digit_in_name(path)) is not None
}


def example(digit: int) -> Path:
    """The committed example that shows ``digit``."""
    names = [name for name, label in EXAMPLE_LABELS.items() if label == digit]
    if not names:
        pytest.skip(f"no example of a {digit} in {EXAMPLES}")
    return EXAMPLES / names[0]


#: Pillow format -> file name ending, one of each format a folder is read for.
FORMATS = {"PNG": ".png", "JPEG": ".jpg", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tiff"}
FORMATS["WEBP"] = ".webp"
ROW_FIELDS = ["path", "label", "confidence", "model", "classifier", "error"]
ENV = {**os.environ, "MNIST_PROVIDERS": "cpu", "PYTHONUNBUFFERED": "1"}
for _variable in ("MNIST_MODEL_DIR", "MNIST_DEFAULT_MODEL", "MNIST_MAX_IMAGE_PIXELS"):
    ENV.pop(_variable, None)


def mnist_predict(
    *args: str | Path, stdin: bytes = b"", timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m serve.cli ARGS`` from the repository root with ``stdin`` as its
    input; its stdout and stderr caught, as text."""
    completed = subprocess.run(
        [sys.executable, "-m", "serve.cli", *map(str, args)],
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        env=ENV,
        timeout=timeout,
        check=False,
    )
    return subprocess.CompletedProcess(
        completed.args, completed.returncode, completed.stdout.decode(), completed.stderr.decode()
    )


def jsonl(completed: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    """The JSON rows a ``--format jsonl`` run wrote."""
    return [json.loads(line) for line in completed.stdout.splitlines()]


def stroke_image(side: int = 56) -> Image.Image:
    """A vertical stroke, a "1", white on black."""
    return Image.open(io.BytesIO(stroke_png(side=side)))


@pytest.fixture(scope="module")
def formats_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a "1" in each format, the committed examples, and files that must be
    passed over: a hidden image, a text file, a subfolder with one more image."""
    folder = tmp_path_factory.mktemp("formats")
    stroke = stroke_image()
    for image_format, suffix in FORMATS.items():
        image = stroke.convert("RGB") if image_format == "JPEG" else stroke
        (folder / f"stroke{suffix}").write_bytes(encoded(image, image_format))
    for name in EXAMPLE_LABELS:
        shutil.copy(EXAMPLES / name, folder / name)
    (folder / ".hidden.png").write_bytes(stroke_png())
    (folder / "notes.txt").write_text("not an image, not read from a folder\n")
    (folder / "deeper").mkdir()
    (folder / "deeper" / "seven.png").write_bytes(example(7).read_bytes())
    return folder


#: Bad files, each with the bytes it holds.
BAD_FILES = {
    "text.png": b"hello, this is text\n",
    "empty.png": b"",
    "blank.png": stroke_png(stroke=False),
    "huge.png": png_declaring(100_000, 100_000),
    "document.png": b"%PDF-1.4\n%...",
}


@pytest.fixture(scope="module")
def bad_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bad files around one good one (``ok.png``, a "1")."""
    folder = tmp_path_factory.mktemp("bad")
    for name, data in BAD_FILES.items():
        (folder / name).write_bytes(data)
    (folder / "ok.png").write_bytes(stroke_png())
    return folder


def test_a_folder_in_every_format_is_read_in_order_with_labels(formats_folder: Path) -> None:
    completed = mnist_predict(formats_folder, "--format", "jsonl", "--jobs", "2", "-b", "3")
    assert completed.returncode == 0, completed.stderr
    rows = jsonl(completed)
    expected = sorted([f"stroke{suffix}" for suffix in FORMATS.values()] + [*EXAMPLE_LABELS])
    assert [Path(row["path"]).name for row in rows] == expected
    assert all(Path(row["path"]).parent == formats_folder for row in rows)
    for row in rows:
        assert list(row) == ROW_FIELDS
        assert row["error"] is None and row["model"] == "cnn"
        assert row["classifier"] == "CNNClassifier"
        name = Path(row["path"]).name
        assert row["label"] == EXAMPLE_LABELS.get(name, 1), row
        assert 0.5 < row["confidence"] <= 1.0
    assert completed.stderr == ""


def test_recursive_descends_and_the_results_match_one_job(formats_folder: Path) -> None:
    parallel = jsonl(mnist_predict(formats_folder, "-r", "-f", "jsonl", "-j", "2", "-b", "2"))
    alone = jsonl(mnist_predict(formats_folder, "--recursive", "-f", "jsonl", "--jobs", "1"))
    assert [row["path"] for row in parallel][-1] == str(formats_folder / "deeper" / "seven.png")
    assert parallel == alone
    assert not any("hidden" in row["path"] or "notes" in row["path"] for row in parallel)


def test_images_handed_to_the_workers_in_parts_come_back_in_order(
    formats_folder: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(reading, "IN_FLIGHT", 3)
    status = cli.main([str(formats_folder), "-r", "-f", "jsonl", "-j", "2", "-b", "2"])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert status == 0
    expected = sorted(
        path.name
        for path in formats_folder.iterdir()
        if path.suffix in FORMATS.values() and not path.name.startswith(".")
    )
    names = [Path(row["path"]).name for row in rows]
    assert names == [*expected, "seven.png"]
    assert all(row["error"] is None for row in rows)


def test_bad_files_get_the_servers_error_text_and_the_run_goes_on(
    bad_folder: Path, client: falcon.testing.TestClient
) -> None:
    completed = mnist_predict(bad_folder, "--format", "jsonl")
    assert completed.returncode == 1, completed.stderr
    rows = {Path(row["path"]).name: row for row in jsonl(completed)}
    assert sorted(rows) == sorted([*BAD_FILES, "ok.png"])
    assert rows["ok.png"]["label"] == 1 and rows["ok.png"]["error"] is None
    for name, data in BAD_FILES.items():
        row = rows[name]
        assert row["label"] is None and row["confidence"] is None and row["model"] == "cnn"
        with pytest.raises(ServiceError) as raised:
            images.read_digit(data, Settings().max_image_pixels)
        assert row["error"] == raised.value.description, name
        if data:
            # An empty part is refused by the upload code before the image code sees it.
            body, content_type = encode_multipart([("file", name, data)])
            answer = client.simulate_post(
                "/predict", body=body, headers={"Content-Type": content_type}
            )
            assert answer.status_code == raised.value.status
            assert answer.json["description"] == row["error"], name
    assert "no ink" in rows["blank.png"]["error"]


def test_csv_has_a_header_and_a_row_per_image_with_probabilities(bad_folder: Path) -> None:
    completed = mnist_predict(
        bad_folder / "ok.png", bad_folder / "blank.png", "--format", "csv", "--probabilities"
    )
    assert completed.returncode == 1
    header, good, blank = list(csv.reader(io.StringIO(completed.stdout)))
    assert header == [*ROW_FIELDS, *(f"p{digit}" for digit in range(10))]
    assert good[:6] == [str(bad_folder / "ok.png"), "1", good[2], "cnn", "CNNClassifier", ""]
    probabilities = [float(cell) for cell in good[6:]]
    assert sum(probabilities) == pytest.approx(1.0, abs=1e-4)
    assert float(good[2]) == max(probabilities)
    assert blank[1:3] == ["", ""] and blank[5].startswith("no ink")
    assert blank[6:] == [""] * 10


def test_table_is_aligned_and_shows_errors(bad_folder: Path) -> None:
    completed = mnist_predict(bad_folder / "ok.png", bad_folder / "text.png")
    assert completed.returncode == 1
    header, good, bad = completed.stdout.splitlines()
    assert header.split() == ["path", "label", "confidence", "error"]
    assert good.split()[1] == "1" and float(good.split()[2]) > 0.5
    assert bad.split()[1:3] == ["-", "-"] and "not an image" in bad
    # Values are right-aligned under their headings.
    label_end = header.index("label") + len("label") - 1
    confidence_end = header.index("confidence") + len("confidence") - 1
    assert good[label_end] == "1" and bad[label_end] == "-"
    assert good[confidence_end].isdigit() and bad[confidence_end] == "-"


def test_jsonl_probabilities_are_the_ten_and_the_label_their_argmax() -> None:
    completed = mnist_predict(example(7), "--format", "jsonl", "--probabilities")
    (row,) = jsonl(completed)
    assert list(row) == [*ROW_FIELDS, "probabilities"]
    assert len(row["probabilities"]) == 10
    assert row["label"] == int(np.argmax(row["probabilities"])) == 7
    assert row["confidence"] == max(row["probabilities"])


def test_the_original_command_line_works() -> None:
    completed = mnist_predict("-c", "SoftmaxClassifier", "-p", example(7))
    assert completed.returncode == 0, completed.stderr
    _, line = completed.stdout.splitlines()
    assert line.split()[:2] == [str(example(7)), "7"]


@pytest.mark.parametrize(
    ("flags", "model", "classifier"),
    [
        (["-m", "softmax"], "softmax", "SoftmaxClassifier"),
        (["--classifier", "CNNClassifier"], "cnn", "CNNClassifier"),
        (["-m", "cnn", "-c", "cnnclassifier"], "cnn", "CNNClassifier"),
    ],
)
def test_model_is_chosen_by_name_or_by_classifier(
    flags: list[str], model: str, classifier: str
) -> None:
    completed = mnist_predict(*flags, "--format", "jsonl", "-p", example(3))
    (row,) = jsonl(completed)
    assert (row["model"], row["classifier"], row["label"]) == (model, classifier, 3)


def test_model_dir_is_read_and_its_model_chosen_by_name(tmp_path: Path) -> None:
    write_fake_model(tmp_path / "digits.onnx", "digits")
    image = example(7)
    completed = mnist_predict("--model-dir", tmp_path, "-m", "digits", "-f", "jsonl", image)
    assert completed.returncode == 0, completed.stderr
    (row,) = jsonl(completed)
    assert (row["model"], row["classifier"], row["error"]) == ("digits", "digits", None)
    missing = mnist_predict("--model-dir", tmp_path / "nothing", image)
    assert missing.returncode == 2 and "no .onnx files" in missing.stderr


def test_one_image_on_stdin() -> None:
    completed = mnist_predict("-", "-f", "jsonl", stdin=(example(2)).read_bytes())
    assert completed.returncode == 0, completed.stderr
    (row,) = jsonl(completed)
    assert (row["path"], row["label"], row["error"]) == ("-", 2, None)


def test_an_explicitly_named_file_is_read_whatever_its_name(formats_folder: Path) -> None:
    completed = mnist_predict(formats_folder / "notes.txt", "-f", "jsonl")
    assert completed.returncode == 1
    (row,) = jsonl(completed)
    assert row["error"] == "not an image: the bytes match no known image format"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["README.md", "no/such/file.png"], "no such file or folder: no/such/file.png"),
        ([], "name at least one PATH"),
        (["-m", "bogus", "README.md"], "unknown model 'bogus'"),
        (["-m", "softmax", "-c", "CNNClassifier", "README.md"], "different models"),
        (["--format", "xml", "README.md"], "invalid choice: 'xml'"),
        (["--jobs", "0", "README.md"], "must be at least 1"),
        (["-", "-"], "only once"),
    ],
)
def test_usage_errors_exit_2_with_a_message_and_no_output(args: list[str], message: str) -> None:
    completed = mnist_predict(*args)
    assert completed.returncode == 2
    assert message in completed.stderr
    assert completed.stdout == ""


def test_a_folder_without_images_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("nothing to see\n")
    completed = mnist_predict(tmp_path)
    assert completed.returncode == 2
    assert f"no images found in {tmp_path}" in completed.stderr


@pytest.fixture(scope="module")
def many_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Past the progress-bar threshold: 120 copies of a small "1"."""
    folder = tmp_path_factory.mktemp("many")
    data = stroke_png()
    for index in range(120):
        (folder / f"{index:03d}.png").write_bytes(data)
    return folder


def test_no_progress_bar_when_stderr_is_not_a_terminal(many_folder: Path) -> None:
    completed = mnist_predict(many_folder, "-f", "jsonl")
    assert completed.returncode == 0
    assert len(jsonl(completed)) == 120
    assert completed.stderr == ""


def test_progress_bar_on_a_terminal_stderr_and_never_in_the_output(many_folder: Path) -> None:
    controller, terminal = os.openpty()
    # A terminal of 24 rows and 80 columns: tqdm draws nothing on one of width 0.
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    process = subprocess.Popen(
        [sys.executable, "-m", "serve.cli", str(many_folder), "-f", "jsonl"],
        cwd=ROOT,
        env=ENV,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=terminal,
    )
    os.close(terminal)
    drawn = bytearray()

    def drain() -> None:
        # The terminal is read while the process runs, so that its buffer never fills.
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # EIO: the process closed its end.
                return
            if not chunk:
                return
            drawn.extend(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    stdout, _ = process.communicate(timeout=60)
    reader.join(timeout=10)
    os.close(controller)
    assert process.returncode == 0
    assert b"/120" in drawn and b"image/s" in drawn and b"\r" in drawn
    lines = stdout.decode().splitlines()
    assert len(lines) == 120 and all(json.loads(line)["label"] == 1 for line in lines)


def test_labels_of_mnist_test_digits_match_the_pipeline_in_process(
    mnist_dir: Path, tmp_path: Path
) -> None:
    count = 40
    with gzip.open(mnist_dir / "t10k-images-idx3-ubyte.gz") as stream:
        digits = np.frombuffer(stream.read(16 + count * 784), np.uint8, offset=16)
    with gzip.open(mnist_dir / "t10k-labels-idx1-ubyte.gz") as stream:
        truth = np.frombuffer(stream.read(8 + count), np.uint8, offset=8)
    for index, digit in enumerate(digits.reshape(count, 28, 28)):
        (tmp_path / f"{index:02d}.png").write_bytes(encoded(Image.fromarray(digit, "L")))
    completed = mnist_predict(tmp_path, "-f", "jsonl", "-j", "2", "-b", "7")
    labels = [row["label"] for row in jsonl(completed)]
    model = ModelRepository.load(ROOT / "onnx_models", "cnn", "cpu", 1).get("cnn")
    read = np.stack(
        [images.read_digit(path.read_bytes(), 40_000_000) for path in sorted(tmp_path.iterdir())]
    )
    assert labels == np.argmax(model.predict(read), axis=1).tolist()
    assert np.mean(np.array(labels) == truth) >= 0.95


def test_help_explains_every_flag() -> None:
    completed = mnist_predict("--help")
    assert completed.returncode == 0
    for action in cli.build_parser(Settings())._actions:
        assert action.help, action.dest
        for option in action.option_strings:
            assert option in completed.stdout
    assert "Exit status" in completed.stdout and "-c SoftmaxClassifier" in completed.stdout


def test_no_training_code_is_imported() -> None:
    script = (
        "import sys, serve.cli\n"
        "status = serve.cli.main(['README.md'])\n"
        "print(sorted({name.split('.')[0] for name in sys.modules}))\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=ENV, capture_output=True, text=True
    )
    loaded = set(eval(completed.stdout.splitlines()[-1]))
    assert "onnxruntime" in loaded
    assert loaded.isdisjoint({"tensorflow", "tf2onnx", "keras", "train", "export"})


def test_console_script_is_declared() -> None:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    scripts = config["options.entry_points"]["console_scripts"]
    assert "mnist-predict = serve.cli:main" in scripts
    assert "tqdm" in config["options"]["install_requires"]


def test_installed_console_script_runs() -> None:
    script = shutil.which("mnist-predict") or shutil.which(
        "mnist-predict", path=str(Path(sys.executable).parent)
    )
    if script is None:
        pytest.skip("mnist-predict is not installed (pip install -e . puts it on PATH)")
    completed = subprocess.run(
        [script, "-c", "SoftmaxClassifier", "-p", str(example(7))],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.splitlines()[1].split()[1] == "7"
