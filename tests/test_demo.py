"""`hf-fmnist demo`: served on loopback, driven through gradio_client and a real headless Chromium, offline."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from hf_fmnist.inference.demo import enlarge, photo_to_fmnist

from conftest import real_data

pytest.importorskip("gradio", reason="needs the 'demo' extra")
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tiny_model(folder: Path, preset: str = "cnn") -> Path:
    """A freshly initialised preset, saved as train.py saves one (no training: the tests compare, not score)."""
    import torch

    from hf_fmnist.core.models import create_model, preset_image_processor

    torch.manual_seed(0)
    create_model(preset).save_pretrained(folder)
    preset_image_processor().save_pretrained(folder)
    return folder


def wait_for(url: str, process: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the app exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise AssertionError(f"the app did not answer at {url} within {timeout} s:\n{log.read_text()[-3000:]}")


def serve(command: list[str], cwd: Path, log: Path, **env: str):
    """Start an app in its own process on a free port (Gradio reads it from the environment, as on Spaces), offline,
    and return ``(url, process)`` once it answers."""
    port = free_port()
    environment = {
        **os.environ,
        "GRADIO_ANALYTICS_ENABLED": "False",
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "PYTHONUNBUFFERED": "1",
        **env,
    }
    process = subprocess.Popen(command, cwd=cwd, env=environment, stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_for(url, process, log)
    except BaseException:
        process.kill()
        raise
    return url, process


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("demo") / "model")


@pytest.fixture(scope="module")
def examples(tmp_path_factory) -> list[Path]:
    from conftest import require_real_data

    require_real_data()  # skips, or fails under CI=true
    from hf_fmnist.inference.demo import write_examples

    return write_examples(tmp_path_factory.mktemp("examples"))


@pytest.fixture(scope="module")
def demo_server(model_dir, tmp_path_factory):
    log = tmp_path_factory.mktemp("demo-log") / "demo.log"
    url, process = serve(
        [sys.executable, "-m", "hf_fmnist.cli", "demo", "--model", str(model_dir)],
        model_dir.parent,
        log,
        HF_HUB_OFFLINE="1",
    )
    yield url, log, process
    stop(process)


@pytest.fixture(scope="module")
def demo_url(demo_server):
    return demo_server[0]


def expected(model_dir: Path, path: Path) -> dict[str, float]:
    from hf_fmnist.inference.predict import predict

    [result] = predict(str(model_dir), [str(path)], top_k=5)
    return {p["label"]: p["score"] for p in result["predictions"]}


def confidences(label: dict) -> dict[str, float]:
    return {c["label"]: c["confidence"] for c in label["confidences"]}


# --- the app through its API (gradio_client, the ecosystem's own client) ------------------------------------------


@real_data
def test_demo_classifies_real_test_images_exactly_like_predict(demo_url, model_dir, examples):
    """Catches a demo that preprocesses differently from `hf-fmnist predict` (lossy re-encoding, wrong resize or
    normalisation, channels), and a model view that is not the image the model got."""
    from gradio_client import Client, handle_file
    from PIL import Image

    client = Client(demo_url, verbose=False)
    for path in examples[:4]:
        label, view, notes = client.predict(handle_file(str(path)), False, api_name="/classify")
        assert confidences(label) == pytest.approx(expected(model_dir, path), abs=1e-6)
        assert label["label"] == max(expected(model_dir, path).items(), key=lambda kv: kv[1])[0]
        # a 28x28 test image is what the model sees, pixel for pixel, enlarged without smoothing
        assert np.array_equal(np.asarray(Image.open(view).convert("L")), enlarge(np.asarray(Image.open(path))))
        assert notes == ""


@real_data
def test_demo_photo_preprocessing_and_drawings(demo_url, model_dir, examples, tmp_path):
    """A photo-like image (dark garment on a light, wider background) gives, with the option on, what its
    Fashion-MNIST original gives; drawings (flattened on white by Gradio) always get that treatment."""
    from gradio_client import Client, handle_file
    from PIL import Image

    original = np.asarray(Image.open(examples[1]))  # class 1, a trouser: tall and narrow
    photo = np.full((40, 60), 255, dtype=np.uint8)
    rows, cols = np.nonzero(original)
    crop = original[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    photo[5 : 5 + crop.shape[0], 3 : 3 + crop.shape[1]] = 255 - crop
    path = tmp_path / "photo.png"
    Image.fromarray(photo).save(path)

    client = Client(demo_url, verbose=False)
    plain, _, _ = client.predict(handle_file(str(path)), False, api_name="/classify")
    fixed, view, _ = client.predict(handle_file(str(path)), True, api_name="/classify")
    drawn, drawn_view, _ = client.predict(
        {"background": None, "layers": [], "composite": handle_file(str(path)), "id": None},
        api_name="/classify_drawing",
    )
    seen = np.asarray(Image.open(view).convert("L"))
    assert seen.shape == (224, 224)
    assert seen.mean() > 20 and seen[:, :8].max() < 30  # light object on black, centred with dark margins
    assert confidences(fixed) == pytest.approx(confidences(drawn), abs=1e-6)
    assert np.array_equal(seen, np.asarray(Image.open(drawn_view).convert("L")))
    assert confidences(plain) != pytest.approx(confidences(fixed), abs=1e-3)


@real_data
def test_demo_refuses_broken_and_huge_uploads(demo_url, tmp_path):
    """Catches a demo that crashes or decodes anything it is given: a truncated PNG and a 25-megapixel image get an
    error message, and the app still answers afterwards."""
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError
    from PIL import Image

    client = Client(demo_url, verbose=False)
    huge = tmp_path / "huge.png"
    Image.new("L", (5000, 5000)).save(huge)  # compresses to a few kB, decodes to 25 MB
    with pytest.raises(Exception, match="decompression bomb|too large|exceeds"):
        client.predict(handle_file(str(huge)), False, api_name="/classify")
    truncated = tmp_path / "truncated.png"
    Image.fromarray(np.arange(784, dtype=np.uint8).reshape(28, 28)).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:60])
    with pytest.raises(AppError):  # the server's one-line error, not a crash of the app
        client.predict(handle_file(str(truncated)), False, api_name="/classify")
    with urllib.request.urlopen(demo_url, timeout=10) as response:
        assert response.status == 200


def _peak_rss_mb(process: subprocess.Popen) -> int:
    status = Path(f"/proc/{process.pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) // 1024


def _post(url: str, body, headers: dict) -> tuple[int, bytes]:
    import http.client
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
    try:
        chunked = not isinstance(body, bytes) and "Content-Length" not in headers
        connection.request("POST", "/gradio_api/upload", body=body, headers=headers, encode_chunked=chunked)
        response = connection.getresponse()
        return response.status, response.read()
    except (BrokenPipeError, ConnectionResetError):  # the server answered 413 and closed before the body was sent
        return 413, b""
    finally:
        connection.close()


@pytest.mark.parametrize("chunked", [False, True])
def test_demo_bounds_whole_request_bodies_form_fields_included(demo_server, chunked):
    """Before: a 300 MB and a 700 MB multipart form field (not a file) POSTed to /gradio_api/upload were buffered by
    Gradio at about 3× their size (2.56 GB), then answered 500. Now any body past MAX_REQUEST_BYTES is answered 413
    as it streams in, declared (Content-Length) or not (chunked), and the server stays small."""
    url, _, process = demo_server
    boundary = "hf-fmnist-boundary"
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="field"\r\n\r\n'.encode()
    size = 300 << 20

    def stream():
        yield head
        chunk = b"x" * (1 << 20)
        for _ in range(size >> 20):
            yield chunk
        yield f"\r\n--{boundary}--\r\n".encode()

    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    declared = {"Content-Length": str(len(head) + size + len(f"\r\n--{boundary}--\r\n"))}
    status, body = _post(url, stream(), headers if chunked else {**headers, **declared})
    assert status == 413, (status, body[:200])
    assert _peak_rss_mb(process) < 1024
    from hf_fmnist.inference.demo import MAX_REQUEST_BYTES

    small = head + b"x" * 100 + f"\r\n--{boundary}--\r\n".encode()
    assert len(small) < MAX_REQUEST_BYTES
    status, _ = _post(url, small, {**headers, "Content-Length": str(len(small))})
    assert status != 413  # a small request still reaches Gradio
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200


def test_demo_answers_every_upload_itself_like_predict(demo_server, model_dir, tmp_path):
    """Before: a 0-byte file, a non-image or an image over 16.8 MP failed inside Gradio's preprocessing,
    the client got "Could not preprocess input component..." with the server's temporary paths, and the server
    printed a traceback for each; concurrent requests with the same answer raced on one file of Gradio's cache
    (a dropped answer and a traceback). (By hand: 50 concurrent clients, all answered, no traceback.)"""
    from concurrent.futures import ThreadPoolExecutor

    from gradio_client import Client, handle_file
    from PIL import Image

    from hf_fmnist.inference.predict import ImageFileError, load_image

    url, log, _ = demo_server
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("not an image\n")
    Image.new("L", (4200, 4200)).save(tmp_path / "huge.png")  # 17.6 MP: above PIL's own bomb error at 16.8 MP
    Image.fromarray(np.arange(784, dtype=np.uint8).reshape(28, 28)).save(tmp_path / "ok.png")
    names = ["empty.png", "text.png", "huge.png", "ok.png"]

    def ask(name: str) -> str:
        try:
            Client(url, verbose=False).predict(handle_file(str(tmp_path / name)), False, api_name="/classify")
            return "ok"
        except Exception as e:  # the app's error, as the client reports it
            return str(e)

    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(ask, names * 3))
    for name, answer in zip(names * 3, answers):
        if name == "ok.png":
            assert answer == "ok"
            continue
        with pytest.raises(ImageFileError) as predicted:
            load_image(tmp_path / name)
        assert answer == str(predicted.value).replace(str(tmp_path / name), "the image")  # predict's own line
        assert "preprocess" not in answer and "/tmp" not in answer
    text = log.read_text()
    assert "Traceback" not in text and "Could not preprocess" not in text, text[-3000:]


# --- a real browser ------------------------------------------------------------------------------------------------


@real_data
@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="needs Debian's chromium and chromium-driver (setup.sh)")
def test_browser_upload_shows_prediction(demo_url, model_dir, examples, tmp_path):
    """Headless Chromium, with every host but loopback unresolvable (the page must work offline): upload a test
    image, see the model's top class and the 28x28 view; the screenshot must show a rendered page, not a blank one."""
    webdriver = pytest.importorskip("selenium.webdriver")
    from PIL import Image
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})  # to list every request the page made
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    try:
        driver.set_page_load_timeout(120)
        driver.get(demo_url)
        wait = WebDriverWait(driver, 120)
        upload = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#upload input[type=file]"))[0]
        path = examples[0]
        top = max(expected(model_dir, path).items(), key=lambda kv: kv[1])[0]
        upload.send_keys(str(path))
        wait.until(lambda d: top in d.find_element(By.ID, "prediction").text)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#model-view img"))
        time.sleep(1)  # let the images finish painting
        shot = Path(os.environ.get("HF_FMNIST_SCREENSHOT_DIR", tmp_path)) / "demo-browser.png"
        shot.parent.mkdir(parents=True, exist_ok=True)
        assert driver.save_screenshot(str(shot))
        text = driver.find_element(By.ID, "prediction").text
        requests = {
            json.loads(entry["message"])["message"]["params"]["request"]["url"]
            for entry in driver.get_log("performance")
            if '"Network.requestWillBeSent"' in entry["message"]
        }
    finally:
        driver.quit()
    assert top in text
    assert requests and not [u for u in requests if not u.startswith((demo_url, "data:", "blob:"))]  # offline
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape[0] > 500 and pixels.shape[1] > 800
    assert pixels.std() > 20 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 100, f"blank screenshot: {shot}"


