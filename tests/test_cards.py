"""Cards: what they claim, for which repo, and that the Hub's validator accepts them. No training: the model folders
here are written by hand with exactly the files a training run leaves for the card, so every claim is controlled."""

from __future__ import annotations

import hashlib
import json
import re
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hf_fmnist import CLASS_NAMES, plots
from hf_fmnist.core import card as cards
from hf_fmnist.core.config import TrainConfig
from hf_fmnist.data import card as dataset_cards
from hf_fmnist.data import idx
from hf_fmnist.data.tensors import class_counts
from hf_fmnist.errors import HfFmnistError
from hf_fmnist.training import outputs

from conftest import REAL_DIR, Synthetic, idx_images, idx_labels, real_data
from hub_server import validate_card

ENDPOINT = "https://hub.example"


def _results(**overrides) -> dict:
    per_class = {name: 0.9 for name in CLASS_NAMES}
    results = {
        "eval_accuracy": 0.91234,
        "eval_top5_accuracy": 0.998,
        "eval_macro_f1": 0.9101,
        "eval_samples": 10_000,
        "eval_per_class_accuracy": per_class,
        "eval_confusion_matrix": np.eye(10, dtype=int).tolist(),
        "eval_split": "test",
        "num_processes": 1,
        "train_runtime": 12.5,
        "train_samples": 60_000,
        "train_samples_per_second": 4800.0,
        "train_steps": 4,
        "steps_per_epoch": 8,
        "epochs": 0.5,
        "num_parameters": 320_554,
        "history": [],
        "train_dataset_verified": True,
        "eval_dataset_verified": True,
    }
    results.update(overrides)
    return results


def model_folder(root: Path, *, results: dict | None = None, examples: bool = True, **config) -> Path:
    """A folder holding what training leaves for the card: results, config, model config, processor, examples."""
    from transformers import RegNetConfig

    from hf_fmnist.core.models import label_maps, preset_image_processor

    folder = root / "model"
    folder.mkdir(parents=True)
    id2label, label2id = label_maps()
    RegNetConfig(
        num_channels=3,
        num_labels=10,
        id2label=id2label,
        label2id=label2id,
        architectures=["RegNetForImageClassification"],
    ).save_pretrained(folder)
    preset_image_processor().save_pretrained(folder)
    (folder / "all_results.json").write_text(json.dumps(results or _results()))
    TrainConfig(output_dir=str(folder), **config).save(
        folder,
        max_train_steps=4,
        steps_per_epoch=8,
        num_train_epochs=1,
        per_device_train_batch_size=256,
        learning_rate=3e-3,
        weight_decay=0.05,
        num_warmup_steps=1,
        pad_crop=1,
        num_processes=1,
    )
    if examples:
        images = np.zeros((12, 28, 28), dtype=np.uint8)
        outputs.write_examples(
            images, np.array([9, 2, 2, 1, 1, 6, 4, 5, 7, 3, 0, 8]), CLASS_NAMES, folder / cards.EXAMPLES_DIR
        )
    return folder


def _metadata(text: str) -> dict:
    import yaml

    return yaml.safe_load(re.match(r"^---\n(.*?)\n---\n", text, re.S).group(1))


def test_a_card_is_rendered_for_the_repo_it_goes_to(tmp_path):
    """Bug: pushed cards said NAMESPACE/fashion-mnist-classifier (snippets, title, model-index name)."""
    folder = model_folder(tmp_path)
    for repo_id in ("me/fm-cnn", "someone/other-name"):
        text = cards.render_model_card(folder, repo_id=repo_id, endpoint=ENDPOINT)
        name = repo_id.split("/")[1]
        assert text.count(f'"{repo_id}"') == 3  # pipeline, processor and model snippets
        assert f"\n# {name}\n" in text
        assert _metadata(text)["model-index"][0]["name"] == name
        assert "NAMESPACE" not in text and 'model="."' not in text
        assert text == cards.render_model_card(folder, repo_id=repo_id, endpoint=ENDPOINT)  # deterministic
    local = cards.render_model_card(folder)
    assert 'model="."' in local and "widget" not in _metadata(local)


