"""transformers.js (npm ``@huggingface/transformers`` 4.3.1, pinned by js/package-lock.json) runs every preset's
exported model with its default options, as the Hub's JavaScript users would:

- in Node (fp32, ``onnx/model.onnx``, onnxruntime-node), from a local folder (``env.localModelPath``) and from the
  loopback Hub (``env.remoteHost``): top-1 agrees with PyTorch on >= 99.9% of the images (all 10,000 test images for
  the default preset and the convolutional ones, 1,000 for the transformers, 300 through the Hub);
- in headless Chromium (dtype q8: ``onnx/model_quantized.onnx``, onnxruntime-web on wasm), from a folder on the
  page's own origin and from the loopback Hub: the same top-1 as onnxruntime in Python on the same int8 file;
- the static Space (``push-space --static``) in Chromium: uploads and drawings classified, bad uploads one line.

Nothing is fetched from outside loopback (Chromium's network log is checked). Where Node is installed these tests
run; they skip only without Node (and fail then under CI=true).

Timing on the 2 busy cores of the development machine: ``npm ci --ignore-scripts`` 23 s (only when js/node_modules is
missing; scripts/setup.sh installs it); see docs/development.md for this file's time.
"""

from __future__ import annotations

import functools
import http.server
import json
import math
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from hf_fmnist.core.models import PRESETS, TRANSFORMERS_JS_TYPES, create_model
from hf_fmnist.core.recipes import DEFAULT_PRESET
from hf_fmnist.errors import HfFmnistError
from hf_fmnist.hub import static_space

from conftest import IN_CI, real_data, unique_repo

ort = pytest.importorskip("onnxruntime", reason="needs the 'onnx' extra")
ROOT = Path(__file__).resolve().parents[1]
JS = ROOT / "js"
NODE, NPM = shutil.which("node"), shutil.which("npm")
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
FULL, TRANSFORMER_IMAGES, HUB_IMAGES, BROWSER_IMAGES = 10_000, 1_000, 300, 100
# Presets checked on all 10,000 test images in Node: the default one and the convolutional candidates for it.
FULL_PRESETS = {DEFAULT_PRESET, "resnet", "convnext"}


def quiet(message: str) -> None:
    pass


def model_type(preset: str) -> str:
    return create_model(preset).config.model_type


def runs_in_transformers_js(preset: str) -> bool:
    return model_type(preset) in TRANSFORMERS_JS_TYPES


def needs_node() -> None:
    if NODE and NPM:
        return
    if IN_CI:
        pytest.fail("Node 20 and npm are needed for the transformers.js tests (CI=true): apt-get install nodejs npm")
    pytest.skip("Node and npm are not installed")


@pytest.fixture(scope="session")
def js_modules() -> Path:
    """js/node_modules with the pinned transformers.js, installed from the lock file when missing (as setup.sh)."""
    needs_node()
    try:
        return static_space.node_modules(JS)
    except HfFmnistError:
        subprocess.run(
            [NPM, "ci", "--ignore-scripts", "--no-audit", "--no-fund"], cwd=JS, check=True, timeout=600
        )  # a failure fails the tests: a skip here would hide that transformers.js was never run
    return static_space.node_modules(JS)


@pytest.fixture(scope="session")
def test_images() -> np.ndarray:
    from conftest import require_real_data

    require_real_data()
    from hf_fmnist.data.tensors import load_tensors

    images, _ = load_tensors("test")
    return np.ascontiguousarray(images.numpy(), dtype=np.uint8)


@pytest.fixture(scope="session")
def trained(tmp_path_factory, test_images):
    """``trained(preset)``: a model folder trained briefly on 1,024 real images (an epoch of 16 steps: agreement is
    measured, not accuracy, and a trained head has margins an untrained one lacks), exported by `hf-fmnist export`
    with its int8 and fp16 files. One per preset, made on first use.

    The int8 file's accuracy limit is lifted here: a model trained for 16 steps has small margins, and its int8 file
    loses 0.5 points on 1,000 images (measured for resnet), past the 0.3 allowed. What these tests measure is
    transformers.js against PyTorch or onnxruntime on the same file; tests/test_onnx.py holds the export's limits."""
    from hf_fmnist.core.config import TrainConfig
    from hf_fmnist.inference import onnx as onnx_export
    from hf_fmnist.training.loop import train

    folders: dict[str, Path] = {}

    def make(preset: str) -> Path:
        if preset not in folders:
            folder = tmp_path_factory.mktemp(f"js-{preset}") / preset
            train(
                TrainConfig(
                    output_dir=str(folder),
                    model_name_or_path=preset,
                    num_train_epochs=1,
                    max_train_samples=1024,
                    max_eval_samples=100,
                    per_device_train_batch_size=64,
                    per_device_eval_batch_size=100,
                )
            )
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(onnx_export, "MAX_LOSS", {"int8": 10_000, "fp16": 10_000})
                onnx_export.export_onnx(folder, max_samples=200, log=quiet)
            folders[preset] = folder
        return folders[preset]

    return make


