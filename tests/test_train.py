"""Training: tiny CPU runs that must learn, fine-tuning, outputs stock transformers loads, resume, 2 processes."""

import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from counts import correct_images, images

from hf_fmnist.core import models
from hf_fmnist.core.config import TrainConfig
from hf_fmnist.errors import HfFmnistError
from hf_fmnist.training.loop import train

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    """An exported folder of 256 train / 100 test images, one texture or shape per class (conftest.Synthetic)."""
    from conftest import synthetic_export

    return str(synthetic_export(tmp_path_factory.mktemp("tiny"), sizes=(256, 100)))


def _config(tmp_path, dataset, **overrides) -> TrainConfig:
    base = dict(
        output_dir=str(tmp_path / "out"),
        dataset=dataset,
        num_train_epochs=2,
        per_device_train_batch_size=32,
        per_device_eval_batch_size=64,
    )
    return TrainConfig(**{**base, **overrides})


@pytest.fixture(scope="module")
def trained_cnn(tmp_path_factory, tiny_dataset) -> Path:
    """The CNN preset, 3 epochs of 8 steps, a checkpoint after each epoch (about 100% on the synthetic classes)."""
    folder = tmp_path_factory.mktemp("cnn")
    train(_config(folder, tiny_dataset, num_train_epochs=3, checkpointing_steps="epoch"))
    return folder / "out"


OUTPUT_FILES = (
    "model.safetensors",
    "config.json",
    "preprocessor_config.json",
    "all_results.json",
    "README.md",
    "training_config.json",
    "learning_curves.png",
    "confusion_matrix.png",
    "predictions.png",
)


def _check_output_folder(out: Path) -> dict:
    for name in OUTPUT_FILES:
        assert (out / name).is_file(), name
    saved = json.loads((out / "all_results.json").read_text())
    assert saved["eval_samples"] == 100 and saved["num_processes"] == 1
    assert len(saved["eval_confusion_matrix"]) == 10 and sum(map(sum, saved["eval_confusion_matrix"])) == 100
    for key in (
        "eval_top5_accuracy",
        "eval_macro_f1",
        "eval_per_class_accuracy",
        "train_runtime",
        "train_samples_per_second",
    ):
        assert key in saved
    card = (out / "README.md").read_text()
    assert "model-index" in card and "pipeline_tag: image-classification" in card
    assert "library_name: transformers" in card
    return saved


def test_cnn_learns_the_synthetic_classes(trained_cnn, tiny_dataset):
    """Far above chance (10%): images and labels stayed aligned through export, loader, training and evaluation."""
    import datasets

    saved = _check_output_folder(trained_cnn)
    assert saved["eval_samples"] == 100 and correct_images(saved) >= 90, saved["history"]
    assert images(saved["eval_top5_accuracy"], 100) >= 99
    assert saved["eval_macro_f1"] >= 0.9  # a mean of per-class F1 scores, not a share of images: no count exists
    assert [h["epoch"] for h in saved["history"]] == [1, 2, 3] and [h["step"] for h in saved["history"]] == [8, 16, 24]
    assert saved["train_steps"] == 24 and saved["train_samples"] == 256
    # the confusion matrix's rows are the true classes of the test split, in the dataset's order
    labels = datasets.load_dataset(tiny_dataset)["test"]["label"]
    assert np.asarray(saved["eval_confusion_matrix"]).sum(axis=1).tolist() == np.bincount(labels, minlength=10).tolist()


@pytest.mark.parametrize(
    "preset, class_name", [("vit", "ViTForImageClassification"), ("pvt", "PvtV2ForImageClassification")]
)
def test_transformer_presets_train_and_save_a_loadable_model(tmp_path, tiny_dataset, preset, class_name):
    results = train(_config(tmp_path, tiny_dataset, model_name_or_path=preset))
    saved = _check_output_folder(tmp_path / "out")
    assert saved["eval_accuracy"] == results["eval_accuracy"]
    assert correct_images(saved) >= 20  # of 100; 16 steps from scratch: above chance, far from done
    from transformers import AutoModelForImageClassification

    model = AutoModelForImageClassification.from_pretrained(tmp_path / "out", trust_remote_code=False)
    assert type(model).__name__ == class_name and model.config.id2label[9] == "Ankle boot"


