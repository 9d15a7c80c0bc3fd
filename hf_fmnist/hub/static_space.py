"""``hf-fmnist push-space --static``: a Space that needs no server, where transformers.js classifies in the browser.

The Space repo (``sdk: static``) holds a page (``index.html``, ``app.js``), its card, and the pinned transformers.js
library copied from the npm package this repository locks (``js/package-lock.json``, installed by
``scripts/setup.sh`` with ``npm ci --ignore-scripts``): ``lib/transformers.min.js`` (the bundle, onnxruntime-web
included) and onnxruntime-web's WebAssembly runtime (``lib/ort-wasm-simd-threaded.{mjs,wasm}``), with transformers.js'
licence (onnxruntime-web's package ships none; it is MIT, as the card says).
The page points onnxruntime-web at those files, so it fetches nothing from a CDN: the only other requests are the
model's files, from the Hub the Space was published to (``config.json``, ``preprocessor_config.json`` and
``onnx/model_quantized.onnx``, the int8 file transformers.js loads in a browser by default).

The model must be one transformers.js runs and carry that int8 file: both are checked on the Hub before anything is
published.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ..errors import HfFmnistError

VERSION = "4.3.1"  # @huggingface/transformers, as js/package.json pins it
JS_DIR = Path(__file__).resolve().parents[2] / "js"  # the repository's npm project (a source checkout)
# What the page loads, from the npm packages: (package, file in it, file in the Space)
LIBRARY = (
    ("@huggingface/transformers", "dist/transformers.min.js", "lib/transformers.min.js"),
    ("@huggingface/transformers", "LICENSE", "lib/LICENSE.transformers.js.txt"),
    ("onnxruntime-web", "dist/ort-wasm-simd-threaded.mjs", "lib/ort-wasm-simd-threaded.mjs"),
    ("onnxruntime-web", "dist/ort-wasm-simd-threaded.wasm", "lib/ort-wasm-simd-threaded.wasm"),
)
PAGE = ("index.html", "app.js")  # hf_fmnist/hub/page/, copied as they are
CONFIG = "config.js"  # written per Space: the Hub and the model the page loads
STATIC_FILES = ("README.md", *PAGE, CONFIG, "lib/*")
INT8_FILE = "onnx/model_quantized.onnx"


def node_modules(js_dir: str | os.PathLike | None = None) -> Path:
    """The installed npm packages, checked to be the pinned transformers.js; one line saying how to install them."""
    root = Path(js_dir) if js_dir is not None else JS_DIR
    modules = root / "node_modules"
    manifest = modules / "@huggingface" / "transformers" / "package.json"
    install = f"run `npm ci --ignore-scripts` in {root} (scripts/setup.sh does)"
    if not manifest.is_file():
        raise HfFmnistError(f"push-space --static copies transformers.js from {modules}, which has none; {install}.")
    version = json.loads(manifest.read_text()).get("version")
    if version != VERSION:
        raise HfFmnistError(f"{manifest} is transformers.js {version}, not the pinned {VERSION}; {install}.")
    return modules


def copy_library(dest: str | os.PathLike, js_dir: str | os.PathLike | None = None) -> list[str]:
    """Copy the library files the page loads into ``dest`` (their Space paths); returns those paths."""
    modules = node_modules(js_dir)
    for package, name, target in LIBRARY:
        source = modules / package / name
        if not source.is_file():
            raise HfFmnistError(f"{source} is missing from the npm package; reinstall: npm ci --ignore-scripts.")
        (Path(dest) / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, Path(dest) / target)
    return [target for _, _, target in LIBRARY]


def page_config(model_id: str, endpoint: str) -> str:
    """``config.js``: the Hub and the model, as JSON literals (never code from a string the user typed)."""
    hub = endpoint.rstrip("/") + "/"
    return f"export const HUB = {json.dumps(hub)};\nexport const MODEL = {json.dumps(model_id)};\n"


def build_static_space(folder: str | os.PathLike, model_id: str, endpoint: str, *, js_dir=None) -> list[str]:
    """Write the static Space's files into ``folder``; returns their repo paths."""
    node_modules(js_dir)  # before anything is written
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    page = Path(__file__).resolve().parent / "page"
    for name in PAGE:
        shutil.copyfile(page / name, folder / name)
    copy_library(folder, js_dir)
    (folder / CONFIG).write_text(page_config(model_id, endpoint))
    (folder / "README.md").write_text(static_card(model_id))
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def static_card(model_id: str) -> str:
    return f"""---
title: Fashion-MNIST classifier (in your browser)
emoji: 👕
colorFrom: gray
colorTo: indigo
sdk: static
app_file: index.html
models:
- {model_id}
license: mit
pinned: false
short_description: Classify clothing images in the browser with transformers.js
tags:
- fashion-mnist
- image-classification
- transformers.js
---

# Fashion-MNIST classifier, in your browser

[{model_id}](https://huggingface.co/{model_id}) running on your own device with
[transformers.js](https://github.com/huggingface/transformers.js) {VERSION}: upload an image or draw one, and see the
model's top five classes. Nothing is sent to a server; the page loads the model's int8 file
(`{INT8_FILE}`) from the Hub.

The library is in `lib/`, copied from the npm packages `@huggingface/transformers` {VERSION} (Apache-2.0, its licence
beside it) and `onnxruntime-web` (MIT): the page fetches nothing from a CDN. Published with
`hf-fmnist push-space --static`.
"""


def check_model_for_browser(model_id: str, token: str | None) -> None:
    """The model's config names a type transformers.js runs, and its repo has the int8 file the page loads."""
    from huggingface_hub import HfApi, hf_hub_download

    from ..core.models import TRANSFORMERS_JS_TYPES, check_config_sizes
    from .push import resolve_token

    token = resolve_token(token)
    try:
        config_path = Path(hf_hub_download(model_id, "config.json", token=token))
        has_int8 = HfApi(token=token).file_exists(model_id, INT8_FILE)
    except Exception as e:  # not found, no access, offline: the same answer for each, naming the model
        raise HfFmnistError(
            f"Cannot read config.json of model {model_id} on the Hub ({type(e).__name__}); check --model."
        ) from None
    check_config_sizes(config_path)
    model_type = json.loads(config_path.read_text()).get("model_type")
    if model_type not in TRANSFORMERS_JS_TYPES:
        raise HfFmnistError(
            f"Model {model_id} is a {model_type!r} model, which transformers.js {VERSION} does not run; train a "
            f"preset of type {', '.join(sorted(TRANSFORMERS_JS_TYPES))} for a static Space, or drop --static."
        )
    if not has_int8:
        raise HfFmnistError(
            f"Model {model_id} has no {INT8_FILE}, which transformers.js loads in a browser; export it "
            f"(`hf-fmnist export --model DIR`) and push the model again, or drop --static."
        )