def pytorch_top1(folder: Path, images: np.ndarray) -> np.ndarray:
    """PyTorch's top-1 class of each image, through the model's own preprocessing."""
    import torch
    from transformers import AutoModelForImageClassification

    from hf_fmnist.core.loader import Preprocess
    from hf_fmnist.core.models import load_image_processor

    model = AutoModelForImageClassification.from_pretrained(folder, trust_remote_code=False).eval()
    preprocess = Preprocess.from_processor(load_image_processor(str(folder)), model.config.num_channels)
    tops = []
    with torch.inference_mode():
        for start in range(0, len(images), 1000):
            pixels = preprocess(torch.from_numpy(images[start : start + 1000])).contiguous()
            tops.append(model(pixel_values=pixels).logits.argmax(1).numpy())
    return np.concatenate(tops)


MARGIN = 0.1  # logits: a top-2 gap beyond int8 kernels' rounding (see the Chromium test)


def int8_top1(folder: Path, images: np.ndarray, *, margins: bool = False):
    """onnxruntime's (Python, CPU) top-1 class of each image on the int8 file, preprocessed as PyTorch is; with
    ``margins``, also each image's gap between its top two logits."""
    import torch

    from hf_fmnist.core.loader import Preprocess
    from hf_fmnist.core.models import load_image_processor

    preprocess = Preprocess.from_processor(load_image_processor(str(folder)), 3)
    session = ort.InferenceSession(str(folder / "onnx" / "model_quantized.onnx"), providers=["CPUExecutionProvider"])
    pixels = preprocess(torch.from_numpy(images)).contiguous().numpy()
    logits = session.run(["logits"], {"pixel_values": pixels})[0]
    if not margins:
        return logits.argmax(1)
    top = np.sort(logits, axis=1)
    return logits.argmax(1), top[:, -1] - top[:, -2]


def label_ids(folder: Path, labels: list[str]) -> np.ndarray:
    id2label = json.loads((folder / "config.json").read_text())["id2label"]
    return np.array([{v: int(k) for k, v in id2label.items()}[label] for label in labels])


def node_classify(source: str, where: str, model: str, images: np.ndarray, tmp_path: Path):
    """Run js/classify.mjs; ``(process, labels or None)``."""
    images_file, out = tmp_path / "images.u8", tmp_path / "labels.json"
    images.tofile(images_file)
    process = subprocess.run(
        [NODE, str(JS / "classify.mjs"), source, where, model, str(images_file), str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "0"},
    )
    return process, json.loads(out.read_text()) if process.returncode == 0 else None


def at_least(count: int) -> int:
    """The agreement needed: 99.9% of ``count`` images, as a count (9,990 of 10,000)."""
    return math.ceil(count * 999 / 1000)


def refused_by_transformers_js(preset: str, tmp_path: Path, js_modules: Path) -> None:
    """For a preset of a type transformers.js lacks: check that it really refuses it, then mark the test xfail."""
    folder = tmp_path / "models" / preset
    create_model(preset).config.save_pretrained(folder)
    process, _ = node_classify("local", str(folder.parent), preset, np.zeros((1, 28, 28), np.uint8), tmp_path)
    assert process.returncode != 0 and f"Unsupported model type: {model_type(preset)}" in process.stderr
    pytest.xfail(
        f"preset {preset!r} builds a {model_type(preset)} model, which transformers.js 4.3.1 does not run: point it "
        f"at resnet/convnext or pvt1 in hf_fmnist/core/models.py PRESETS (benchmarks/architectures.py chooses)"
    )


def publish(folder: Path, name: str) -> str:
    """The model folder on the loopback Hub as users publish it (`hf-fmnist push-model`: ONNX files, card)."""
    from hf_fmnist.hub.push import push_model

    repo_id = unique_repo(name)
    push_model(repo_id, folder)
    return repo_id


