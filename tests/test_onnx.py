"""`hf-fmnist export --format onnx`: parity with PyTorch on the real test split, a file any onnxruntime loads, and
nothing left behind when verification fails."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_demo import tiny_model

from hf_fmnist.errors import HfFmnistError
from hf_fmnist.inference import onnx as onnx_export

from conftest import real_data

ort = pytest.importorskip("onnxruntime", reason="needs the 'onnx' extra")
pytestmark = real_data  # the export verifies on the real test split


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, str]:
    """A CNN preset exported with the command line, into its own folder; and what the command printed."""
    from hf_fmnist.cli import main

    folder = tiny_model(tmp_path_factory.mktemp("onnx") / "cnn")
    (folder / "README.md").write_text("# cnn\n")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["export", "--model", str(folder), "--format", "onnx"]) == 0
    return folder, printed.getvalue()


def pytorch_and_inputs(folder: Path, count: int | None = None):
    """The real test images through the model's own preprocessing, and PyTorch's logits for them."""
    import torch
    from transformers import AutoModelForImageClassification

    from hf_fmnist.core.loader import Preprocess
    from hf_fmnist.core.models import load_image_processor
    from hf_fmnist.data.tensors import load_tensors

    model = AutoModelForImageClassification.from_pretrained(folder, trust_remote_code=False).eval()
    preprocess = Preprocess.from_processor(load_image_processor(str(folder)), model.config.num_channels)
    images, _ = load_tensors("test")
    pixels = torch.cat([preprocess(images[i : i + 1000]).contiguous() for i in range(0, len(images[:count]), 1000)])
    with torch.inference_mode():
        logits = torch.cat([model(pixel_values=pixels[i : i + 1000]).logits for i in range(0, len(pixels), 1000)])
    return pixels.numpy(), logits.numpy()


def test_export_matches_pytorch_on_the_whole_test_split(exported):
    """Our own check, independent of the exporter's: same top-1 class on >= 99.9% of the 10,000 test images."""
    exported, out = exported
    assert "on 10,000 test images: top-1 agreement" in out and "max |logit diff|" in out and "Wrote" in out
    pixels, expected = pytorch_and_inputs(exported)
    assert len(pixels) == 10_000
    session = ort.InferenceSession(str(exported / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
    got = np.concatenate(
        [session.run(["logits"], {"pixel_values": pixels[i : i + 1000]})[0] for i in range(0, len(pixels), 1000)]
    )
    assert (got.argmax(1) != expected.argmax(1)).sum() <= 10  # images of 10,000 (99.9% agree)
    assert np.abs(got - expected).max() < 1e-4
    assert sorted(p.name for p in (exported / "onnx").iterdir()) == ["model.onnx"]  # no temp files left


@pytest.mark.parametrize("preset", ["cnn", "vit", "pvt"])
def test_each_preset_loads_in_onnxruntime_from_a_clean_process(preset, tmp_path):
    """A process with onnxruntime and numpy only (no torch, no hf_fmnist) loads the file, finds `pixel_values` and
    `logits`, runs two batch sizes (dynamic batch) and gets PyTorch's logits. --output gives the transformers.js /
    Optimum layout: onnx/model.onnx next to config.json and preprocessor_config.json."""
    model_dir = tiny_model(tmp_path / preset, preset)
    out = tmp_path / f"{preset}-onnx"
    onnx_export.export_onnx(model_dir, out, max_samples=200, log=lambda message: None)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "config.json",
        "onnx/model.onnx",
        "preprocessor_config.json",
    ]
    pixels, logits = pytorch_and_inputs(model_dir, count=10)
    np.save(tmp_path / "pixels.npy", pixels)
    np.save(tmp_path / "logits.npy", logits)
    script = f"""
import json, sys
import numpy as np, onnxruntime as ort
session = ort.InferenceSession({str(out / "onnx" / "model.onnx")!r}, providers=["CPUExecutionProvider"])
pixels, logits = np.load({str(tmp_path / "pixels.npy")!r}), np.load({str(tmp_path / "logits.npy")!r})
inputs, outputs = session.get_inputs(), session.get_outputs()
diffs = [float(np.abs(session.run(["logits"], {{"pixel_values": pixels[:n]}})[0] - logits[:n]).max()) for n in (3, 7)]
print(json.dumps({{"inputs": [i.name for i in inputs], "outputs": [o.name for o in outputs],
                  "batch": inputs[0].shape[0], "diffs": diffs, "torch": "torch" in sys.modules}}))
"""
    run = subprocess.run([sys.executable, "-I", "-c", script], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["inputs"] == ["pixel_values"] and report["outputs"] == ["logits"]
    assert isinstance(report["batch"], str) and not report["torch"]  # a named, dynamic batch dimension
    assert max(report["diffs"]) < 1e-4


def test_failed_verification_leaves_no_file(tmp_path, monkeypatch):
    """An export whose graph computes something else (here: another model's weights) is refused, and neither
    onnx/model.onnx nor a temp file remains."""
    import torch

    model_dir = tiny_model(tmp_path / "cnn")
    real_export = onnx_export._export_graph

    def wrong_graph(model, path, channels, size):
        other = copy.deepcopy(model)
        with torch.no_grad():
            for parameter in other.parameters():
                parameter.add_(torch.randn_like(parameter) * 0.5)
        real_export(other, path, channels, size)

    monkeypatch.setattr(onnx_export, "_export_graph", wrong_graph)
    with pytest.raises(HfFmnistError, match="agrees with PyTorch on only"):
        onnx_export.export_onnx(model_dir, max_samples=300, log=lambda message: None)
    assert not (model_dir / "onnx").exists()
    with pytest.raises(HfFmnistError, match="agrees with PyTorch on only"):  # nor a half-filled --output folder
        onnx_export.export_onnx(model_dir, tmp_path / "out", max_samples=300, log=lambda message: None)
    assert not (tmp_path / "out").exists()


def test_sigterm_during_the_export_leaves_no_temp_folder(tmp_path, monkeypatch, capsys):
    """Before: SIGTERM (timeout, kill, a scheduler) ended the process at once and the export's hidden .export-*
    folder, with a model.onnx in it, stayed behind. Now the command's own cleanup runs, and it says so."""
    import signal

    from hf_fmnist import cli

    model_dir = tiny_model(tmp_path / "cnn")

    def verify(*args, **kwargs):
        signal.raise_signal(signal.SIGTERM)  # arrives while the graph is being checked
        raise AssertionError("SIGTERM should have stopped the export")

    monkeypatch.setattr(onnx_export, "verify", verify)
    assert cli.main(["export", "--model", str(model_dir)]) == 143
    assert "terminated (SIGTERM)" in capsys.readouterr().err
    assert not (model_dir / "onnx").exists()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # put back for whatever runs next in the process


def test_a_model_onnx_we_did_not_write_is_not_replaced(tmp_path):
    model_dir = tiny_model(tmp_path / "cnn")
    (model_dir / "onnx").mkdir()
    (model_dir / "onnx" / "model.onnx").write_bytes(b"someone else's model")
    with pytest.raises(HfFmnistError, match="not written by `hf-fmnist export`"):
        onnx_export.export_onnx(model_dir, max_samples=10, log=lambda message: None)
    assert (model_dir / "onnx" / "model.onnx").read_bytes() == b"someone else's model"


def test_push_model_selects_the_onnx_folder(exported, tmp_path):
    """Catches push-model's file selection (MODEL_IGNORE, MODEL_FILES) dropping onnx/model.onnx, or publishing the
    exporter's temp folders. (push_model itself needs a trained folder to render its card.)"""
    from hf_fmnist.hub.files import MODEL_FILES, MODEL_IGNORE, gather

    exported, _ = exported
    (exported / "onnx" / ".export-0000").mkdir()
    (exported / "onnx" / ".export-0000" / "model.onnx").write_bytes(b"half-written")
    try:
        selected = gather(exported, tmp_path / "snapshot", ignore=MODEL_IGNORE, include=MODEL_FILES)
    finally:
        (exported / "onnx" / ".export-0000" / "model.onnx").unlink()
        (exported / "onnx" / ".export-0000").rmdir()
    assert [p for p in selected if p.startswith("onnx/")] == ["onnx/model.onnx"]
