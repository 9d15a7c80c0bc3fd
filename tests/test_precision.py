"""Mixed precision and torch.compile: tiny CPU runs (and the same on a GPU, marked ``gpu``), saved models are fp32 and
stock, evaluation is the fp32 model's, compiled runs save and resume without ``_orig_mod.`` prefixes."""

import json
from pathlib import Path

import pytest
import torch
from counts import correct_images

from hf_fmnist.core.config import TrainConfig
from hf_fmnist.errors import HfFmnistError
from hf_fmnist.training.loop import train

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="no CUDA device")


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    """256 train / 100 test images with learnable structure, exported as `hf-fmnist build` writes it."""
    from learnable import learnable_export

    return learnable_export(tmp_path_factory.mktemp("tiny"), sizes=(256, 100))


def _config(out: Path, dataset: str, **overrides) -> TrainConfig:
    base = dict(
        output_dir=str(out),
        dataset=dataset,
        recipe="cpu-5min",
        num_train_epochs=2,
        cpu_threads=1,
        per_device_train_batch_size=32,
        per_device_eval_batch_size=64,
    )
    return TrainConfig(**{**base, **overrides})


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


def _pipeline_correct(folder: Path, dataset: str, device) -> int:
    import datasets
    from transformers import pipeline

    test = datasets.load_dataset(dataset)["test"]
    classify = pipeline("image-classification", model=str(folder), device=device)
    names = test.features["label"].names
    predictions = [p[0]["label"] for p in classify([row["image"] for row in test], top_k=1)]
    return sum(names[label] == p for label, p in zip(test["label"], predictions))


def test_bf16_from_the_launcher_trains_and_saves_fp32_weights_that_the_pipeline_loads(
    tmp_path, tiny_dataset, monkeypatch
):
    """`accelerate launch --mixed_precision bf16` exports ACCELERATE_MIXED_PRECISION; the run must use it (weights
    differ from an fp32 run), still learn, save float32 weights, and publish the accuracy the fp32 pipeline gets."""
    train(_config(tmp_path / "fp32", tiny_dataset))
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    results = train(_config(tmp_path / "bf16", tiny_dataset))
    saved = json.loads((tmp_path / "bf16" / "training_config.json").read_text())
    assert saved["resolved"]["mixed_precision"] == "bf16" and saved["config"]["mixed_precision"] is None
    fp32, bf16 = _weights(tmp_path / "fp32"), _weights(tmp_path / "bf16")
    assert all(t.dtype == torch.float32 for t in bf16.values() if t.is_floating_point())
    assert not any(k.startswith("_orig_mod.") or k.startswith("module.") for k in bf16)
    assert any(not torch.equal(fp32[k], bf16[k]) for k in fp32), "bf16 autocast had no effect"
    assert correct_images(results) > 30  # of 100; chance is 10: it learned
    assert _pipeline_correct(tmp_path / "bf16", tiny_dataset, "cpu") == correct_images(results)