# --- Node --------------------------------------------------------------------------------------------------------


@real_data
@pytest.mark.parametrize("preset", list(PRESETS))
def test_node_runs_each_preset_from_a_local_folder_like_pytorch(preset, trained, js_modules, test_images, tmp_path):
    """Catches an export transformers.js cannot load (layout, input/output names, opset, model type), and one whose
    preprocessing or graph differs from PyTorch's: top-1 agreement counted image by image."""
    if not runs_in_transformers_js(preset):
        refused_by_transformers_js(preset, tmp_path, js_modules)
    folder = trained(preset)
    images = test_images[: FULL if preset in FULL_PRESETS else TRANSFORMER_IMAGES]
    process, labels = node_classify("local", str(folder.parent), folder.name, images, tmp_path)
    assert process.returncode == 0, process.stderr[-3000:]
    assert len(labels) == len(images)
    agree = int((label_ids(folder, labels) == pytorch_top1(folder, images)).sum())
    assert agree >= at_least(len(images)), f"{agree} of {len(images)}"


@real_data
@pytest.mark.parametrize("preset", list(PRESETS))
def test_node_runs_each_preset_from_the_hub(preset, trained, js_modules, test_images, tmp_path, hub):
    """The same through ``env.remoteHost`` (the loopback Hub's resolve URLs), with an empty cache."""
    if not runs_in_transformers_js(preset):
        refused_by_transformers_js(preset, tmp_path, js_modules)
    folder = trained(preset)
    repo_id = publish(folder, f"js-{preset}")
    images = test_images[:HUB_IMAGES]
    process, labels = node_classify("hub", hub.endpoint, repo_id, images, tmp_path)
    assert process.returncode == 0, process.stderr[-3000:]
    agree = int((label_ids(folder, labels) == pytorch_top1(folder, images)).sum())
    assert agree >= at_least(len(images)), f"{agree} of {len(images)}"


def test_the_list_of_types_transformers_js_runs_is_its_own(js_modules):
    """TRANSFORMERS_JS_TYPES (what the tests and push-space --static trust) against the installed library's
    image-classification mapping: a type it lacks would otherwise be published as runnable."""
    bundle = (js_modules / "@huggingface" / "transformers" / "dist" / "transformers.node.mjs").read_text()
    start = bundle.index("MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES")
    mapping = bundle[start : bundle.index("]);", start)]
    for kind in TRANSFORMERS_JS_TYPES:
        assert f'["{kind}",' in mapping, kind
    for kind in ("regnet", "pvt_v2"):
        assert f'["{kind}",' not in mapping


# --- Chromium ----------------------------------------------------------------------------------------------------


