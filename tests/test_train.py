"""Training: tiny CPU runs of every preset, fine-tuning, outputs that stock transformers loads, resume, 2 processes."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import real_data
from hf_fmnist import models
from hf_fmnist.config import TrainConfig
from hf_fmnist.errors import HfFmnistError
from hf_fmnist.train import find_checkpoints, train

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    """An exported folder of 256 train / 100 test images with learnable structure (class = brightness band)."""
    from conftest import Synthetic
    from hf_fmnist.dataset_export import export

    folder = tmp_path_factory.mktemp("tiny")
    synthetic = Synthetic(folder / "raw", sizes=(256, 100))
    return str(export(folder / "export", data_dir=synthetic.folder, verify=False))


def _config(tmp_path, dataset, **overrides) -> TrainConfig:
    base = dict(output_dir=str(tmp_path / "out"), dataset=dataset, num_train_epochs=2,
                per_device_train_batch_size=32, per_device_eval_batch_size=64)
    return TrainConfig(**{**base, **overrides})


@pytest.mark.parametrize("preset", list(models.PRESETS))
def test_every_preset_trains_and_saves_a_loadable_model(preset, tmp_path, tiny_dataset):
    results = train(_config(tmp_path, tiny_dataset, model_name_or_path=preset))
    out = tmp_path / "out"
    for name in ("model.safetensors", "config.json", "preprocessor_config.json", "all_results.json", "README.md",
                 "training_config.json", "learning_curves.png", "confusion_matrix.png", "predictions.png"):
        assert (out / name).is_file(), name
    saved = json.loads((out / "all_results.json").read_text())
    assert saved["eval_samples"] == 100 and saved["num_processes"] == 1
    assert saved["eval_accuracy"] == results["eval_accuracy"]
    assert len(saved["eval_confusion_matrix"]) == 10 and sum(map(sum, saved["eval_confusion_matrix"])) == 100
    for key in ("eval_top5_accuracy", "eval_macro_f1", "eval_per_class_accuracy", "train_runtime",
                "train_samples_per_second"):
        assert key in saved
    card = (out / "README.md").read_text()
    assert "model-index" in card and "pipeline_tag: image-classification" in card
    assert "library_name: transformers" in card


def test_pipeline_on_pil_images_agrees_with_all_results(tmp_path, tiny_dataset):
    """What a user gets from a stock pipeline on PIL images equals what training measured."""
    import datasets
    from transformers import pipeline

    train(_config(tmp_path, tiny_dataset))
    out = tmp_path / "out"
    test = datasets.load_dataset(tiny_dataset)["test"]
    classify = pipeline("image-classification", model=str(out), device="cpu")
    predictions = [p[0]["label"] for p in classify([row["image"] for row in test], top_k=1)]
    names = test.features["label"].names
    accuracy = np.mean([names[label] == p for label, p in zip(test["label"], predictions)])
    saved = json.loads((out / "all_results.json").read_text())
    assert accuracy == pytest.approx(saved["eval_accuracy"], abs=1e-9)
    config = json.loads((out / "preprocessor_config.json").read_text())
    assert config["do_convert_rgb"] is True and config["size"] == {"height": 28, "width": 28}
    assert config["image_mean"] == pytest.approx([0.2860] * 3)


def test_fine_tune_from_a_local_checkpoint(tmp_path, tiny_dataset):
    """A randomly initialised 3-class checkpoint gets a fresh 10-class head with our labels."""
    from transformers import RegNetConfig, RegNetForImageClassification

    ckpt = tmp_path / "ckpt"
    base = RegNetForImageClassification(RegNetConfig(
        num_channels=3, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=3,
        id2label={0: "a", 1: "b", 2: "c"}, label2id={"a": 0, "b": 1, "c": 2}))
    base.save_pretrained(ckpt)
    models.preset_image_processor().save_pretrained(ckpt)
    with pytest.raises(HfFmnistError, match="--ignore_mismatched_sizes"):
        train(_config(tmp_path, tiny_dataset, model_name_or_path=str(ckpt)))
    train(_config(tmp_path, tiny_dataset, model_name_or_path=str(ckpt), ignore_mismatched_sizes=True))
    saved = json.loads((tmp_path / "out" / "config.json").read_text())
    assert saved["id2label"]["9"] == "Ankle boot" and saved["hidden_sizes"] == [8, 16]


def test_config_is_the_cli_and_is_saved(tmp_path, tiny_dataset):
    cfg = TrainConfig.from_args(["--output_dir", str(tmp_path / "o"), "--learning_rate", "0.01", "--no-hflip"])
    assert cfg.learning_rate == 0.01 and cfg.hflip is False
    with pytest.raises(Exception):
        cfg.learning_rate = 1  # frozen
    with pytest.raises(HfFmnistError, match="--checkpointing_steps must be a positive integer or 'epoch'"):
        TrainConfig(output_dir="o", checkpointing_steps="often")
    with pytest.raises(HfFmnistError, match="--lr_scheduler_type 'warp' is not one of"):
        TrainConfig(output_dir="o", lr_scheduler_type="warp")


def test_help_shows_defaults_and_units():
    result = subprocess.run([sys.executable, str(ROOT / "train.py"), "--help"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0
    assert "--per_device_train_batch_size" in result.stdout and "--resume_from_checkpoint" in result.stdout
    assert "default: 42" in result.stdout and "images per process" in result.stdout


def _run_train(args, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args], env=env, **kwargs)


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


def test_resume_after_kill_is_bit_exact(tmp_path, tiny_dataset):
    common = ["--dataset", tiny_dataset, "--num_train_epochs", "4", "--per_device_train_batch_size", "32",
              "--checkpointing_steps", "4", "--per_device_eval_batch_size", "64"]
    reference = _run_train(["--output_dir", str(tmp_path / "ref"), *common])
    assert reference.wait(timeout=300) == 0
    victim = _run_train(["--output_dir", str(tmp_path / "run"), *common], stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and len(find_checkpoints(tmp_path / "run")) < 2:
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    done = find_checkpoints(tmp_path / "run")
    assert done, "no checkpoint before the kill"
    assert not (tmp_path / "run" / "model.safetensors").exists(), "the run finished before it was killed"
    resumed = _run_train(["--output_dir", str(tmp_path / "run"), *common, "--resume_from_checkpoint", "latest"])
    assert resumed.wait(timeout=300) == 0
    ref, run = _weights(tmp_path / "ref"), _weights(tmp_path / "run")
    assert ref.keys() == run.keys()
    for name in ref:
        assert torch.equal(ref[name], run[name]), name
    history = json.loads((tmp_path / "run" / "all_results.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]


@real_data
def test_two_cpu_processes_really_run_and_evaluate_exactly(tmp_path):
    """torchrun with 2 processes on CPU: real data-parallel training, all 10,000 test images evaluated once."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    out = tmp_path / "ddp"
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(ROOT / "train.py"), "--output_dir", str(out), "--max_train_samples", "512", "--num_train_epochs", "1",
         "--per_device_train_batch_size", "64"],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    saved = json.loads((out / "all_results.json").read_text())
    assert saved["num_processes"] == 2
    assert saved["eval_samples"] == 10_000
    cm = np.asarray(saved["eval_confusion_matrix"])
    assert cm.sum() == 10_000 and (cm.sum(axis=1) == 1_000).all()  # each test image exactly once
    assert saved["train_steps"] == 4  # 512 images / (64 per process x 2 processes)
    assert result.stdout.count("epoch 1/1") == 1  # only the main process prints