def test_widget_lists_the_published_examples_by_absolute_url(tmp_path):
    """Bug: no widget examples, so the Hub showed its own (out-of-distribution) photos."""
    folder = model_folder(tmp_path)
    widget = _metadata(cards.render_model_card(folder, repo_id="me/fm", endpoint=ENDPOINT))["widget"]
    files = sorted(p.name for p in (folder / "examples").glob("*.png"))
    # the first test image of each of the first six classes met, in file-name order, titled by class name
    assert files == ["1_trouser.png", "2_pullover.png", "4_coat.png", "5_sandal.png", "6_shirt.png", "9_ankle_boot.png"]
    assert widget == [
        {"src": f"{ENDPOINT}/me/fm/resolve/main/examples/{f}", "example_title": CLASS_NAMES[int(f.split("_")[0])]}
        for f in files
    ]


def test_examples_are_the_first_image_of_each_class_and_deterministic(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (20, 28, 28), dtype=np.uint8)
    labels = np.array([3, 3, 0, 7, 0, 1, 2, 9, 5, 5, 4, 6, 8] + [1] * 7)
    first = outputs.write_examples(images, labels, CLASS_NAMES, tmp_path / "a")
    second = outputs.write_examples(images, labels, CLASS_NAMES, tmp_path / "b")
    assert [p.name for p in first] == [
        "3_dress.png",
        "0_t_shirt_top.png",
        "7_sneaker.png",
        "1_trouser.png",
        "2_pullover.png",
        "9_ankle_boot.png",
    ]
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
    for path, index in zip(first, [0, 2, 3, 5, 6, 7]):
        assert np.array_equal(np.asarray(Image.open(path)), images[index])


def test_the_test_split_is_claimed_only_for_the_full_verified_test_set(tmp_path):
    """Bug: the model-index claimed Fashion-MNIST's test split also after --max_eval_samples 300, on a local folder
    and on data built with --no-verify."""
    verified = cards.render_model_card(model_folder(tmp_path / "v"), repo_id="me/fm", endpoint=ENDPOINT)
    result = _metadata(verified)["model-index"][0]["results"][0]
    assert result["dataset"] == {"type": "zalando-datasets/fashion_mnist", "name": "Fashion-MNIST", "split": "test"}
    assert result["task"]["type"] == "image-classification"
    assert {m["type"]: m["value"] for m in result["metrics"]} == {"accuracy": 0.9123, "f1": 0.9101}
    assert _metadata(verified)["datasets"] == ["zalando-datasets/fashion_mnist"]
    assert "all 10,000 images of the Fashion-MNIST `test` split" in verified

    subset = _results(eval_samples=300, eval_dataset_verified=False, train_dataset_verified=False)
    for name, kwargs in (
        ("subset", {"max_eval_samples": 300}),
        ("local", {"dataset": str(tmp_path / "fm_export")}),
        ("old", {}),
    ):
        results = subset if name != "old" else {k: v for k, v in _results().items() if "verified" not in k}
        text = cards.render_model_card(model_folder(tmp_path / name, results=results, **kwargs), repo_id="me/fm")
        meta = _metadata(text)
        assert "model-index" not in meta, name
        assert "datasets" not in meta, name
        assert "not the 10,000 original Fashion-MNIST test images" in text, name
        assert "the model-index reports no result" in text, name
        assert "standard Fashion-MNIST test split" not in text, name


def test_a_full_split_of_another_hub_dataset_is_named_as_that_dataset(tmp_path):
    results = _results(eval_dataset_verified=False, train_dataset_verified=False, eval_split="validation")
    text = cards.render_model_card(
        model_folder(tmp_path, results=results, dataset="someone/fm-variant"), repo_id="me/fm"
    )
    result = _metadata(text)["model-index"][0]["results"][0]
    assert result["dataset"] == {"type": "someone/fm-variant", "name": "fm-variant", "split": "validation"}
    assert _metadata(text)["datasets"] == ["someone/fm-variant"]


