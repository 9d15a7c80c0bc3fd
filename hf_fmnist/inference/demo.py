"""``hf-fmnist demo``: a Gradio app that classifies uploaded or drawn images with a Fashion-MNIST model.

The same module is the app of the Hub Space: ``hf-fmnist push-space`` copies it, with the parts of the package it
stands on (:data:`hf_fmnist.hub.space.SPACE_PARTS`), next to a generated ``app.py``, so the local demo and the Space
cannot drift apart. Images go through the package's own loading (:func:`hf_fmnist.inference.predict.load_image`:
modes, transparency, 16-bit, decompression bombs) and the model's own preprocessing
(:class:`hf_fmnist.core.loader.Preprocess`), so the demo shows exactly what ``hf-fmnist predict`` says.

>>> app = build_app("out/model", examples_dir="examples")   # doctest: +SKIP
>>> app.launch(server_name="127.0.0.1", server_port=7860)     # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .. import CLASS_NAMES
from ..errors import HfFmnistError

# The package modules the app runs on, copied into the Space (tests/test_space.py runs the copy on its own).
MAX_UPLOAD = "10mb"  # Gradio refuses bigger files before they reach us
# Any request body, form fields included: Gradio's multipart parser buffers a field (not a file) whole, about 3× its
# size (a 700 MB field took the server to 2.6 GB before a 500). Bodies are counted as they stream in and refused
# past this, so the server holds, and a request writes to disk, at most about this much whatever is posted.
MAX_REQUEST_BYTES = 12 << 20  # one 10 MB upload and its multipart framing
MAX_SIDE = 1024  # pixels: larger images are shrunk before the photo preprocessing (the model sees 28x28 anyway)
VIEW_SIZE = 224  # the model's input is shown enlarged to this, without smoothing
FOREGROUND = 32  # gray levels above the background that count as the object when cropping a photo
PHOTO_HELP = (
    "Fashion-MNIST images are light garments on a black background, cropped to the object and centred in a square. "
    "Photos usually show a dark object on a light background with margins around it: this option inverts such "
    "images, makes the background black, crops to the object and pads it to a centred square, as the model card "
    "recommends. Leave it off for Fashion-MNIST images."
)


class Classifier:
    """A loaded model and its preprocessing: gray image in, top classes and the model's view out."""

    def __init__(self, model_ref: str):
        from ..core.loader import Preprocess
        from .evaluate import load_for_inference

        self.model_ref = model_ref
        self.model, processor, self.names = load_for_inference(model_ref)
        self.preprocess = Preprocess.from_processor(processor, self.model.config.num_channels)
        self.device = next(self.model.parameters()).device

    def __call__(self, gray: np.ndarray, *, photo: bool = False, top_k: int = 5) -> tuple[dict[str, float], np.ndarray]:
        """``({class: probability} of the top ``top_k``, the uint8 image the model sees)``."""
        import torch

        from .predict import _fit

        if photo:
            gray = photo_to_fmnist(gray)
        pixels = _fit(gray, self.preprocess.size)  # the same resizing as `hf-fmnist predict`
        with torch.inference_mode():
            logits = self.model(pixel_values=self.preprocess(pixels[None].to(self.device))).logits
        probs = logits.float().softmax(-1)[0]
        scores, labels = probs.topk(min(top_k, len(self.names)))
        return {self.names[i]: round(s, 6) for s, i in zip(scores.tolist(), labels.tolist())}, pixels.numpy()