def test_world_size_mismatch_is_refused(tmp_path, tiny_dataset, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")  # as if launched by torchrun, but nothing set up the process group
    with pytest.raises(HfFmnistError, match="WORLD_SIZE is 2 but .*torchrun --standalone --nproc_per_node 2"):
        train(_config(tmp_path, tiny_dataset))
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_tracking_writes_tensorboard_logs(tmp_path, tiny_dataset):
    train(_config(tmp_path, tiny_dataset, num_train_epochs=1, with_tracking=True))
    events = list((tmp_path / "out" / "runs").rglob("events.out.tfevents.*"))
    assert events, "no TensorBoard event file"
    assert json.loads((tmp_path / "out" / "training_config.json").read_text())["config"]["with_tracking"] is True


def test_loader_augmentation_matches_a_per_image_reference():
    """The one-gather flip + pad-and-crop and the lookup-table normalisation equal the obvious per-image code."""
    import torch.nn.functional as F

    from hf_fmnist.loader import DeviceLoader, Preprocess

    images = torch.randint(0, 256, (300, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    pre = Preprocess(channels=3, size=(28, 28), crop=None, mean=(0.2, 0.3, 0.4), std=(0.5, 0.6, 0.7))
    loader = DeviceLoader(images, torch.zeros(300, dtype=torch.long), batch_size=64, preprocess=pre, seed=1,
                          pad_crop=2, hflip=True)
    index = torch.arange(64) * 4
    got = loader.augment(index, loader._generator(0, 0, 0))
    g = loader._generator(0, 0, 0)  # the same draws, in the same order
    flip = torch.rand(64, generator=g) < 0.5
    dy, dx = torch.randint(0, 5, (64,), generator=g), torch.randint(0, 5, (64,), generator=g)
    for k, i in enumerate(index.tolist()):
        image = images[i].flip(-1) if flip[k] else images[i]
        expected = F.pad(image, (2, 2, 2, 2))[dy[k]:dy[k] + 28, dx[k]:dx[k] + 28]
        assert torch.equal(got[k], expected)
    x = pre(got)
    assert x.shape == (64, 3, 28, 28) and x.is_contiguous(memory_format=torch.channels_last)
    mean = torch.tensor(pre.mean).view(1, 3, 1, 1)
    std = torch.tensor(pre.std).view(1, 3, 1, 1)
    assert torch.equal(x, (got.unsqueeze(1).float().div(255) - mean) / std)