def test_epochs_are_those_that_ran(tmp_path):
    """Bug: the card said "1 epochs" after 4 of 8 steps."""
    text = cards.render_model_card(model_folder(tmp_path / "half"), repo_id="me/fm")
    assert "Trained for 4 optimizer steps (0.5 epochs of 8 steps)" in text
    two = model_folder(tmp_path / "two", results=_results(train_steps=16, epochs=2.0))
    assert "Trained for 16 optimizer steps (2 epochs of 8 steps)" in cards.render_model_card(two, repo_id="me/fm")
    one = model_folder(tmp_path / "one", results=_results(train_steps=8, epochs=1.0))
    assert "(1 epoch of 8 steps)" in cards.render_model_card(one, repo_id="me/fm")


def test_no_local_path_in_the_card_or_training_config(tmp_path):
    """Bug: training_config.json held output_dir/data_dir, and the card said "fine-tuned from /tmp/..."."""
    ckpt, data, raw = tmp_path / "ckpts" / "my-base", tmp_path / "exports" / "fm", tmp_path / "raw-files"
    for folder in (ckpt, data, raw):
        folder.mkdir(parents=True)
    folder = model_folder(
        tmp_path,
        model_name_or_path=str(ckpt),
        dataset=str(data),
        data_dir=str(raw),
        resume_from_checkpoint=str(tmp_path / "model" / "step_4"),
    )
    saved = (folder / "training_config.json").read_text()
    card = cards.render_model_card(folder, repo_id="me/fm", endpoint=ENDPOINT)
    for text in (saved, card):
        assert str(tmp_path) not in text and "/tmp" not in text
    config = json.loads(saved)
    assert config["config"]["model_name_or_path"] == "./my-base" and config["config"]["dataset"] == "./fm"
    assert config["config"]["output_dir"] == "./model" and config["config"]["data_dir"] == "./raw-files"
    assert config["sources"] == {"model_name_or_path": "local", "dataset": "local"}
    assert "fine-tuned from a local checkpoint (`./my-base`)" in card
    assert "base_model" not in _metadata(card)
    hub = cards.render_model_card(
        model_folder(tmp_path / "hub", model_name_or_path="someone/base-vit"), repo_id="me/fm"
    )
    assert _metadata(hub)["base_model"] == "someone/base-vit" and "fine-tuned from `someone/base-vit`" in hub


def test_public_config_keeps_presets_hub_ids_and_secrets_out():
    from hf_fmnist.core.models import PRESETS

    config = TrainConfig(
        output_dir="/home/me/out/model", model_name_or_path="vit", dataset="someone/fm", hub_token="hf_secret0123456789"
    )
    public = config.public_dict()
    assert public["model_name_or_path"] == "vit" and public["dataset"] == "someone/fm"
    assert public["output_dir"] == "./model" and public["hub_token"] is None
    for preset in PRESETS:
        assert TrainConfig(output_dir="o", model_name_or_path=preset, dataset="fashion_mnist").sources() == {
            "model_name_or_path": "preset",
            "dataset": "builtin",
        }


def test_push_to_hub_needs_no_repo_id():
    """Bug: --push_to_hub without --hub_model_id was refused; the Trainer defaults it to NAMESPACE/<output_dir>."""
    assert TrainConfig(output_dir="out", push_to_hub=True).hub_model_id is None


def test_the_demo_block_of_the_remote_card_is_kept_after_usage(tmp_path):
    folder = model_folder(tmp_path)
    block = (
        f"{cards.DEMO_START}\n## Demo\n\nTry it in [the Space](https://hub.example/spaces/me/fm-demo).\n"
        f"{cards.DEMO_END}"
    )
    remote = f"---\nlicense: mit\n---\n# old card\n\n{block}\n\n## Results\n"
    text = cards.render_model_card(folder, repo_id="me/fm", demo=cards.demo_block(remote))
    assert text.count(block) == 1
    assert text.index("## Usage") < text.index(block) < text.index("## Results")
    assert cards.demo_block("# a card without a demo") is None and cards.demo_block(None) is None