def test_eval_last_epochs_evaluates_only_the_last_epochs_and_prints_every_epoch(tmp_path, tiny_dataset, capsys):
    """A recipe may skip the test split early on: the skipped epochs still print a line (without an accuracy, so no
    time-to-accuracy reader mistakes it), the history holds every epoch's loss but accuracy only where it was measured,
    and the final results are whole."""
    results = train(_config(tmp_path, tiny_dataset, num_train_epochs=3, eval_last_epochs=1))
    out = capsys.readouterr().out
    assert len(re.findall(r"epoch \d/3 .*test split evaluated after the last 1 epochs only", out)) == 2
    assert len(re.findall(r"epoch 3/3 .*test accuracy [\d.]+% \(100 images\)", out)) == 1
    assert "epoch 1/3" in out and out.count("test accuracy") == 1
    history = results["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3] and all(h["train_loss"] > 0 for h in history)
    assert [h["epoch"] for h in history if "eval_accuracy" in h] == [3] and results["eval_samples"] == 100
    assert (tmp_path / "out" / "learning_curves.png").is_file()


def test_pipeline_on_pil_images_agrees_with_all_results(trained_cnn, tiny_dataset):
    """What a user gets from a stock pipeline on PIL images equals what training measured."""
    import datasets
    from transformers import pipeline

    out = trained_cnn
    test = datasets.load_dataset(tiny_dataset)["test"]
    classify = pipeline("image-classification", trust_remote_code=False, model=str(out), device="cpu")
    predictions = [p[0]["label"] for p in classify([row["image"] for row in test], top_k=1)]
    names = test.features["label"].names
    correct = sum(names[label] == p for label, p in zip(test["label"], predictions))
    saved = json.loads((out / "all_results.json").read_text())
    assert correct == correct_images(saved) and correct >= 90  # of 100 test images
    config = json.loads((out / "preprocessor_config.json").read_text())
    assert config["do_convert_rgb"] is True and config["size"] == {"height": 28, "width": 28}
    assert config["image_mean"] == pytest.approx([0.2860] * 3)


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for name in wa:
        assert torch.equal(wa[name], wb[name]), name


def _complete_checkpoints(folder: Path) -> list[str]:
    """Checkpoint folders with their completion marker, by name."""
    return sorted(
        p.name
        for p in folder.iterdir()
        if p.is_dir() and (p / "trainer_state.json").is_file() and p.name.startswith(("step_", "epoch_"))
    )


def test_epoch_checkpoints_and_resume_from_an_explicit_folder(trained_cnn, tiny_dataset, tmp_path, capsys):
    """`--checkpointing_steps epoch` writes epoch_N; resuming from epoch_2 runs epoch 3 only, to the same weights."""
    assert _complete_checkpoints(trained_cnn) == ["epoch_1", "epoch_2", "epoch_3"]
    capsys.readouterr()
    checkpoint = trained_cnn / "epoch_2"
    train(_config(tmp_path, tiny_dataset, num_train_epochs=3, resume_from_checkpoint=str(checkpoint)))
    printed = capsys.readouterr().out
    assert f"Resumed from {checkpoint} at step 16" in printed
    assert re.findall(r"^epoch (\d+)/3  step (\d+)", printed, re.M) == [("3", "24")]  # only epoch 3 ran
    _assert_same_weights(trained_cnn, tmp_path / "out")
    saved = json.loads((tmp_path / "out" / "all_results.json").read_text())
    assert saved["train_steps"] == 24 and [h["epoch"] for h in saved["history"]] == [1, 2, 3]
    with pytest.raises(HfFmnistError, match="not a complete checkpoint"):
        train(_config(tmp_path, tiny_dataset, resume_from_checkpoint=str(tmp_path)))


def _tiny_vit_checkpoint(folder: Path) -> Path:
    """A small ViT with our labels: LayerNorm, no BatchNorm, no dropout, so a batch's gradient is the mean of its
    halves' gradients and gradient accumulation can be compared with one big batch."""
    from transformers import ViTConfig, ViTForImageClassification

    id2label, label2id = models.label_maps()
    torch.manual_seed(0)
    ViTForImageClassification(
        ViTConfig(
            image_size=28,
            patch_size=7,
            num_channels=3,
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            num_labels=10,
            id2label=id2label,
            label2id=label2id,
        )
    ).save_pretrained(folder)
    models.preset_image_processor().save_pretrained(folder)
    return folder


def test_gradient_accumulation_equals_the_big_batch(tmp_path, tiny_dataset):
    """2 micro-batches of 16 per optimizer step: the steps, images and weights of one batch of 32 per step."""
    ckpt = _tiny_vit_checkpoint(tmp_path / "vit")
    common = dict(model_name_or_path=str(ckpt), pad_crop=0, hflip=False, learning_rate=1e-3, num_train_epochs=1)
    big = train(_config(tmp_path / "big", tiny_dataset, per_device_train_batch_size=32, **common))
    accumulated = train(
        _config(tmp_path / "acc", tiny_dataset, per_device_train_batch_size=16, gradient_accumulation_steps=2, **common)
    )
    for results in (big, accumulated):
        assert results["train_steps"] == 8  # 256 images / 32 per optimizer step
        assert [h["step"] for h in results["history"]] == [8]
    resolved = json.loads((tmp_path / "acc" / "out" / "training_config.json").read_text())["resolved"]
    assert resolved["steps_per_epoch"] == 8 and resolved["max_train_steps"] == 8
    a, b = _weights(tmp_path / "big" / "out"), _weights(tmp_path / "acc" / "out")
    for name in a:  # the same arithmetic up to float rounding
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-5, msg=name)
    assert abs(correct_images(accumulated) - correct_images(big)) <= 2  # of 100 test images


