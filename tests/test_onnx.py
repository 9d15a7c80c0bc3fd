"""`hf-fmnist export --format onnx`: parity with PyTorch on the real test split, a file any onnxruntime loads, and
nothing left behind when verification fails."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_demo import tiny_model

from hf_fmnist.errors import HfFmnistError
from hf_fmnist.inference import onnx as onnx_export

from conftest import one_error_line, real_data

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


def run_all(session, pixels: np.ndarray) -> np.ndarray:
    return np.concatenate(
        [session.run(["logits"], {"pixel_values": pixels[i : i + 1000]})[0] for i in range(0, len(pixels), 1000)]
    )


def test_export_matches_pytorch_on_the_whole_test_split(exported):
    """Our own check, independent of the exporter's: same top-1 class on >= 9,990 of the 10,000 test images for
    model.onnx; the int8 and fp16 files lose at most 30 and 5 images of accuracy against PyTorch; and the record's
    counts are exactly the ones recomputed here (a record that copied the wrong file's numbers fails)."""
    from hf_fmnist.core.export_record import read_record
    from hf_fmnist.data.tensors import load_tensors

    exported, out = exported
    assert "on 10,000 test images" in out and "max |logit diff|" in out and "Wrote" in out
    pixels, expected = pytorch_and_inputs(exported)
    labels = load_tensors("test")[1].numpy()
    assert len(pixels) == 10_000
    record = read_record(exported)
    assert record["images"] == 10_000 and record["pytorch_correct"] == int((expected.argmax(1) == labels).sum())
    got = {}
    for dtype, name in [("fp32", "model.onnx"), ("int8", "model_quantized.onnx"), ("fp16", "model_fp16.onnx")]:
        session = ort.InferenceSession(str(exported / "onnx" / name), providers=["CPUExecutionProvider"])
        # transformers.js feeds float32 pixel_values for every dtype and reads float32 logits
        assert [(i.name, i.type) for i in session.get_inputs()] == [("pixel_values", "tensor(float)")]
        assert [(o.name, o.type) for o in session.get_outputs()] == [("logits", "tensor(float)")]
        got[dtype] = run_all(session, pixels).argmax(1)
        assert record["dtypes"][dtype]["correct"] == int((got[dtype] == labels).sum())
        assert record["dtypes"][dtype]["file"] == name
    for dtype in got:
        assert record["dtypes"][dtype]["agree_fp32"] == int((got[dtype] == got["fp32"]).sum())
    assert (got["fp32"] == expected.argmax(1)).sum() >= 9_990
    pytorch_correct = int((expected.argmax(1) == labels).sum())
    assert pytorch_correct - record["dtypes"]["int8"]["correct"] <= 30
    assert pytorch_correct - record["dtypes"]["fp16"]["correct"] <= 5
    assert sorted(p.name for p in (exported / "onnx").iterdir()) == [
        "export.json",
        "model.onnx",
        "model_fp16.onnx",
        "model_quantized.onnx",
    ]  # no temp files left
    assert not list(exported.glob(".onnx-*"))


def test_the_int8_file_is_quantised_and_the_fp16_file_is_half_precision(exported):
    """Catches an "int8" file that is the fp32 graph renamed (quantize_dynamic on a conv net, or no quantisation),
    and an "fp16" file whose weights stayed float32."""
    import onnx

    exported, _ = exported
    int8 = onnx.load(str(exported / "onnx" / "model_quantized.onnx"))
    ops = [node.op_type for node in int8.graph.node]
    assert ops.count("QuantizeLinear") > 0 and ops.count("DequantizeLinear") > ops.count("QuantizeLinear")
    conv_weights = {node.input[1] for node in int8.graph.node if node.op_type == "Conv"}
    dequantized = {node.output[0]: node.input[0] for node in int8.graph.node if node.op_type == "DequantizeLinear"}
    int8_initializers = {t.name for t in int8.graph.initializer if t.data_type == onnx.TensorProto.INT8}
    assert conv_weights and all(dequantized.get(w) in int8_initializers for w in conv_weights)
    fp16 = onnx.load(str(exported / "onnx" / "model_fp16.onnx"))
    kinds = {t.data_type for t in fp16.graph.initializer if len(t.dims) > 1}
    assert kinds == {onnx.TensorProto.FLOAT16}


@pytest.mark.parametrize("preset", ["cnn", "vit", "pvt"])
def test_each_preset_loads_in_onnxruntime_from_a_clean_process(preset, tmp_path):
    """A process with onnxruntime and numpy only (no torch, no hf_fmnist) loads the file, finds `pixel_values` and
    `logits`, runs two batch sizes (dynamic batch) and gets PyTorch's logits. --output gives the transformers.js /
    Optimum layout: onnx/model.onnx next to config.json and preprocessor_config.json."""
    model_dir = tiny_model(tmp_path / preset, preset)
    out = tmp_path / f"{preset}-onnx"
    onnx_export.export_onnx(model_dir, out, max_samples=200, dtypes=("fp32",), log=lambda message: None)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "config.json",
        "onnx/export.json",
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


def in_the_child(monkeypatch, tmp_path, code: str) -> None:
    """Run ``code`` at the start of the export's child process (a ``sitecustomize`` on its PYTHONPATH): the
    conversion runs there, out of reach of an in-process monkeypatch."""
    folder = tmp_path / "child-site"
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(code)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")])))


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".onnx-") or p.name == "onnx")