class Site:
    """A folder served on loopback (the page's origin), as a static Space's files are served."""

    def __init__(self, folder: Path):
        handler = functools.partial(QuietHandler, directory=str(folder))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium as the demo's browser test starts it: every host but loopback unresolvable, no background
    requests of its own, and a performance log listing every request the pages make."""
    if not (CHROMIUM and CHROMEDRIVER):
        if IN_CI:
            pytest.fail("chromium and chromium-driver are needed (CI=true): scripts/setup.sh installs them")
        pytest.skip("needs Debian's chromium and chromium-driver (setup.sh)")
    webdriver = pytest.importorskip("selenium.webdriver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(120)
    driver.set_script_timeout(300)
    yield driver
    driver.quit()


def requested(driver) -> set[str]:
    """Every URL the browser requested since the last call (the log is drained)."""
    return {
        json.loads(entry["message"])["message"]["params"]["request"]["url"]
        for entry in driver.get_log("performance")
        if '"Network.requestWillBeSent"' in entry["message"]
    }


def offline(urls: set[str]) -> list[str]:
    """The URLs that left loopback: none may."""
    return [u for u in urls if not u.startswith(("http://127.0.0.1:", "data:", "blob:"))]


HARNESS = """<!doctype html><meta charset="utf-8"><title>harness</title>
<script type="module">
import { env, pipeline, RawImage } from "./lib/transformers.min.js";
const query = new URLSearchParams(location.search);
env.backends.onnx.wasm.wasmPaths = {
  mjs: new URL("lib/ort-wasm-simd-threaded.mjs", location.href).href,
  wasm: new URL("lib/ort-wasm-simd-threaded.wasm", location.href).href,
};
env.backends.onnx.wasm.numThreads = 1;
if (query.get("source") === "hub") {
  env.remoteHost = query.get("hub"); env.allowLocalModels = false;
} else {
  env.localModelPath = "/models/"; env.allowLocalModels = true; env.allowRemoteModels = false;
}
try {
  const classify = await pipeline("image-classification", query.get("model"));  // default options
  const bytes = new Uint8Array(await (await fetch("images.u8")).arrayBuffer());
  const labels = [];
  for (let i = 0; i < bytes.length / 784; i++) {
    const pixels = new Uint8ClampedArray(bytes.subarray(784 * i, 784 * (i + 1)));
    const [top] = await classify(new RawImage(pixels, 28, 28, 1));
    labels.push(top.label);
  }
  window.result = { labels };
} catch (error) {
  window.result = { error: String(error?.stack ?? error) };
}
</script>"""


@pytest.fixture(scope="module")
def harness_site(tmp_path_factory, js_modules):
    folder = tmp_path_factory.mktemp("harness")
    static_space.copy_library(folder, JS)
    (folder / "index.html").write_text(HARNESS)
    (folder / "models").mkdir()
    site = Site(folder)
    yield folder, site
    site.close()


def browser_labels(driver, url: str) -> list[str]:
    driver.get(url)
    deadline = time.monotonic() + 300
    while (result := driver.execute_script("return window.result ?? null")) is None:
        assert time.monotonic() < deadline, "the page gave no result in 300 s"
        time.sleep(0.5)
    assert "error" not in result, result.get("error")
    return result["labels"]


@real_data
@pytest.mark.parametrize("preset", list(PRESETS))
def test_chromium_runs_each_preset_int8_by_default(preset, trained, browser, harness_site, test_images, hub):
    """transformers.js's browser default (wasm, q8): it must request onnx/model_quantized.onnx, from a folder on the
    page's origin and from the Hub, and give onnxruntime's top-1 on that int8 file, with nothing fetched from outside
    loopback (no CDN for the library or its WebAssembly)."""
    if not runs_in_transformers_js(preset):
        pytest.xfail(f"preset {preset!r} is a {model_type(preset)} model: transformers.js does not run it (see Node)")
    folder = trained(preset)
    site_folder, site = harness_site
    images = test_images[:BROWSER_IMAGES]
    images.tofile(site_folder / "images.u8")
    shutil.copytree(folder, site_folder / "models" / preset, dirs_exist_ok=True)
    repo_id = publish(folder, f"js-browser-{preset}")
    # onnxruntime-web runs the int8 file's QDQ graph with other kernels than the CPU build (which fuses it): on a model
    # trained for 16 steps, whose median top-2 logit gap is 0.15 (vit, measured), 9 of 100 near-ties flipped, and 3 of
    # the 57 images with a gap of at least MARGIN (vit; resnet and convnext: none). Agreement is counted on those
    # clear images, and up to a tenth of them may differ: a broken file, wrong preprocessing or the fp32 file in
    # place of the int8 one differ on far more (a changed image_mean: half of them).
    expected, gaps = int8_top1(folder, images, margins=True)
    clear = gaps >= MARGIN
    assert clear.sum() >= len(images) // 4, f"only {clear.sum()} of {len(images)} images have a clear top-1"
    requested(browser)
    for query in (f"source=local&model={preset}", f"source=hub&hub={hub.endpoint}/&model={repo_id}"):
        labels = browser_labels(browser, f"{site.url}index.html?{query}")
        urls = requested(browser)
        assert not offline(urls), offline(urls)
        assert any(u.endswith("/onnx/model_quantized.onnx") for u in urls), sorted(urls)
        assert not any(u.endswith("/onnx/model.onnx") for u in urls)
        agree = int((label_ids(folder, labels) == expected)[clear].sum())
        assert agree >= int(clear.sum()) - int(clear.sum()) // 10, (
            f"{query}: {agree} of {int(clear.sum())} clear images"
        )


# --- the static Space --------------------------------------------------------------------------------------------


def test_static_space_holds_the_page_and_the_pinned_library(js_modules, tmp_path):
    """Exactly the page, its config (JSON literals), the card and the library copied byte for byte from the npm
    package: a Space that would fetch transformers.js or its WebAssembly from elsewhere lacks one of them."""
    files = static_space.build_static_space(tmp_path, "me/fm", "https://huggingface.co", js_dir=JS)
    assert files == sorted(["README.md", "index.html", "app.js", "config.js", *(t for _, _, t in static_space.LIBRARY)])
    for package, name, target in static_space.LIBRARY:
        assert (tmp_path / target).read_bytes() == (js_modules / package / name).read_bytes()
    assert (tmp_path / "config.js").read_text() == (
        'export const HUB = "https://huggingface.co/";\nexport const MODEL = "me/fm";\n'
    )
    card = (tmp_path / "README.md").read_text()
    assert "sdk: static" in card and "app_file: index.html" in card and "- me/fm" in card
    app = (tmp_path / "app.js").read_text()
    assert 'from "./lib/transformers.min.js"' in app and "http" not in app  # no URL but the Hub from config.js


def test_static_space_without_the_npm_package_is_one_line(tmp_path):
    with pytest.raises(HfFmnistError, match=r"has none; run `npm ci --ignore-scripts` in .*scripts/setup.sh"):
        static_space.build_static_space(tmp_path / "space", "me/fm", "https://huggingface.co", js_dir=tmp_path)


@real_data
def test_push_space_static_refuses_a_model_transformers_js_cannot_run(hub, trained, js_modules, tmp_path, capsys):
    """A RegNet (today's cnn preset), or a model without its int8 file, would give a page that only errors: refused
    before anything is published, one line naming the model and what to do."""
    from huggingface_hub import HfApi

    from hf_fmnist.cli import main
    from hf_fmnist.core.models import regnet

    from conftest import one_error_line

    space_id = unique_repo("static")
    regnet().config.save_pretrained(tmp_path / "regnet")
    regnet_repo = unique_repo("regnet")  # a stranger's repo: only its config.json
    HfApi().create_repo(regnet_repo)
    HfApi().upload_folder(repo_id=regnet_repo, folder_path=tmp_path / "regnet")
    assert main(["push-space", "--static", "--model", regnet_repo, "--repo-id", space_id]) == 2
    assert "is a 'regnet' model, which transformers.js 4.3.1 does not run" in one_error_line(capsys)
    no_int8 = unique_repo("no-int8")
    HfApi().create_repo(no_int8)
    HfApi().upload_folder(
        repo_id=no_int8, folder_path=trained("resnet"), allow_patterns=["config.json", "onnx/model.onnx"]
    )
    assert main(["push-space", "--static", "--model", no_int8, "--repo-id", space_id]) == 2
    assert f"Model {no_int8} has no onnx/model_quantized.onnx" in one_error_line(capsys)
    assert not HfApi().repo_exists(space_id, repo_type="space")


@real_data
def test_static_space_classifies_uploads_and_drawings_in_chromium(hub, trained, js_modules, browser, tmp_path):
    """push-space --static to the loopback Hub, the Space's files served as a static Space serves them, the page in
    Chromium: a test image gives onnxruntime's int8 top-1; a drawing gets five classes; an empty file, a text file,
    a damaged PNG, a 21 MB file and a 50-megapixel PNG each get one line in the page, never a stack trace; nothing
    leaves loopback, and the int8 file and the library's WebAssembly come from the Hub and the Space."""
    from huggingface_hub import hf_hub_download, snapshot_download
    from PIL import Image
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from hf_fmnist.cli import main
    from hf_fmnist.data.tensors import load_tensors

    preset = DEFAULT_PRESET if runs_in_transformers_js(DEFAULT_PRESET) else "resnet"
    folder = trained(preset)
    model_id, space_id = publish(folder, "static-model"), unique_repo("static-space")
    assert main(["push-space", "--static", "--model", model_id, "--repo-id", space_id]) == 0
    space = Path(snapshot_download(space_id, repo_type="space", local_dir=tmp_path / "space"))
    assert "sdk: static" in (space / "README.md").read_text()
    card = Path(hf_hub_download(model_id, "README.md")).read_text()  # the model card links the Space, as for Gradio
    assert f"[{space_id}](" in card and "a page in which transformers.js runs this model on your device" in card
    site = Site(space)
    images, _ = load_tensors("test")
    image = np.ascontiguousarray(images[:1].numpy(), dtype=np.uint8)
    Image.fromarray(image[0]).save(tmp_path / "test-0.png")
    top = json.loads((folder / "config.json").read_text())["id2label"][str(int(int8_top1(folder, image)[0]))]
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not an image\n")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(2000))
    with open(tmp_path / "huge.png", "wb") as f:
        f.truncate(21 * 1024 * 1024)
    Image.new("L", (7100, 7100)).save(tmp_path / "wide.png")
    try:
        requested(browser)
        browser.get(f"{site.url}index.html")
        wait = WebDriverWait(browser, 300)
        wait.until(lambda d: "Ready" in d.find_element(By.ID, "status").text)
        upload = browser.find_element(By.ID, "file")
        prediction = lambda d: d.find_element(By.ID, "prediction").text  # noqa: E731
        message = lambda d: d.find_element(By.ID, "message").text  # noqa: E731

        upload.send_keys(str(tmp_path / "test-0.png"))
        wait.until(lambda d: prediction(d))
        assert prediction(browser).splitlines()[0].startswith(f"{top}:") and message(browser) == ""
        assert len(prediction(browser).splitlines()) == 5
        for name, expected in (
            ("empty.png", "empty.png is empty"),
            ("notes.txt", "notes.txt is not an image (text/plain)"),
            ("broken.png", "broken.png could not be read as an image"),
            ("huge.png", "huge.png is 22.0 MB; images up to 20 MB are accepted."),
            ("wide.png", "wide.png is 7100×7100 pixels, more than the 50 million accepted"),
        ):
            upload.send_keys(str(tmp_path / name))
            wait.until(lambda d, expected=expected: expected in message(d))
            assert "\n" not in message(browser) and " at " not in message(browser), message(browser)
            assert prediction(browser) == ""
        canvas = browser.find_element(By.ID, "draw")
        ActionChains(browser).move_to_element_with_offset(canvas, -60, -80).click_and_hold().move_by_offset(
            0, 160
        ).move_by_offset(120, 0).release().perform()
        browser.find_element(By.ID, "classify-drawing").click()
        wait.until(lambda d: len(prediction(d).splitlines()) == 5)
        assert message(browser) == ""
        urls = requested(browser)
        shot = Path(os.environ.get("HF_FMNIST_SCREENSHOT_DIR", tmp_path)) / "static-space.png"
        shot.parent.mkdir(parents=True, exist_ok=True)
        assert browser.save_screenshot(str(shot))
    finally:
        site.close()
    assert not offline(urls), offline(urls)
    assert f"{hub.endpoint}/{model_id}/resolve/main/onnx/model_quantized.onnx" in urls
    assert f"{site.url}lib/ort-wasm-simd-threaded.wasm" in urls


@real_data
def test_the_cards_snippet_runs_as_published_in_node(hub, trained, js_modules, test_images, tmp_path):
    """Issue 24.3: the transformers.js snippet the model card shows is the one that runs. The card's own text (from
    the pushed README.md), with only the Hub address set before it, classifies a sneaker image from the working
    folder as PyTorch does: a snippet whose model id, pipeline task or file name drifted from what runs fails."""
    from huggingface_hub import hf_hub_download
    from PIL import Image

    folder = trained("resnet")
    repo_id = publish(folder, "js-snippet")
    card = Path(hf_hub_download(repo_id, "README.md")).read_text()
    [snippet] = re.findall(r"```(?:js|javascript)\n(.*?)```", card, re.S)
    assert 'pipeline("image-classification", "' + repo_id + '")' in snippet
    sneaker = next(i for i, label in enumerate(load_tensors_labels()) if label == 7)  # a Sneaker of the test split
    Image.fromarray(test_images[sneaker]).save(tmp_path / "sneaker.png")
    (tmp_path / "node_modules").symlink_to(js_modules)  # what `npm install @huggingface/transformers` gives a user
    preamble = (
        'import { env } from "@huggingface/transformers";\n'
        f'env.remoteHost = "{hub.endpoint}/"; env.allowLocalModels = false;\n'
        f'env.cacheDir = "{tmp_path / "cache"}";\n'
    )
    (tmp_path / "snippet.mjs").write_text(preamble + snippet)
    process = subprocess.run(
        [NODE, "snippet.mjs"], cwd=tmp_path, capture_output=True, text=True, timeout=300, env=os.environ.copy()
    )
    assert process.returncode == 0, process.stderr[-3000:]
    label, score = process.stdout.strip().splitlines()[-1].rsplit(" ", 1)  # console.log(best.label, best.score)
    id2label = json.loads((folder / "config.json").read_text())["id2label"]
    assert label == id2label[str(int(pytorch_top1(folder, test_images[sneaker : sneaker + 1])[0]))]
    assert 0 < float(score) <= 1


def load_tensors_labels() -> np.ndarray:
    from hf_fmnist.data.tensors import load_tensors

    return load_tensors("test")[1].numpy()