def test_fine_tune_from_a_local_checkpoint(tmp_path, tiny_dataset):
    """A randomly initialised 3-class checkpoint gets a fresh 10-class head with our labels, and keeps its own
    image processor (size, crop, normalisation)."""
    from transformers import RegNetConfig, RegNetForImageClassification

    ckpt = tmp_path / "ckpt"
    base = RegNetForImageClassification(
        RegNetConfig(
            num_channels=3,
            embedding_size=8,
            hidden_sizes=[8, 16],
            depths=[1, 1],
            num_labels=3,
            id2label={0: "a", 1: "b", 2: "c"},
            label2id={"a": 0, "b": 1, "c": 2},
        )
    )
    base.save_pretrained(ckpt)
    _crop_processor().save_pretrained(ckpt)
    with pytest.raises(HfFmnistError, match="--ignore_mismatched_sizes"):
        train(_config(tmp_path, tiny_dataset, model_name_or_path=str(ckpt)))
    train(
        _config(tmp_path, tiny_dataset, model_name_or_path=str(ckpt), ignore_mismatched_sizes=True, num_train_epochs=1)
    )
    saved = json.loads((tmp_path / "out" / "config.json").read_text())
    assert saved["id2label"]["9"] == "Ankle boot" and saved["hidden_sizes"] == [8, 16]
    processor = json.loads((tmp_path / "out" / "preprocessor_config.json").read_text())
    assert processor["size"] == {"height": 36, "width": 36} and processor["crop_size"] == {"height": 32, "width": 32}
    assert processor["image_mean"] == [0.5, 0.4, 0.3] and processor["image_std"] == [0.2, 0.25, 0.3]


def _crop_processor():
    """A checkpoint's own processor: resize 28 -> 36, centre crop 32, its own per-channel normalisation."""
    from PIL import Image
    from transformers import DeiTImageProcessorPil

    return DeiTImageProcessorPil(
        do_convert_rgb=True,
        size={"height": 36, "width": 36},
        resample=Image.BILINEAR,
        do_center_crop=True,
        crop_size={"height": 32, "width": 32},
        image_mean=[0.5, 0.4, 0.3],
        image_std=[0.2, 0.25, 0.3],
    )