def test_dataset_card_snippet_is_rendered_for_the_repo(tmp_path):
    """Bug: the pushed dataset card said load_dataset("NAMESPACE/fashion_mnist")."""
    from hf_fmnist.data.export import export

    folder = export(tmp_path / "export", data_dir=Synthetic(tmp_path / "raw").folder, verify=False)
    local = (folder / "README.md").read_text()
    assert 'ds = load_dataset(".")' in local and "NAMESPACE/fashion_mnist" not in local
    assert _metadata(local)["language"] == ["en"]
    first = dataset_cards.dataset_card_for_repo(local, "me/hf_fmnist")
    assert 'ds = load_dataset("me/hf_fmnist")\n' in first and 'load_dataset(".")' not in first
    assert dataset_cards.dataset_card_for_repo(first, "you/fm") == dataset_cards.dataset_card_for_repo(local, "you/fm")
    assert first.replace("me/hf_fmnist", "X") == dataset_cards.dataset_card_for_repo(local, "X")  # nothing else changes


def test_cards_pass_the_strict_validator(tmp_path):
    from hf_fmnist.data.export import export

    folder = export(tmp_path / "export", data_dir=Synthetic(tmp_path / "raw").folder, verify=False)
    assert (
        validate_card("dataset", dataset_cards.dataset_card_for_repo((folder / "README.md").read_text(), "me/d")) == []
    )
    for name, results in (("verified", _results()), ("not", _results(eval_dataset_verified=False))):
        model = model_folder(tmp_path / name, results=results)
        assert validate_card("model", cards.render_model_card(model, repo_id="me/fm", endpoint=ENDPOINT)) == []
        assert validate_card("model", cards.render_model_card(model)) == []


def test_is_original_split_checks_every_byte(monkeypatch):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (20, 28, 28), dtype=np.uint8)
    labels = np.arange(20) % 10
    monkeypatch.setitem(idx.NUM_EXAMPLES, "test", 20)
    monkeypatch.setitem(idx.SHA256, "t10k-images-idx3-ubyte", hashlib.sha256(idx_images(images)).hexdigest())
    monkeypatch.setitem(idx.SHA256, "t10k-labels-idx1-ubyte", hashlib.sha256(idx_labels(labels)).hexdigest())
    assert outputs.is_original_split("test", images, labels)
    assert outputs.is_original_split("test", images, labels.astype(np.int64))  # labels as training holds them
    changed = images.copy()
    changed[7, 3, 3] ^= 1
    assert not outputs.is_original_split("test", changed, labels)
    assert not outputs.is_original_split("test", images, np.roll(labels, 1))
    assert not outputs.is_original_split("test", images[:19], labels[:19])  # a subset (--max_eval_samples)
    assert not outputs.is_original_split("test", images[::-1], labels[::-1])
    assert not outputs.is_original_split("train", images, labels)


@real_data
def test_the_real_test_split_is_verified_and_a_subset_is_not():
    split = idx.read_split(REAL_DIR, "test")
    assert outputs.is_original_split("test", split.images, split.labels.astype(np.int64))
    assert not outputs.is_original_split("test", split.images[:300], split.labels[:300])


def test_confusion_matrix_text_is_readable_on_its_cell():
    """Bug: the darkest cell printed black on dark red, the diagonal pale grey on white."""
    import matplotlib

    for name in ("Reds", "Blues"):
        cmap = matplotlib.colormaps[name]
        assert plots.text_color(cmap(0.85)) == "white"
        assert plots.text_color(cmap(0.05)) == "black"
    assert plots.text_color((1.0, 1.0, 1.0, 1.0)) == "black" and plots.text_color((0, 0, 0, 1)) == "white"


def test_confusion_matrix_colours_its_texts_by_cell(tmp_path, monkeypatch):
    """The figure itself: the largest error and every diagonal count in white on their dark cells."""
    import matplotlib.pyplot as plt

    cm = np.full((10, 10), 3)
    np.fill_diagonal(cm, 900)
    cm[6, 0] = 109
    captured = {}
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: captured.setdefault("fig", fig))
    plots.confusion_matrix(cm, CLASS_NAMES, tmp_path / "cm.png")
    texts = {(round(t.get_position()[1]), round(t.get_position()[0])): t for t in captured["fig"].axes[0].texts}
    plt.close(captured["fig"])
    assert texts[(6, 0)].get_text() == "109" and texts[(6, 0)].get_color() == "white"
    assert all(texts[(i, i)].get_color() == "white" for i in range(10))
    assert texts[(0, 1)].get_color() == "black"