def test_failed_verification_leaves_no_file(tmp_path, monkeypatch):
    """An export whose graph computes something else (here: another model's weights) is refused, and neither
    onnx/ nor a temp folder remains, in the model folder or a new --output folder."""
    model_dir = tiny_model(tmp_path / "cnn")
    in_the_child(
        monkeypatch,
        tmp_path,
        """
import copy, torch
from hf_fmnist.inference import onnx_convert
real = onnx_convert.export_graph
def wrong_graph(model, path, channels, size):
    other = copy.deepcopy(model)
    with torch.no_grad():
        for parameter in other.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.5)
    real(other, path, channels, size)
onnx_convert.export_graph = wrong_graph
""",
    )
    with pytest.raises(HfFmnistError, match="agrees with PyTorch on only"):
        onnx_export.export_onnx(model_dir, max_samples=300, dtypes=("fp32",), log=lambda message: None)
    assert leftovers(model_dir) == []
    with pytest.raises(HfFmnistError, match="agrees with PyTorch on only"):  # nor a half-filled --output folder
        onnx_export.export_onnx(model_dir, tmp_path / "out", max_samples=300, dtypes=("fp32",), log=print)
    assert not (tmp_path / "out").exists()


def test_a_failed_int8_calibration_is_one_line_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    """Issue 24, item 6: onnxruntime's calibrator failing (here its own "No data is collected.", what a calibration
    that saw no batch raises) is one line naming the way out, exit 2, no onnx/ and no temp folder; an earlier export
    there stays as it was."""
    from hf_fmnist.cli import main

    model_dir = tiny_model(tmp_path / "cnn")
    onnx_export.export_onnx(model_dir, max_samples=50, dtypes=("fp32",), log=lambda message: None)
    before = {p.name: p.read_bytes() for p in (model_dir / "onnx").iterdir()}
    in_the_child(
        monkeypatch,
        tmp_path,
        """
import onnxruntime.quantization as q
def fails(*args, **kwargs):
    raise ValueError("No data is collected.")
q.quantize_static = fails
""",
    )
    capsys.readouterr()
    assert main(["export", "--model", str(model_dir), "--max-test-images", "50"]) == 2
    line = one_error_line(capsys)
    assert "int8 calibration of the ONNX export failed (ValueError: No data is collected.)" in line
    assert "--dtypes fp32,fp16" in line
    assert {p.name: p.read_bytes() for p in (model_dir / "onnx").iterdir()} == before
    assert leftovers(model_dir) == ["onnx"]