def test_preprocess_resize_and_centre_crop_match_the_processor_on_pil_images(tmp_path):
    """The tensor path training uses for a checkpoint's own processor equals that processor on PIL images."""
    from PIL import Image
    from transformers import AutoImageProcessor

    from hf_fmnist.core.loader import Preprocess

    _crop_processor().save_pretrained(tmp_path)
    processor = AutoImageProcessor.from_pretrained(tmp_path, trust_remote_code=False)  # as training loads it
    images = np.random.default_rng(0).integers(0, 256, (16, 28, 28), dtype=np.uint8)
    images[:, 10:18, :] = 255  # edges: a shifted crop or a missing resize changes many pixels
    pre = Preprocess.from_processor(processor, 3)
    assert (pre.size, pre.crop) == ((36, 36), (32, 32))
    got = pre(torch.tensor(images))
    expected = processor([Image.fromarray(i) for i in images], return_tensors="pt")["pixel_values"]
    assert got.shape == expected.shape == (16, 3, 32, 32)
    # PIL resizes 8-bit images in fixed point and rounds to 8 bits, the tensor path in float: within a grey level
    std = torch.tensor([0.2, 0.25, 0.3]).view(1, 3, 1, 1)
    assert ((got - expected).abs() * std).max() <= 1 / 255


def test_config_is_the_cli_and_is_saved(tmp_path, tiny_dataset):
    cfg = TrainConfig.from_args(["--output_dir", str(tmp_path / "o"), "--learning_rate", "0.01", "--no-hflip"])
    assert cfg.learning_rate == 0.01 and cfg.hflip is False
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.learning_rate = 1  # frozen
    with pytest.raises(HfFmnistError, match="--checkpointing_steps must be a positive integer or 'epoch'"):
        TrainConfig(output_dir="o", checkpointing_steps="often")
    with pytest.raises(HfFmnistError, match="--lr_scheduler_type 'warp' is not one of"):
        TrainConfig(output_dir="o", lr_scheduler_type="warp")


def test_help_shows_defaults_and_units():
    result = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0
    assert "--per_device_train_batch_size" in result.stdout and "--resume_from_checkpoint" in result.stdout
    assert "default: 42" in result.stdout and "images per process" in result.stdout


def _run_train(args, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args], env=env, **kwargs)


def _step_checkpoints(folder: Path) -> dict[int, Path]:
    return {
        int(name.removeprefix("step_")): folder / name
        for name in _complete_checkpoints(folder)
        if name.startswith("step_")
    }