def test_a_model_from_a_preset_is_not_called_fine_tuned(tmp_path):
    """Bug (found by mypy): with --model_name_or_path left to the recipe, sources() took None for a Hub id, and the
    card of every default training run said "fine-tuned from `None`"."""
    folder = model_folder(tmp_path)  # no model_name_or_path: the recipe's preset, as `hf-fmnist train` by default
    assert json.loads((folder / "training_config.json").read_text())["sources"]["model_name_or_path"] == "preset"
    card = cards.render_model_card(folder, repo_id="me/fm", endpoint=ENDPOINT)
    assert "fine-tuned" not in card
    assert "base_model" not in _metadata(card)


def test_the_settings_table_shows_what_the_run_resolved_not_the_unset_flags(tmp_path):
    """Flags left unset are None; the recipe filled them, and the card must say with what."""
    folder = model_folder(tmp_path)
    saved = json.loads((folder / "training_config.json").read_text())
    assert saved["config"]["label_smoothing"] is None and saved["config"]["random_erasing"] is None
    saved["resolved"].update(label_smoothing=0.1, random_erasing=0.25, hflip=True, recipe="cpu-15min")
    (folder / "training_config.json").write_text(json.dumps(saved))
    card = cards.render_model_card(folder)
    for row in ("| `label_smoothing` | `0.1` |", "| `random_erasing` | `0.25` |", "| `hflip` | `True` |"):
        assert row in card, row


def _unbalanced():
    """Labels 0, 0, 0, 9 in train: every fixture elsewhere is class-balanced, where shifted counts look right."""
    import datasets
    from PIL import Image

    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=list(CLASS_NAMES))})
    image = Image.new("L", (28, 28))
    train = datasets.Dataset.from_dict({"image": [image] * 4, "label": [0, 0, 0, 9]}, features=features)
    return datasets.DatasetDict({"train": train})


def test_the_dataset_card_counts_each_class_by_its_own_label():
    from datasets import DatasetInfo, SplitDict, SplitInfo

    ds = _unbalanced()
    info = DatasetInfo(features=ds["train"].features, splits=SplitDict())
    info.splits.add(SplitInfo(name="train", num_bytes=0, num_examples=4))
    text = str(dataset_cards.dataset_card(ds, info, class_counts(ds), verified=False))
    assert "| 0 | T-shirt/top | 3 |" in text and "| 9 | Ankle boot | 1 |" in text and "| 1 | Trouser | 0 |" in text


def test_the_summary_counts_each_class_by_its_own_label():
    from hf_fmnist.data.summary import format_summary

    rows = {}
    for line in format_summary(_unbalanced()).splitlines():
        parts = line.split()
        if parts and parts[0].isdigit():
            rows[int(parts[0])] = parts[-1]
    assert rows[0] == "3" and rows[9] == "1" and rows[1] == "0", rows


def test_reproduce_with_names_the_launcher_and_its_process_count(tmp_path):
    """A 2-process run's line read like a 1-process command: the same flags on one process train another model (a
    flag-given per-device batch then makes half the global batch)."""
    one = cards.render_model_card(model_folder(tmp_path / "one", per_device_train_batch_size=32))
    assert "Reproduce with `accelerate launch train.py --output_dir out --per_device_train_batch_size 32`" in one
    two = cards.render_model_card(
        model_folder(tmp_path / "two", results=_results(num_processes=2), per_device_train_batch_size=32)
    )
    assert "`accelerate launch --multi_gpu --num_processes 2 train.py --output_dir out" in two
    assert "`torchrun --nproc_per_node 2 train.py ...`" in two


def test_the_card_names_a_held_out_validation_split_and_claims_only_the_test_split(tmp_path):
    results = _results(validation_split_percentage=10, validation_samples=6_000, validation_accuracy=0.9012)
    text = cards.render_model_card(model_folder(tmp_path, results=results), repo_id="me/fm")
    assert "10% of the training split (6,000 images" in text and "90.12% validation accuracy" in text
    meta = yaml.safe_load(text.split("---")[1])
    [result] = meta["model-index"][0]["results"]
    assert result["dataset"]["split"] == "test" and result["metrics"][0]["value"] == pytest.approx(0.9123)