def photo_to_fmnist(gray: np.ndarray) -> np.ndarray:
    """A photo as Fashion-MNIST would show it: light object on black, cropped to the object, centred in a square.

    Follows the dataset's own conversion (trim, extend to a square, negate). The background is the median of the
    border pixels: a light one means a dark object, so the image is inverted; the background level is then made
    black, and the object is the bounding box of pixels clearly above it.
    """
    gray = _shrink(gray, MAX_SIDE).astype(np.float32)
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    if np.median(border) > 127:
        gray = 255 - gray
        border = 255 - border
    background = float(np.median(border))
    gray = np.clip((gray - background) * 255 / max(1.0, 255 - background), 0, 255).astype(np.uint8)
    rows, cols = np.nonzero(gray > FOREGROUND)
    if rows.size:
        gray = gray[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    height, width = gray.shape
    side = max(height, width)
    square = np.zeros((side, side), dtype=np.uint8)
    top, left = (side - height) // 2, (side - width) // 2
    square[top : top + height, left : left + width] = gray
    return square


def _shrink(gray: np.ndarray, max_side: int) -> np.ndarray:
    if max(gray.shape) <= max_side:
        return gray
    from PIL import Image

    image = Image.fromarray(gray)
    image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return np.asarray(image)


def restrict_pil_formats() -> None:
    """Leave PIL able to open only :data:`hf_fmnist.image_limits.IMAGE_FORMATS`, in this whole process.

    load_image opens files with that allow-list, but Gradio opens each upload first with a plain ``Image.open``,
    which tries every plugin: an upload holding EPS would run Ghostscript on the uploader's PostScript. The app's
    process opens nothing else, so its PIL registry is cut down instead.
    """
    from PIL import Image

    from ..image_limits import IMAGE_FORMATS

    Image.init()  # register every plugin now: a later Image.open would otherwise register them again
    for name in [name for name in Image.ID if name not in IMAGE_FORMATS]:
        Image.ID.remove(name)
        Image.OPEN.pop(name, None)


def enlarge(pixels: np.ndarray, size: int = VIEW_SIZE) -> np.ndarray:
    """Nearest-neighbour enlargement, so every model pixel stays a visible square."""
    factor = max(1, size // max(pixels.shape))
    return np.kron(pixels, np.ones((factor, factor), dtype=np.uint8))


def write_examples(folder: str | os.PathLike, *, data_dir: str | None = None) -> list[Path]:
    """The first test image of each class as ``test-NNNNN-classK.png`` in ``folder`` (the app's clickable examples).

    Reads only the raw test split (no ``datasets``), and writes the same bytes every time, so re-publishing a Space
    changes nothing. Not used inside the Space, which ships the PNGs.
    """
    from ..data import idx, png, raw

    test = idx.read_split(raw.locate(data_dir), "test")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    first = [int(np.flatnonzero(test.labels == k)[0]) for k in range(len(CLASS_NAMES))]
    paths = []
    for index, data in zip(first, png.encode_gray(test.images[first], threads=1)):
        path = folder / f"test-{index:05d}-class{int(test.labels[index])}.png"
        path.write_bytes(data)
        paths.append(path)
    return paths


def example_files(folder: str | os.PathLike | None) -> list[tuple[str, str]]:
    """``(path, caption)`` of the example PNGs in ``folder``, in file-name order."""
    if folder is None or not Path(folder).is_dir():
        return []
    found = []
    for path in sorted(Path(folder).glob("test-*-class*.png")):
        label = int(path.stem.rsplit("class", 1)[1])
        found.append((str(path), f"{CLASS_NAMES[label]} (test image {int(path.stem.split('-')[1])})"))
    return found


def build_app(model_ref: str, *, examples_dir: str | os.PathLike | None = None, classifier: Classifier | None = None):
    """The Gradio ``Blocks`` app. API endpoints: ``/classify`` (image file, photo flag), ``/classify_drawing``."""
    from ..extras import require

    gr = require("gradio", extra="demo", command="demo")

    from .predict import ImageFileError, load_image

    # Gradio never decodes an upload (the events run with preprocess=False): load_image does, refusing images above
    # MAX_PIXELS with predict's own message. PIL stays restricted to our formats for anything Gradio opens itself.
    restrict_pil_formats()

    classify = classifier or Classifier(model_ref)
    views = _Views()

    def run(upload, photo: bool):
        # The events run with preprocess=False: Gradio hands over the uploaded file as it is (in its upload cache,
        # which it checks), and every byte of it is opened by load_image, with `hf-fmnist predict`'s checks and
        # one-line messages. Gradio's own preprocessing would decode it first, with any PIL plugin, and answer a
        # 0-byte file or a non-image with "Could not preprocess input component" and its temporary paths.
        path = _upload_path(upload)
        if not path:
            return None, None, ""
        try:
            loaded = load_image(Path(path))
            scores, pixels = classify(loaded.gray, photo=bool(photo))
        except (ImageFileError, HfFmnistError) as e:
            raise gr.Error(_message(e, path), print_exception=False) from None
        notes = "; ".join(loaded.notes)
        return scores, views.save(enlarge(pixels)), f"*Converted: {notes}.*" if notes else ""

    def run_drawing(value):
        # Gradio flattens the drawing on white: a dark object on a light background, exactly a photo's case.
        return run(value.get("composite") if isinstance(value, dict) else None, True)

    examples = example_files(examples_dir)
    size = "×".join(map(str, classify.preprocess.size))
    with gr.Blocks(title="Fashion-MNIST classifier", analytics_enabled=False) as app:
        gr.Markdown(
            f"# Fashion-MNIST classifier\nModel: `{model_ref}`. Upload an image or draw one; the model "
            f"sees it as a {size} gray image and answers with its top five classes."
        )
        with gr.Row():
            with gr.Column():
                with gr.Tab("Upload"):
                    image = gr.Image(
                        type="filepath",
                        format="png",
                        label="Image",
                        sources=["upload", "clipboard"],
                        image_mode=None,
                        elem_id="upload",
                    )
                    if examples:
                        gr.Examples(
                            [p for p, _ in examples],
                            inputs=image,
                            example_labels=[c for _, c in examples],
                            label="Fashion-MNIST test images (click one)",
                        )
                with gr.Tab("Draw"):
                    sketch = gr.Sketchpad(
                        type="filepath",
                        label="Draw a garment (dark on white)",
                        canvas_size=(280, 280),
                        elem_id="sketch",
                    )
                    gr.Markdown("Drawings always get the photo preprocessing: inverted, cropped and centred.")
                    draw_button = gr.Button("Classify drawing")
                photo = gr.Checkbox(
                    label="Photo preprocessing (invert, crop, pad to square)",
                    value=False,
                    info=PHOTO_HELP,
                    elem_id="photo",
                )
            with gr.Column():
                label = gr.Label(num_top_classes=5, label="Top 5 classes", elem_id="prediction")
                view = gr.Image(
                    label=f"What the model sees ({size}, enlarged)",
                    interactive=False,
                    format="png",
                    elem_id="model-view",
                )
                notes = gr.Markdown()
        outputs = [label, view, notes]
        image.change(run, [image, photo], outputs, api_name="classify", preprocess=False)
        photo.change(run, [image, photo], outputs, api_name=False, preprocess=False)
        draw_button.click(run_drawing, [sketch], outputs, api_name="classify_drawing", preprocess=False)
    return app


class _Views:
    """The model's views as PNG files of the app's own, one per content, each written once under a temp name.

    A view returned as an array is written by Gradio to ``<cache>/<hash>/image.png`` in place, every time: two
    requests with the same view rewrite the file while a third streams it ("Too little data for declared
    Content-Length", a server traceback, a dropped answer). A file path is copied into Gradio's cache atomically
    and only once.
    """

    def __init__(self):
        import atexit
        import shutil
        import tempfile

        self.folder = Path(tempfile.mkdtemp(prefix="hf_fmnist-demo-"))
        atexit.register(shutil.rmtree, self.folder, ignore_errors=True)

    def save(self, pixels: np.ndarray) -> str:
        import hashlib
        import io
        import tempfile

        from PIL import Image

        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG")
        data = buffer.getvalue()
        path = self.folder / f"view-{hashlib.sha256(data).hexdigest()[:32]}.png"
        if not path.exists():
            with tempfile.NamedTemporaryFile(dir=self.folder, suffix=".tmp", delete=False) as f:
                f.write(data)
            os.replace(f.name, path)
        return str(path)


def _upload_path(upload) -> str | None:
    """The file of an upload as Gradio hands it over unprocessed: a file-data dict (its ``path``), or a path."""
    if isinstance(upload, dict):
        upload = upload.get("path")
    return upload if isinstance(upload, str) and upload else None


def _message(error: BaseException, path: str) -> str:
    """``predict``'s one-line message for the upload, without the server's temporary path."""
    return " ".join(str(error).replace(path, "the image").replace(Path(path).name, "the image").split())[:300]


# 28x28 images would show at their natural, tiny size: scale them up, with square pixels.
CSS = """
#upload img { min-height: 200px; object-fit: contain; image-rendering: pixelated; }
#model-view img { image-rendering: pixelated; }
"""


class BoundedBody:
    """ASGI middleware: a request whose body is larger than ``max_bytes`` is answered 413 before it is buffered.

    A declared ``Content-Length`` over the bound is refused unread; a body streamed without one (chunked) is counted
    as it arrives, and the request ends once it passes the bound. Outermost but for Starlette's error handler, so it
    sees every route Gradio serves (uploads, queue, API)."""

    def __init__(self, app, max_bytes: int = MAX_REQUEST_BYTES):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            return await self._refuse(send)
        received, started = 0, False

        async def counted():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge
            return message

        async def tracked(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except _TooLarge:
            if not started:
                await self._refuse(send)

    async def _refuse(self, send) -> None:
        body = f"Request body larger than {self.max_bytes:,} bytes; refused.".encode()
        headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    """Raised in the app's ``receive`` once a body passes the bound: ends the app's reading of it."""


def bounded_app_kwargs(app_kwargs: dict | None = None) -> dict:
    """Gradio's ``launch(app_kwargs=...)`` (the FastAPI app's arguments) with :class:`BoundedBody` added."""
    from starlette.middleware import Middleware

    app_kwargs = dict(app_kwargs or {})
    app_kwargs["middleware"] = [*app_kwargs.get("middleware", []), Middleware(BoundedBody)]
    return app_kwargs


def launch(
    app,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    share: bool = False,
    allowed_paths: list[str] | None = None,
    **kwargs,
):
    """Serve ``app``; uploads above :data:`MAX_UPLOAD` are refused by Gradio itself, and any request body above
    :data:`MAX_REQUEST_BYTES` by :class:`BoundedBody`."""
    return app.launch(
        server_name=host,
        server_port=port,
        share=share,
        max_file_size=MAX_UPLOAD,
        allowed_paths=allowed_paths,
        show_error=True,
        css=CSS,
        app_kwargs=bounded_app_kwargs(kwargs.pop("app_kwargs", None)),
        **kwargs,
    )


def main_space(model_ref: str) -> None:
    """What a Space's ``app.py`` runs: Spaces set the host and port through ``GRADIO_SERVER_NAME``/``_PORT``."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    folder = Path(__file__).resolve().parents[2] / "examples"  # the Space repo: app.py, examples/, hf_fmnist/
    app = build_app(model_ref, examples_dir=folder)
    app.launch(
        max_file_size=MAX_UPLOAD,
        allowed_paths=[str(folder)],
        show_error=True,
        css=CSS,
        app_kwargs=bounded_app_kwargs(),
    )


__all__ = ["Classifier", "build_app", "launch", "main_space", "photo_to_fmnist", "write_examples"]