def test_evaluation_runs_the_fp32_model_even_under_autocast():
    """The printed and published accuracy is the saved fp32 model's: Accelerate's autocast wrapper is bypassed."""
    from accelerate import Accelerator

    from hf_fmnist.core.loader import DeviceLoader, Preprocess
    from hf_fmnist.core.models import create_model
    from hf_fmnist.inference.evaluate import evaluate_logits
    from hf_fmnist.training.accelerator import make_accelerator

    accelerator = make_accelerator(TrainConfig(output_dir="unused"), mixed_precision="bf16")
    assert isinstance(accelerator, Accelerator) and accelerator.mixed_precision == "bf16"
    torch.manual_seed(0)
    model = create_model("cnn").eval()
    images = torch.randint(0, 256, (40, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    pre = Preprocess(channels=3, size=(28, 28), crop=None, mean=(0.286,) * 3, std=(0.353,) * 3)
    loader = DeviceLoader(images, torch.zeros(40, dtype=torch.long), batch_size=16, preprocess=pre, train=False)
    with torch.inference_mode():
        reference = model(pixel_values=pre(images)).logits
    prepared = accelerator.prepare(model)
    with torch.inference_mode():
        autocast = prepared(pixel_values=pre(images)).logits
    assert not torch.equal(autocast, reference), "autocast changed nothing: the test would prove nothing"
    logits, _ = evaluate_logits(prepared, loader, accelerator)
    assert torch.equal(torch.from_numpy(logits), reference)


def test_fp16_on_cpu_is_one_clear_error(tmp_path, tiny_dataset):
    if CUDA:
        pytest.skip("fp16 is allowed on a GPU")
    with pytest.raises(HfFmnistError, match="fp16 needs a GPU"):
        train(_config(tmp_path / "out", tiny_dataset, mixed_precision="fp16"))


def _compile_and_resume(tmp_path: Path, dataset: str, **extra) -> tuple[dict, dict, Path, Path]:
    """A compiled run with a checkpoint at its first epoch's end, and a second run resumed from that checkpoint."""
    import shutil

    common = dict(torch_compile=True, num_train_epochs=2, max_train_samples=128, checkpointing_steps="4", **extra)
    full = train(_config(tmp_path / "full", dataset, **common))
    resumed_dir = tmp_path / "resumed"
    resumed = train(
        _config(
            resumed_dir,
            dataset,
            **common,
            resume_from_checkpoint=str(shutil.copytree(tmp_path / "full" / "step_4", tmp_path / "ckpt")),
        )
    )
    return full, resumed, tmp_path / "full", resumed_dir


def _assert_stock_compiled_output(folder: Path) -> dict[str, torch.Tensor]:
    from transformers import AutoModelForImageClassification

    assert json.loads((folder / "training_config.json").read_text())["resolved"]["torch_compile"] is True
    weights = _weights(folder)
    assert not any("_orig_mod" in k or k.startswith("module.") for k in weights), sorted(weights)[:3]
    AutoModelForImageClassification.from_pretrained(folder)  # the stock class loads it: every key matched
    return weights


@pytest.mark.slow
def test_torch_compile_saves_stock_weights_and_resumes_exactly(tmp_path, tiny_dataset):
    """--torch_compile: saved keys have no `_orig_mod.` prefix, checkpoints reload into a compiled model, and a resumed
    run ends bit-identical to an uninterrupted compiled run (on CPU, where kernels are deterministic)."""
    full, resumed, full_dir, resumed_dir = _compile_and_resume(tmp_path, tiny_dataset)
    a, b = _assert_stock_compiled_output(full_dir), _assert_stock_compiled_output(resumed_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["eval_accuracy"] == full["eval_accuracy"] and resumed["train_steps"] == 8


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_gpu_mixed_precision_trains_and_matches_the_pipeline(tmp_path, tiny_dataset, precision):
    results = train(_config(tmp_path / precision, tiny_dataset, mixed_precision=precision, num_train_epochs=3))
    resolved = json.loads((tmp_path / precision / "training_config.json").read_text())["resolved"]
    assert resolved["mixed_precision"] == precision and resolved["device"].startswith("cuda")
    assert correct_images(results) > 30  # of 100
    assert all(t.dtype == torch.float32 for t in _weights(tmp_path / precision).values() if t.is_floating_point())
    assert _pipeline_correct(tmp_path / precision, tiny_dataset, 0) == correct_images(results)


@pytest.mark.gpu
@needs_cuda
def test_gpu_compile_bf16_checkpoints_resume_and_save_stock_weights(tmp_path, tiny_dataset):
    """On CUDA, kernels need not be deterministic: the resumed run must finish all steps, close to the full run."""
    full, resumed, full_dir, resumed_dir = _compile_and_resume(tmp_path, tiny_dataset, mixed_precision="bf16")
    a, b = _assert_stock_compiled_output(full_dir), _assert_stock_compiled_output(resumed_dir)
    assert resumed["train_steps"] == 8 and [h["epoch"] for h in resumed["history"]] == [1, 2]
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=0.05, atol=0.05), k


def test_a_second_run_in_the_same_process_does_not_inherit_the_first_ones_precision():
    """Pins why make_accelerator calls Accelerate's private AcceleratorState._reset_state (no public API resets it):
    without it Accelerate refuses a second Accelerator with another precision ("already been initialized"), so a
    notebook or test that trains twice would fail or, with a matching request, silently keep the first settings."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    from hf_fmnist.training.accelerator import make_accelerator

    assert make_accelerator(TrainConfig(output_dir="unused"), mixed_precision="bf16").mixed_precision == "bf16"
    second = make_accelerator(TrainConfig(output_dir="unused"), mixed_precision="no")
    assert second.mixed_precision == "no" and AcceleratorState().mixed_precision == "no"
    with pytest.raises(ValueError, match="already been initialized"):  # process-wide: without a reset, refused
        Accelerator(cpu=True, mixed_precision="bf16")
    AcceleratorState._reset_state()