def test_the_card_lists_the_onnx_files_with_their_measured_accuracy_and_the_transformers_js_snippet(tmp_path):
    """Issue 24, item 3: with `hf-fmnist export`'s record, the card names the file each transformers.js dtype loads,
    with the counts the record holds (not numbers of its own), shows the snippet file the Node test runs, and tags
    `onnx` and `transformers.js`; without a record, none of it."""
    from hf_fmnist.core import export_record

    folder = model_folder(tmp_path)
    plain = cards.render_model_card(folder, repo_id="user/plain", endpoint="https://hub.test")
    assert "onnx" not in _metadata(plain)["tags"] and "transformers.js" not in _metadata(plain)["tags"]
    assert "model_quantized.onnx" not in plain
    (folder / "onnx").mkdir()
    record = {
        "format": export_record.FORMAT,
        "weights_sha256": "0" * 64,
        "images": 10_000,
        "pytorch_correct": 9_123,
        "dtypes": {
            "fp32": {"file": "model.onnx", "correct": 9_123, "agree_fp32": 10_000},
            "int8": {"file": "model_quantized.onnx", "correct": 9_107, "agree_fp32": 9_921},
            "fp16": {"file": "model_fp16.onnx", "correct": 9_121, "agree_fp32": 9_996},
        },
    }
    (folder / export_record.RECORD).write_text(json.dumps(record))
    card = cards.render_model_card(folder, repo_id="user/fm", endpoint="https://hub.test")
    assert {"onnx", "transformers.js"} <= set(_metadata(card)["tags"])
    assert '| `onnx/model_quantized.onnx` | int8 | "q8" (the browser\'s default) | 91.07% (9,107 of 10,000) |' in card
    assert '| `onnx/model_fp16.onnx` | fp16 | "fp16" | 91.21% (9,121 of 10,000) | 9,996 of 10,000 |' in card
    snippet = Path(dataset_cards.template_path(export_record.SNIPPET_FILE)).read_text()
    assert "MODEL_ID" in snippet and snippet.replace("MODEL_ID", "user/fm") in card
    record["dtypes"]["int8"]["correct"] = 10_001  # more right answers than images: a record we did not write
    (folder / export_record.RECORD).write_text(json.dumps(record))
    with pytest.raises(HfFmnistError, match="int8: correct is not a count of at most 10000"):
        cards.render_model_card(folder, repo_id="user/fm", endpoint="https://hub.test")


def test_the_card_shows_ece_beside_accuracy_and_the_top_pairs(tmp_path):
    pairs = [
        {"true": "Shirt", "predicted": "T-shirt/top", "count": 123, "of": 1000},
        {"true": "Pullover", "predicted": "Coat", "count": 87, "of": 1000},
    ]
    results = _results(eval_ece=0.01876, eval_ece_bins=15, eval_nll=0.2468, eval_confused_pairs=pairs)
    text = cards.render_model_card(model_folder(tmp_path / "with", results=results))
    assert "**Test accuracy: 91.23%** (expected calibration error 0.0188) on" in text
    assert "| expected calibration error (15 equal-width confidence bins) | 0.0188 |" in text
    assert "| negative log-likelihood (nats per image) | 0.2468 |" in text
    assert "| Shirt | T-shirt/top | 123 of 1,000 |\n| Pullover | Coat | 87 of 1,000 |" in text
    assert validate_card("model", text) == []
    # a folder trained before calibration was recorded: no ECE, no pairs, no empty table
    older = cards.render_model_card(model_folder(tmp_path / "older"))
    assert "calibration" not in older and "| true | predicted |" not in older
    # a stranger's results: a pair claiming more mistakes than the class has images is refused in one line
    bad = _results(eval_confused_pairs=[{"true": "Shirt", "predicted": "Coat", "count": 5, "of": 4}])
    with pytest.raises(HfFmnistError, match="eval_confused_pairs"):
        cards.render_model_card(model_folder(tmp_path / "bad", results=bad))