def _plant_half_written_checkpoints(run: Path, newest: Path) -> None:
    """What a crash in the middle of a save can leave: the temp folder a checkpoint is assembled in, with truncated
    files, before trainer_state.json (written last) and the rename. It claims a later step than any complete one.
    (A step_N folder without trainer_state.json is never ours: saves are renamed into place whole; training refuses
    such a folder, see test_safety.py.)"""
    tmp = run / ".step_30.partial"
    shutil.copytree(newest, tmp)
    (tmp / "trainer_state.json").unlink()
    for f in tmp.rglob("*"):
        if f.is_file():
            f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def test_resume_after_kill_continues_from_the_newest_complete_checkpoint(tmp_path, tiny_dataset):
    """Killed with -9, resumed with `latest`: it continues at the newest complete checkpoint (half-written ones
    ignored), runs only the remaining steps, and ends bit-identical to an uninterrupted run."""
    common = [
        "--dataset",
        tiny_dataset,
        "--num_train_epochs",
        "4",
        "--per_device_train_batch_size",
        "32",
        "--checkpointing_steps",
        "4",
        "--per_device_eval_batch_size",
        "64",
    ]
    reference = _run_train(["--output_dir", str(tmp_path / "ref"), *common], stdout=subprocess.DEVNULL)
    assert reference.wait(timeout=300) == 0
    run = tmp_path / "run"
    victim = _run_train(["--output_dir", str(run), *common], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and len(_step_checkpoints(run) if run.is_dir() else {}) < 2:
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    done = _step_checkpoints(run)
    assert len(done) >= 2, "fewer than 2 checkpoints before the kill"
    assert not (run / "model.safetensors").exists(), "the run finished before it was killed"
    step = max(done)
    assert step < 30
    _plant_half_written_checkpoints(run, done[step])
    resumed = _run_train(
        ["--output_dir", str(run), *common, "--resume_from_checkpoint", "latest"], stdout=subprocess.PIPE, text=True
    )
    printed, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0
    assert f"Resumed from {done[step]} at step {step}" in printed
    # 8 steps per epoch: only the epochs not finished before the checkpoint run again, each to its own end
    first = step // 8 + 1
    ran = [(int(e), int(s)) for e, s in re.findall(r"^epoch (\d+)/4  step (\d+)", printed, re.M)]
    assert ran == [(e, 8 * e) for e in range(first, 5)], printed
    _assert_same_weights(tmp_path / "ref", run)
    saved = json.loads((run / "all_results.json").read_text())
    assert [h["epoch"] for h in saved["history"]] == [1, 2, 3, 4] and saved["train_steps"] == 32
    reference_results = json.loads((tmp_path / "ref" / "all_results.json").read_text())
    assert saved["eval_confusion_matrix"] == reference_results["eval_confusion_matrix"]


def test_two_processes_shard_training_keep_weights_equal_and_evaluate_every_image_once(tmp_path, tiny_dataset):
    """docs/training.md's `ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2` starts 2 CPU processes
    (plain `--cpu --num_processes 2` starts one): disjoint training shards, identical weights on both ranks, and an
    uneven evaluation (99 images, batches of 16, so one rank pads) equal to a one-process evaluation of the saved
    model. (torchrun is the launcher of tests/test_distributed.py.)"""
    from hf_fmnist.inference.evaluate import evaluate_model

    probe, out = tmp_path / "probe", tmp_path / "ddp"
    probe.mkdir()
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("accelerate")),
            *("launch", "--multi_gpu", "--num_processes", "2", str(ROOT / "tests" / "ddp_probe.py")),
            *("--output_dir", str(out), "--dataset", tiny_dataset, "--num_train_epochs", "2"),
            *("--per_device_train_batch_size", "24", "--max_eval_samples", "99", "--per_device_eval_batch_size", "16"),
        ],
        env={**os.environ, "ACCELERATE_USE_CPU": "1", "PYTHONUNBUFFERED": "1", "HF_FMNIST_PROBE_DIR": str(probe)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    saved = json.loads((out / "all_results.json").read_text())
    assert saved["num_processes"] == 2 and saved["eval_samples"] == 99
    assert saved["train_steps"] == 10  # 256 images // (24 x 2) = 5 steps per epoch, 2 epochs
    assert result.stdout.count("epoch 1/2") == 1  # only the main process prints
    ranks = [json.loads((probe / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["weights_sha256"] == ranks[1]["weights_sha256"]  # gradients were averaged across ranks
    for epoch in range(2):
        shards = [[i for batch in r["train_batches"][epoch * 5 : (epoch + 1) * 5] for i in batch] for r in ranks]
        assert all(len(shard) == len(set(shard)) == 120 for shard in shards)
        assert not set(shards[0]) & set(shards[1])  # no image trained twice in an epoch
        assert set(shards[0]) | set(shards[1]) <= set(range(256))
    assert ranks[0]["train_batches"][:5] != ranks[0]["train_batches"][5:]  # each epoch its own order
    alone = evaluate_model(str(out), tiny_dataset, output_dir=tmp_path / "eval", max_eval_samples=99)
    assert alone["eval_samples"] == 99
    assert alone["eval_confusion_matrix"] == saved["eval_confusion_matrix"]


def test_world_size_mismatch_is_refused(tmp_path, tiny_dataset, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")  # as if launched by torchrun, but nothing set up the process group
    with pytest.raises(HfFmnistError, match="WORLD_SIZE is 2 but .*torchrun --standalone --nproc_per_node 2"):
        train(_config(tmp_path, tiny_dataset))
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_tracking_logs_optimizer_steps_to_tensorboard_under_gradient_accumulation(tmp_path, tiny_dataset, monkeypatch):
    """2 micro-batches of 16 per optimizer step, 256 images, 1 epoch: 8 optimizer steps (16 micro-batches). The loss
    is logged every LOSS_EVERY (here 3) optimizer steps and the epoch's accuracy at its last step, as the history
    counts them; a micro-batch counter would log at other steps, or twice as many."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from hf_fmnist.training import loop

    monkeypatch.setattr(loop, "LOSS_EVERY", 3)
    config = dict(num_train_epochs=1, per_device_train_batch_size=16, gradient_accumulation_steps=2, with_tracking=True)
    results = train(_config(tmp_path, tiny_dataset, **config))
    assert json.loads((tmp_path / "out" / "training_config.json").read_text())["config"]["with_tracking"] is True
    assert results["train_steps"] == 8 and [h["step"] for h in results["history"]] == [8]
    scalars: dict[str, list] = {}
    event_files = list((tmp_path / "out" / "runs").rglob("events.out.tfevents.*"))
    assert event_files, "no TensorBoard event file"
    for event_file in event_files:
        events = EventAccumulator(str(event_file))
        events.Reload()
        for tag in events.Tags()["scalars"]:
            scalars.setdefault(tag, []).extend(events.Scalars(tag))
    assert [e.step for e in scalars["train/loss"]] == [3, 6] and [e.step for e in scalars["train/lr"]] == [3, 6]
    assert [(e.step, e.value) for e in scalars["eval/accuracy"]] == [
        (h["step"], float(np.float32(h["eval_accuracy"])))
        for h in results["history"]  # TensorBoard keeps float32
    ]


def test_loader_augmentation_matches_a_per_image_reference():
    """The one-gather flip + pad-and-crop and the lookup-table normalisation equal the obvious per-image code."""
    import torch.nn.functional as F

    from hf_fmnist.core.loader import DeviceLoader, Preprocess

    images = torch.randint(0, 256, (300, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    pre = Preprocess(channels=3, size=(28, 28), crop=None, mean=(0.2, 0.3, 0.4), std=(0.5, 0.6, 0.7))
    loader = DeviceLoader(
        images, torch.zeros(300, dtype=torch.long), batch_size=64, preprocess=pre, seed=1, pad_crop=2, hflip=True
    )
    index = torch.arange(64) * 4
    got = loader.augment(index, loader._generator(0, 0, 0))
    g = loader._generator(0, 0, 0)  # the same draws, in the same order
    flip = torch.rand(64, generator=g) < 0.5
    dy, dx = torch.randint(0, 5, (64,), generator=g), torch.randint(0, 5, (64,), generator=g)
    for k, i in enumerate(index.tolist()):
        image = images[i].flip(-1) if flip[k] else images[i]
        expected = F.pad(image, (2, 2, 2, 2))[dy[k] : dy[k] + 28, dx[k] : dx[k] + 28]
        assert torch.equal(got[k], expected)
    x = pre(got)
    assert x.shape == (64, 3, 28, 28) and x.is_contiguous(memory_format=torch.channels_last)
    mean = torch.tensor(pre.mean).view(1, 3, 1, 1)
    std = torch.tensor(pre.std).view(1, 3, 1, 1)
    assert torch.equal(x, (got.unsqueeze(1).float().div(255) - mean) / std)


def _numbered(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images whose pixels spell their own index (first pixel: high byte, second: low byte); labels index % 10."""
    images = torch.zeros(n, 28, 28, dtype=torch.uint8)
    images[:, 0, 0] = torch.arange(n) // 256
    images[:, 0, 1] = torch.arange(n) % 256
    return images, torch.arange(n) % 10


def _identity():
    from hf_fmnist.core.loader import Preprocess

    return Preprocess(channels=1, size=(28, 28), crop=None, mean=(0.0,), std=(1.0,))


def _index_of(x: torch.Tensor) -> torch.Tensor:
    pixels = (x[:, 0, 0, :2] * 255).round().long()
    return pixels[:, 0] * 256 + pixels[:, 1]


@pytest.mark.parametrize("n, batch, world", [(23, 4, 2), (999, 64, 2), (10, 4, 3), (5, 8, 2), (9, 4, 2)])
def test_eval_batches_cover_every_index_once_in_any_process_count(n, batch, world):
    from hf_fmnist.core.loader import DeviceLoader

    images, labels = _numbered(n)
    seen, counts = [], set()
    for rank in range(world):
        loader = DeviceLoader(
            images, labels, batch_size=batch, preprocess=_identity(), rank=rank, world=world, train=False
        )
        batches = list(loader.epoch(0))
        counts.add(len(batches))
        for x, y, index in batches:
            real = index >= 0
            assert torch.equal(_index_of(x)[real], index[real])  # pixels of the image the index names
            assert torch.equal(y[real], index[real] % 10)  # and its label
            seen += index[real].tolist()
    assert len(counts) == 1  # the same number of batches on every rank: gathers stay collective
    assert sorted(seen) == list(range(n))  # every image exactly once


def test_the_loss_uses_the_resolved_label_smoothing(tiny_dataset, tmp_path, monkeypatch):
    """The recipe's smoothing (flag unset) and an explicit flag both reach the loss, not the flag's raw None/0."""
    import torch.nn.functional as F

    seen, cross_entropy = [], F.cross_entropy

    def spy(*args, **kwargs):
        seen.append(kwargs.get("label_smoothing"))
        return cross_entropy(*args, **kwargs)

    monkeypatch.setattr(F, "cross_entropy", spy)
    common = dict(dataset=tiny_dataset, recipe="cpu-5min", max_train_steps=1, per_device_train_batch_size=8)
    train(TrainConfig(output_dir=str(tmp_path / "recipe"), **common))
    train(TrainConfig(output_dir=str(tmp_path / "flag"), label_smoothing=0.3, **common))
    assert seen == [0.1, 0.3]


def test_random_erasing_reaches_the_last_row_and_column():
    """A box drawn at the far corner covers row 27 and column 27 (an off-by-one in the box bounds stops one short)."""
    from hf_fmnist.core.loader import DeviceLoader

    images = torch.full((1, 28, 28), 200, dtype=torch.uint8)
    loader = DeviceLoader(
        images, torch.zeros(1, dtype=torch.long), batch_size=1, preprocess=_identity(), random_erasing=1.0
    )
    draws = {
        "erase": torch.tensor([True]),
        "area": torch.tensor([4 / 784]),
        "log_ratio": torch.tensor([0.0]),
        "top": torch.tensor([0.999]),
        "left": torch.tensor([0.999]),
    }
    erased = (loader._erase(images.clone(), draws)[0] == 0).nonzero()
    assert len(erased) == 4 and erased[:, 0].max() == 27 and erased[:, 1].max() == 27


def test_the_seed_sets_the_data_order():
    from hf_fmnist.core.loader import DeviceLoader

    images, _ = _numbered(64)
    orders = [
        [
            y.tolist()
            for _, y in DeviceLoader(images, torch.arange(64), batch_size=8, preprocess=_identity(), seed=s).epoch(0)
        ]
        for s in (0, 1, 0)
    ]
    assert orders[0] != orders[1] and orders[0] == orders[2]


def test_train_shards_are_disjoint_aligned_and_resumable():
    from hf_fmnist.core.loader import DeviceLoader

    images, labels = _numbered(50)

    def shard(rank, epoch, start=0):
        loader = DeviceLoader(images, labels, batch_size=4, preprocess=_identity(), seed=3, rank=rank, world=2)
        assert len(loader) == 6  # 50 // (4 x 2): full batches only
        out = []
        for x, y in loader.epoch(epoch, start=start):
            index = _index_of(x)
            assert torch.equal(y, index % 10)  # labels travel with their images
            out.append(index.tolist())
        return out

    for epoch in (0, 1):
        a, b = [sum(shard(rank, epoch), []) for rank in (0, 1)]
        assert len(set(a)) == len(set(b)) == 24 and not set(a) & set(b)
    assert shard(0, 0) != shard(0, 1)  # a new order each epoch
    assert shard(0, 1, start=4) == shard(0, 1)[4:]  # resuming mid-epoch regenerates the same batches


class _TwoRanksInOne:
    """``gather_for_metrics`` as Accelerate does it for 2 processes: this rank's batch, then the other rank's."""

    def __init__(self, other_rank_batches):
        self.other = iter(other_rank_batches)

    def gather_for_metrics(self, tensors):
        return tuple(torch.cat([mine, theirs]) for mine, theirs in zip(tensors, next(self.other)))

    def unwrap_model(self, model, keep_torch_compile=True):
        return model


def test_evaluate_logits_with_two_ranks_returns_each_image_once_in_order():
    from types import SimpleNamespace

    from hf_fmnist.core.loader import DeviceLoader
    from hf_fmnist.inference.evaluate import evaluate_logits

    torch.manual_seed(0)
    linear = torch.nn.Linear(28 * 28, 10)

    def model(pixel_values):
        return SimpleNamespace(logits=linear(pixel_values[:, 0].flatten(1)))

    model.eval = lambda: None
    images, labels = _numbered(23)
    images[:, 5:] = torch.randint(0, 256, (23, 23, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    labels = torch.randint(0, 10, (23,), generator=torch.Generator().manual_seed(2))
    loaders = [
        DeviceLoader(images, labels, batch_size=4, preprocess=_identity(), rank=r, world=2, train=False) for r in (0, 1)
    ]
    with torch.inference_mode():
        other = [(model(x).logits.float(), y, index) for x, y, index in loaders[1].epoch(0)]
        expected = model(_identity()(images)).logits
    logits, got_labels = evaluate_logits(model, loaders[0], _TwoRanksInOne(other))
    assert got_labels.tolist() == labels.tolist()
    np.testing.assert_allclose(logits, expected.numpy(), rtol=1e-5, atol=1e-6)


def test_learning_curves_show_every_epochs_loss_and_accuracy_where_measured(tmp_path, monkeypatch):
    """A cpu-5min run (accuracy after epochs 8 and 9 only) plotted two points on an axis ticked 8.2, 8.4, ... and
    left out the loss of all nine epochs."""
    import matplotlib.pyplot as plt

    from hf_fmnist import plots

    figures = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: figures.append(fig) or path)
    history = [{"epoch": e, "step": 8 * e, "train_loss": 2 / e} for e in range(1, 8)]
    history += [{"epoch": e, "step": 8 * e, "train_loss": 2 / e, "eval_accuracy": 0.8 + e / 100} for e in (8, 9)]
    plots.learning_curves(history, tmp_path / "curves.png")
    accuracy, loss = figures[0].axes
    assert list(loss.lines[0].get_xdata()) == list(range(1, 10))
    assert list(accuracy.lines[0].get_xdata()) == [8, 9]
    for ax in (accuracy, loss):
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks) and ax.get_xlim()[0] < 1
    plt.close(figures[0])


def test_the_fine_tune_recipe_without_a_model_is_one_line(tmp_path, tiny_dataset, capsys):
    """fine-tune keeps --model_name_or_path: without one, the run refuses before a model is built (it passed None on
    as the model name)."""
    from hf_fmnist.training.loop import main as train_main

    from conftest import one_error_line, tiny_train_args

    assert train_main(tiny_train_args(tmp_path / "out", tiny_dataset, "--recipe", "fine-tune")) == 2
    assert "--recipe fine-tune fine-tunes a checkpoint: pass --model_name_or_path" in one_error_line(capsys)


def test_a_second_run_into_a_folder_another_run_is_writing_is_refused(tmp_path, tiny_dataset, capsys):
    """Before: two runs started 0.5 s apart into one --output_dir mixed their checkpoints (the last writer owned the
    folder) or failed with a SafetensorError traceback on the other's temp folder. The held folder is released
    when a run ends, so runs one after the other still write into it."""
    from hf_fmnist import ownership
    from hf_fmnist.training.loop import main as train_main

    from conftest import one_error_line, tiny_train_args

    out = tmp_path / "out"
    assert train_main(tiny_train_args(out, tiny_dataset)) == 0
    held = ownership.lock(out, "--output_dir")  # as the other run's process holds it
    try:
        before = (out / "model.safetensors").read_bytes()
        assert train_main(tiny_train_args(out, tiny_dataset, "--seed", "3")) == 2
        assert f"--output_dir {out} is being written by another hf_fmnist run" in one_error_line(capsys)
        assert (out / "model.safetensors").read_bytes() == before
    finally:
        ownership.unlock(held)
    assert train_main(tiny_train_args(out, tiny_dataset, "--seed", "3")) == 0
