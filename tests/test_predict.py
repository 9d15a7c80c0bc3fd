"""hf-fmnist predict and evaluate on a trained tiny model; every bad input file gets its own error."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hf_fmnist import cli
from hf_fmnist.core.config import TrainConfig
from hf_fmnist.inference.predict import load_image, predict
from hf_fmnist.training.loop import train


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from conftest import synthetic_export

    folder = tmp_path_factory.mktemp("model")
    dataset = synthetic_export(folder, sizes=(128, 50))
    train(
        TrainConfig(
            output_dir=str(folder / "out"), dataset=str(dataset), num_train_epochs=1, per_device_train_batch_size=32
        )
    )
    return folder / "out", dataset


def _gray(seed=0, size=(28, 28)) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8))


def _bad_files(folder: Path) -> dict[str, tuple[Path, str]]:
    folder.mkdir()
    good = folder / "good.png"
    _gray().save(good)
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.png").write_text("this is not an image")
    (folder / "truncated.png").write_bytes(good.read_bytes()[:60])
    frames = [_gray(i) for i in range(3)]
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:])
    Image.new("L", (1, 1)).save(folder / "bomb.png")
    return {
        "empty.png": (folder / "empty.png", "empty file (0 bytes)"),
        "notes.png": (folder / "notes.png", "not an image file"),
        "truncated.png": (folder / "truncated.png", "corrupt or truncated image"),
        "animated.gif": (folder / "animated.gif", "animated image with 3 frames"),
    }


def test_each_bad_file_gets_its_own_error_and_the_rest_runs(model_dir, tmp_path, monkeypatch):
    out, _ = model_dir
    cases = _bad_files(tmp_path / "in")
    # PIL's bomb limit, lowered so a small file trips it: the same check as for a real 200-megapixel image
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 800)  # 28x28 passes, 30x30 does not
    big = tmp_path / "in" / "bomb.png"
    Image.new("L", (30, 30)).save(big)
    cases["bomb.png"] = (big, "decompression bomb")
    results = {Path(r["path"]).name: r for r in predict(str(out), [str(tmp_path / "in")], top_k=2)}
    monkeypatch.undo()
    assert len(results["good.png"]["predictions"]) == 2
    for name, (path, message) in cases.items():
        assert message in results[name]["error"], (name, results[name])
        assert str(path) in results[name]["error"]
        assert "predictions" not in results[name]


def test_unusual_but_valid_images_are_converted_correctly(model_dir, tmp_path):
    base = np.random.default_rng(3).integers(0, 256, (28, 28), dtype=np.uint8)
    palette = Image.fromarray(base).convert("P")
    palette.save(tmp_path / "palette.png")
    Image.fromarray(base).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=100)
    Image.fromarray(base.astype(np.uint16) * 257).save(tmp_path / "deep.png")  # 16-bit, full range
    loaded = load_image(tmp_path / "deep.png")
    np.testing.assert_array_equal(loaded.gray, base)  # scaled, not clipped to 255
    assert loaded.notes == ["16-bit image scaled to 8 bits"]
    assert "palette" in load_image(tmp_path / "palette.png").notes[0]
    assert "CMYK" in load_image(tmp_path / "cmyk.jpg").notes[0]
    # transparent pixels are background, and Fashion-MNIST's background is black, whatever colour they hide
    Image.new("RGBA", (28, 28), (255, 255, 255, 0)).save(tmp_path / "transparent.png")
    assert load_image(tmp_path / "transparent.png").gray.max() == 0
    results = predict(str(model_dir[0]), [str(tmp_path)])
    assert all("predictions" in r for r in results)


def test_predict_cli_json_and_exit_status(model_dir, tmp_path, capsys):
    _gray().save(tmp_path / "ok.png")
    assert cli.main(["predict", "--model", str(model_dir[0]), str(tmp_path / "ok.png"), "--json", "--top-k", "3"]) == 0
    parsed = json.loads(capsys.readouterr().out)
    assert len(parsed) == 1 and len(parsed[0]["predictions"]) == 3
    assert abs(sum(p["score"] for p in parsed[0]["predictions"])) <= 1.0 + 1e-6
    (tmp_path / "bad.png").write_bytes(b"")
    assert cli.main(["predict", "--model", str(model_dir[0]), str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert "bad.png: error: empty file" in captured.out and "1 of 2 file(s)" in captured.err


def test_predict_agrees_with_pipeline(model_dir):
    import datasets
    from transformers import pipeline

    out, dataset = model_dir
    test = datasets.load_dataset(str(dataset))["test"].select(range(10))
    classify = pipeline("image-classification", trust_remote_code=False, model=str(out), device="cpu")
    expected = [r[0]["label"] for r in classify([row["image"] for row in test], top_k=1)]
    paths = []
    for i, row in enumerate(test):
        path = Path(out).parent / f"img{i}.png"
        row["image"].save(path)
        paths.append(str(path))
    got = [r["predictions"][0]["label"] for r in predict(str(out), paths, top_k=1)]
    assert got == expected


def test_evaluate_cli_matches_training_results(model_dir, tmp_path, capsys):
    out, dataset = model_dir
    assert cli.main(["evaluate", "--model", str(out), "--dataset", str(dataset), "--output-dir", str(tmp_path)]) == 0
    assert "accuracy" in capsys.readouterr().out
    saved = json.loads((tmp_path / "eval_results.json").read_text())
    trained = json.loads((out / "all_results.json").read_text())
    assert saved["eval_accuracy"] == trained["eval_accuracy"]
    assert saved["eval_confusion_matrix"] == trained["eval_confusion_matrix"]
    assert (tmp_path / "confusion_matrix.png").is_file() and (tmp_path / "predictions.png").is_file()


def test_missing_model_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "x.png").write_bytes(b"")
    assert cli.main(["predict", "--model", str(tmp_path / "nope"), str(tmp_path / "x.png")]) == 2
    assert "Cannot load model" in capsys.readouterr().err


def test_evaluate_saves_calibration_pairs_and_top_losses_that_recompute(model_dir, tmp_path, capsys):
    """ECE recomputed by hand from the saved logits (15 equal-width bins), the printed and saved pairs from the
    confusion matrix, and the top losses from the saved losses."""
    import csv

    from hf_fmnist.core import metrics

    out, dataset = model_dir
    assert cli.main(["evaluate", "--model", str(out), "--dataset", str(dataset), "--output-dir", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    saved = json.loads((tmp_path / "eval_results.json").read_text())
    rows = list(csv.DictReader((tmp_path / "predictions.csv").open()))
    assert [int(r["index"]) for r in rows] == list(range(saved["eval_samples"]))
    logits = np.array([[float(r[f"logit_{k}"]) for k in range(10)] for r in rows])
    labels = np.array([int(r["label"]) for r in rows])
    # by hand: softmax, top probability, bin k holds confidences in (k/15, (k+1)/15]
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    conf, right = p.max(1), p.argmax(1) == labels
    ece = sum(
        abs(right[m].sum() - conf[m].sum()) for k in range(15) if (m := (conf > k / 15) & (conf <= (k + 1) / 15)).any()
    ) / len(labels)
    assert saved["eval_ece_bins"] == 15 and saved["eval_ece"] == pytest.approx(ece, abs=1e-9)
    assert saved["eval_nll"] == pytest.approx(-np.log(p[np.arange(len(labels)), labels]).mean(), abs=1e-6)
    assert int(right.sum()) == round(saved["eval_accuracy"] * len(labels))
    assert (tmp_path / "reliability_diagram.png").is_file()
    # pairs: the off-diagonal cells of the saved confusion matrix, largest first, printed and saved
    cm = np.array(saved["eval_confusion_matrix"])
    off = sorted((-int(cm[t, q]), t, q) for t in range(10) for q in range(10) if t != q and cm[t, q])
    off = [(-c, t, q) for c, t, q in off]
    names = list(saved["eval_per_class_accuracy"])
    assert [(x["count"], x["true"], x["predicted"], x["of"]) for x in saved["eval_confused_pairs"]] == [
        (c, names[t], names[q], int(cm[t].sum())) for c, t, q in off[:10]
    ]
    pairs_file = list(csv.DictReader((tmp_path / "confused_pairs.csv").open()))
    assert [int(r["count"]) for r in pairs_file] == [c for c, _, _ in off[:10]]
    for pair in saved["eval_confused_pairs"]:
        assert f"{pair['true']} → {pair['predicted']}: {pair['count']:,} of {pair['of']:,}" in printed
    # top losses: the wrong rows with the largest saved loss
    loss = np.array([float(r["loss"]) for r in rows])
    wrong = np.flatnonzero(~right)
    assert len(wrong) and off  # the tiny model makes mistakes, so the checks above compare something
    expected = wrong[np.argsort(-loss[wrong], kind="stable")][:40]
    assert metrics.top_losses(logits, labels, 40).tolist() == expected.tolist()