def test_non_finite_weights_are_refused(tmp_path, capsys):
    """Before: all-NaN weights exported and reported "top-1 agreement 100.0000%" (NaN logits agree as class 0)."""
    import torch
    from safetensors.torch import load_file, save_file

    from hf_fmnist.cli import main

    model_dir = tiny_model(tmp_path / "cnn")
    weights = load_file(model_dir / "model.safetensors")
    name = next(k for k, v in weights.items() if v.is_floating_point() and v.numel() > 1)
    weights[name] = torch.full_like(weights[name], float("nan"))
    save_file(weights, model_dir / "model.safetensors", metadata={"format": "pt"})
    assert main(["export", "--model", str(model_dir), "--max-test-images", "20"]) == 2
    line = one_error_line(capsys)
    assert f"weight {name} holds {weights[name].numel():,} non-finite value(s)" in line
    assert leftovers(model_dir) == []


def test_a_nan_logit_is_a_disagreement_and_never_right():
    """The exporter's top-1: a row with a NaN (or inf) logit is class -1, so it matches neither PyTorch's class nor
    a label (numpy's argmax calls a NaN row the NaN's index: all-NaN rows "agreed" as class 0)."""
    from hf_fmnist.inference.onnx_convert import top1

    logits = np.array([[0.1, 0.9, 0.0], [np.nan, np.nan, np.nan], [0.0, np.inf, 0.0], [np.nan, 0.0, 1.0]])
    assert top1(logits).tolist() == [1, -1, -1, -1]
    assert int((top1(logits) == np.array([1, 0, 1, 2])).sum()) == 1


def test_export_passes_the_memory_gate_of_evaluate_and_predict(tmp_path, capsys):
    """Issue 27: a tiny ViT of image_size 1024 and patch_size 1 (a million tokens) ran in a native op for 15 minutes
    and ignored SIGTERM. It is refused from the memory budget, before any weight is read, in seconds."""
    import time

    from transformers import ViTConfig, ViTForImageClassification

    from hf_fmnist.cli import main
    from hf_fmnist.core.models import label_maps, preset_image_processor

    folder = tmp_path / "vit"
    id2label, label2id = label_maps()
    config = ViTConfig(image_size=1024, patch_size=1, hidden_size=8, num_hidden_layers=1, num_attention_heads=1)
    config.update({"intermediate_size": 8, "id2label": id2label, "label2id": label2id})
    ViTForImageClassification(config).save_pretrained(folder)
    processor = preset_image_processor()
    processor.size = {"height": 1024, "width": 1024}
    processor.save_pretrained(folder)
    capsys.readouterr()
    start = time.monotonic()
    assert main(["export", "--model", str(folder)]) == 2
    assert time.monotonic() - start < 30
    assert "One 3×1024×1024 input needs" in one_error_line(capsys)
    assert leftovers(folder) == []