@st.composite
def _shown_results(draw) -> dict:
    """all_results.json as training writes it: shares of counted images, a float F1, whole counts, a runtime."""
    n = draw(st.integers(1, 10_000))
    correct = draw(st.integers(0, n))
    per_class = {}
    for name in CLASS_NAMES:
        support = draw(st.integers(0, 1_000))
        per_class[name] = draw(st.integers(0, support)) / support if support else None
    steps_per_epoch = draw(st.integers(1, 500))
    return _results(
        eval_accuracy=correct / n,
        eval_top5_accuracy=draw(st.integers(correct, n)) / n,
        eval_macro_f1=draw(st.floats(0, 1)),
        eval_samples=n,
        eval_per_class_accuracy=per_class,
        eval_dataset_verified=n == 10_000,
        train_steps=draw(st.integers(1, 5 * steps_per_epoch)),
        steps_per_epoch=steps_per_epoch,
        train_samples=draw(st.integers(1, 60_000)),
        num_processes=draw(st.integers(1, 8)),
        train_runtime=draw(st.floats(0.001, 1e5)),
        train_samples_per_second=draw(st.floats(0.5, 1e6)),
    )


def _shown(text: str, pattern: str) -> str:
    [match] = re.findall(pattern, text)
    return match


def _within_half_a_shown_digit(shown: str, value: float, scale: int = 1) -> bool:
    """``shown`` (as printed, e.g. "87.65") is ``value × scale`` rounded to its own digits: exact decimal arithmetic,
    the tolerance is half a unit of the last digit shown, nothing derived from binary floating point."""
    digits = len(shown.split(".")[1]) if "." in shown else 0
    return abs(Decimal(shown.replace(",", "")) - Decimal(value) * scale) <= Decimal(5) / 10 ** (digits + 1)


@pytest.fixture(scope="module")
def _card_folder(tmp_path_factory) -> Path:
    return model_folder(tmp_path_factory.mktemp("shown"))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(results=_shown_results())
def test_every_number_the_card_shows_is_the_one_in_all_results(_card_folder, results):
    (_card_folder / "all_results.json").write_text(json.dumps(results))
    text = cards.render_model_card(_card_folder, repo_id="me/fm")
    meta, body = yaml.safe_load(text.split("---")[1]), text.split("---", 2)[2]
    r = results
    assert _within_half_a_shown_digit(_shown(body, r"\*\*Test accuracy: ([\d.]+)%\*\*"), r["eval_accuracy"], 100)
    for row, key in (
        ("accuracy", "eval_accuracy"),
        ("top-5 accuracy", "eval_top5_accuracy"),
        ("macro-F1", "eval_macro_f1"),
    ):
        assert _within_half_a_shown_digit(_shown(body, rf"\n\| {row} \| ([\d.]+) \|"), r[key]), row
    assert _shown(body, r"\| evaluation images \| ([\d,]+) \(") == f"{r['eval_samples']:,}"
    assert f"{r['eval_samples']:,} images of the `test` split" in body or f"all {r['eval_samples']:,} images" in body
    for name, value in r["eval_per_class_accuracy"].items():
        shown = _shown(body, rf"\n\| {re.escape(name)} \| ([\d.]+|n/a) \|")
        assert (shown == "n/a") if value is None else _within_half_a_shown_digit(shown, value), name
    trained = re.search(
        r"Trained for (\d+) optimizer steps \(([\d.]+) epochs? of (\d+) steps\) on ([\d,]+) images,\n"
        r"(\d+) process\(es\), in ([\d,]+) s of training\n\(([\d,]+) images/s\)",
        body,
    )
    assert trained, body
    steps, epochs, per_epoch, images, processes, seconds, speed = trained.groups()
    assert (int(steps), int(per_epoch), int(processes)) == (r["train_steps"], r["steps_per_epoch"], r["num_processes"])
    assert int(images.replace(",", "")) == r["train_samples"]
    assert _within_half_a_shown_digit(epochs, r["train_steps"] / r["steps_per_epoch"])
    assert _within_half_a_shown_digit(seconds, r["train_runtime"]) and _within_half_a_shown_digit(
        speed, r["train_samples_per_second"]
    )
    if r["eval_dataset_verified"]:  # the model-index claims the test split: its values are the results', rounded
        metrics = {m["type"]: m["value"] for m in meta["model-index"][0]["results"][0]["metrics"]}
        assert metrics == {"accuracy": round(r["eval_accuracy"], 4), "f1": round(r["eval_macro_f1"], 4)}
    else:
        assert "model-index" not in meta