# --- without a server ----------------------------------------------------------------------------------------------


def test_photo_to_fmnist_inverts_crops_and_centres():
    """Dark object on a light background, off-centre: becomes a light object on black, cropped, centred in a square."""
    photo = np.full((40, 60), 230, dtype=np.uint8)
    photo[4:24, 40:50] = 30  # 20 tall, 10 wide
    got = photo_to_fmnist(photo)
    level = round((255 - 30 - 25) * 255 / (255 - 25), 10)
    want = np.zeros((20, 20), dtype=np.uint8)
    want[:, 5:15] = np.uint8(level)
    assert np.array_equal(got, want)


def test_photo_to_fmnist_keeps_fashion_mnist_images_light_on_dark():
    """Catches an unconditional inversion: an image already light on black is only cropped and padded."""
    image = np.zeros((28, 28), dtype=np.uint8)
    image[2:26, 10:18] = 200
    got = photo_to_fmnist(image)
    assert got.shape == (24, 24) and got.max() == 200 and got[:, :8].max() == 0 and got[:, 8:16].min() == 200


def test_missing_extras_give_one_line(monkeypatch, capsys, tmp_path):
    """Without gradio / onnxruntime the commands say which extra to install, in one line, before any work."""
    from hf_fmnist.cli import main

    monkeypatch.setitem(sys.modules, "gradio", None)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert main(["demo", "--model", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        "error: hf-fmnist demo needs the 'demo' extra (gradio is not installed): pip install \"hf_fmnist[demo]\"\n"
    )
    assert main(["export", "--model", str(tmp_path), "--format", "onnx"]) == 2
    assert capsys.readouterr().err == (
        "error: hf-fmnist export needs the 'onnx' extra (onnxruntime is not installed): "
        'pip install "hf_fmnist[onnx]"\n'
    )
    import importlib.metadata

    real_version = importlib.metadata.version

    def version(name):
        if name == "gradio":
            raise importlib.metadata.PackageNotFoundError(name)
        return real_version(name)

    monkeypatch.setattr(importlib.metadata, "version", version)
    assert main(["push-space", "--repo-id", "me/demo", "--model", "me/model"]) == 2
    assert capsys.readouterr().err == (
        "error: hf-fmnist push-space needs the 'demo' extra (gradio is not installed): "
        'pip install "hf_fmnist[demo]"\n'
    )