@pytest.mark.parametrize("signal_name, status", [("SIGTERM", 143), ("SIGINT", 130)])
def test_a_signal_during_the_conversion_ends_export_within_seconds(tmp_path, signal_name, status):
    """Issue 27: SIGTERM (and Ctrl-C) during the native work end `hf-fmnist export` within 10 s with exit 143 (130),
    the temp folder removed and the conversion's child process gone. The signal is sent once the child has written
    model.onnx: quantisation or verification is running."""
    import signal
    import time

    model_dir = tiny_model(tmp_path / "cnn")
    process = subprocess.Popen(
        [sys.executable, "-m", "hf_fmnist.cli", "export", "--model", str(model_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # Ctrl-C reaches the terminal's whole process group: so does our SIGINT
    )
    deadline = time.monotonic() + 240
    while not list(model_dir.glob(".onnx-*/model.onnx")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    staging = list(model_dir.glob(".onnx-*"))
    assert process.poll() is None and staging, process.communicate()
    children = [p for p in Path("/proc").iterdir() if p.name.isdigit() and str(staging[0]).encode() in _cmdline(p)]
    assert children  # the conversion runs in its own process
    sent = time.monotonic()
    os.killpg(process.pid, getattr(signal, signal_name))
    _, err = process.communicate(timeout=60)
    assert time.monotonic() - sent < 10
    assert process.returncode == status, err
    assert "Traceback" not in err
    assert leftovers(model_dir) == []
    time.sleep(0.5)
    assert not [p for p in children if p.exists() and _cmdline(p)]


def _cmdline(proc: Path) -> bytes:
    try:
        return (proc / "cmdline").read_bytes()
    except OSError:
        return b""


def test_a_stale_onnx_folder_is_refused_by_push_and_replaced_whole_by_export(tmp_path, capsys):
    """Issue 24, item 6: after training again into a folder, its onnx/ holds the older model's export. push-model
    refuses it in one line (it would be published as this model's), and the next export replaces the whole folder:
    none of the older files (here its fp16 file) survives next to the new model.onnx."""
    from hf_fmnist.core.export_record import check_current, read_record

    model_dir = tiny_model(tmp_path / "cnn")
    onnx_export.export_onnx(model_dir, max_samples=50, dtypes=("fp32", "fp16"), log=lambda message: None)
    old = read_record(model_dir)
    assert check_current(model_dir) == old
    import torch

    from hf_fmnist.core.models import create_model

    torch.manual_seed(1)
    create_model("cnn").save_pretrained(model_dir)  # trained again: other weights
    with pytest.raises(HfFmnistError, match="was exported from another model than this model.safetensors"):
        check_current(model_dir)
    printed = []
    onnx_export.export_onnx(model_dir, max_samples=50, dtypes=("fp32",), log=printed.append)
    assert any("which an older model's export left" in line for line in printed)
    assert sorted(p.name for p in (model_dir / "onnx").iterdir()) == ["export.json", "model.onnx"]
    assert check_current(model_dir)["weights_sha256"] != old["weights_sha256"]
    (model_dir / "onnx" / "export.json").unlink()  # an export by an older hf_fmnist: no record
    with pytest.raises(HfFmnistError, match="has no export record"):
        check_current(model_dir)


def test_a_file_we_did_not_write_in_onnx_is_not_replaced(tmp_path):
    model_dir = tiny_model(tmp_path / "cnn")
    (model_dir / "onnx").mkdir()
    (model_dir / "onnx" / "model.onnx").write_bytes(b"someone else's model")
    with pytest.raises(HfFmnistError, match="not written by `hf-fmnist export`"):
        onnx_export.export_onnx(model_dir, max_samples=10, log=lambda message: None)
    assert (model_dir / "onnx" / "model.onnx").read_bytes() == b"someone else's model"
    (model_dir / "onnx" / "model.onnx").unlink()
    (model_dir / "onnx" / "notes.txt").write_text("mine")  # the whole folder is swapped: this would be lost
    with pytest.raises(HfFmnistError, match="notes.txt was not written by `hf-fmnist export`"):
        onnx_export.export_onnx(model_dir, max_samples=10, log=lambda message: None)
    assert (model_dir / "onnx" / "notes.txt").read_text() == "mine"


def test_push_model_selects_the_onnx_folder(exported, tmp_path):
    """Catches push-model's file selection (MODEL_IGNORE, MODEL_FILES) dropping an exported file, or publishing
    the exporter's temp folders."""
    from hf_fmnist.hub.files import MODEL_FILES, MODEL_IGNORE, gather

    exported, _ = exported
    (exported / ".onnx-0000.tmp").mkdir()
    (exported / ".onnx-0000.tmp" / "model.onnx").write_bytes(b"half-written")
    try:
        selected = gather(exported, tmp_path / "snapshot", ignore=MODEL_IGNORE, include=MODEL_FILES)
    finally:
        (exported / ".onnx-0000.tmp" / "model.onnx").unlink()
        (exported / ".onnx-0000.tmp").rmdir()
    assert [p for p in selected if p.startswith("onnx/")] == [
        "onnx/export.json",
        "onnx/model.onnx",
        "onnx/model_fp16.onnx",
        "onnx/model_quantized.onnx",
    ]


def test_push_model_publishes_the_export_and_its_card_and_refuses_a_stale_one(tmp_path, hub, monkeypatch):
    """A trained folder, exported, pushed to the loopback Hub: all three ONNX files and the record are uploaded, the
    card lists each file with the record's counts and tags onnx and transformers.js. Training again into the folder
    leaves the older onnx/: push-model refuses it in one line, before creating anything. (The accuracy limits are
    lifted here: a few steps on synthetic images make a model near chance on the real test images, where int8 may
    lose an image; the limits have tests of their own.)"""
    import yaml

    from hf_fmnist.hub import push as publish
    from hf_fmnist.training.loop import main as train_main

    from conftest import synthetic_export, tiny_train_args, unique_repo

    dataset = str(synthetic_export(tmp_path / "data", sizes=(64, 20)))
    out = tmp_path / "out"
    with contextlib.redirect_stdout(io.StringIO()):
        assert train_main(tiny_train_args(out, dataset)) == 0
    monkeypatch.setattr(onnx_export, "MAX_LOSS", {"int8": 10_000, "fp16": 10_000})
    record = onnx_export.export_onnx(out, max_samples=100, log=lambda line: None)
    repo = unique_repo("onnx")
    publish.push_model(repo, out, log=lambda line: None)
    remote = hub.state.files("model", repo)
    for name in ("model.onnx", "model_quantized.onnx", "model_fp16.onnx", "export.json"):
        assert remote[f"onnx/{name}"] == (out / "onnx" / name).read_bytes()
    card = remote["README.md"].decode()
    tags = yaml.safe_load(card.split("---\n")[1])["tags"]
    assert "onnx" in tags and "transformers.js" in tags
    int8 = record["dtypes"]["int8"]
    assert '| `onnx/model_quantized.onnx` | int8 | "q8" (the browser\'s default) | ' in card
    assert f"({int8['correct']:,} of 100) | {int8['agree_fp32']:,} of 100 |" in card
    assert f'pipeline("image-classification", "{repo}")' in card

    with contextlib.redirect_stdout(io.StringIO()):
        assert train_main([*tiny_train_args(out, dataset, "--seed", "7"), "--overwrite_output_dir"]) == 0
    stale = unique_repo("stale")
    with pytest.raises(HfFmnistError, match="was exported from another model than this model.safetensors"):
        publish.push_model(stale, out, log=lambda line: None)
    assert ("model", stale) not in hub.state.repos


def test_export_for_the_browser_refuses_a_type_transformers_js_lacks_before_any_work(tmp_path, capsys):
    """Issue 24.6: the RegNet cnn and PVTv2 pvt presets export and verify in onnxruntime, then fail in
    transformers.js with "Unsupported model type". Asked to check for the browser, export says so first and writes
    nothing. Each type transformers.js runs passes the same check."""
    from hf_fmnist.cli import main
    from hf_fmnist.inference.onnx import check_transformers_js

    for preset, model_type in (("cnn", "regnet"), ("pvt", "pvt_v2")):
        model_dir = tiny_model(tmp_path / preset, preset)
        assert main(["export", "--model", str(model_dir), "--for-browser"]) == 2
        line = one_error_line(capsys)
        assert f"is a {model_type} model, which transformers.js 4.3.1 cannot run" in line
        assert "--for-browser" in line and leftovers(model_dir) == []
    for preset in ("resnet", "convnext", "vit", "pvt1"):
        check_transformers_js(str(tiny_model(tmp_path / preset, preset)))  # no refusal
