"""hf-fmnist embed and summary --map: pooled features of every preset through transformers' own outputs, the map and
the TensorBoard projector files, and a SIGTERM during a long map (exit 143 within 10 s, no temp file left)."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from hf_fmnist import CLASS_NAMES, cli
from hf_fmnist.core.models import PRESETS, load_model
from hf_fmnist.inference.embed import pooled_features

from learnable import learnable_export


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_pooled_features_are_what_the_head_reads(preset):
    """For every preset the features have the classifier's input width; where the backbone has a pooler (the CNNs),
    the head applied to the features gives the model's logits exactly (ViT's and PVT's heads read a token or the
    tokens' mean, of which the mean is the pooled view)."""
    model, _ = load_model(preset)
    model.eval()
    x = torch.randn(3, model.config.num_channels, 28, 28)
    with torch.no_grad():
        features = pooled_features(model, x)
        logits = model(pixel_values=x).logits
        pooler = getattr(model.base_model(pixel_values=x), "pooler_output", None)
    head = model.classifier
    linears = [m for m in head.modules() if isinstance(m, torch.nn.Linear)]
    assert features.shape == (3, linears[0].in_features)
    if pooler is not None:
        assert torch.allclose(head(features), logits, atol=1e-5)


@pytest.fixture(scope="module")
def model_and_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("embed")
    dataset = learnable_export(folder, sizes=(60, 40))
    model, processor = load_model("cnn")
    model.save_pretrained(folder / "model")
    processor.save_pretrained(folder / "model")
    return str(folder / "model"), dataset


def test_embed_writes_map_points_and_projector(model_and_data, tmp_path, capsys):
    model, dataset = model_and_data
    out = tmp_path / "map"
    args = ["embed", "--model", model, "--dataset", dataset, "--output-dir", str(out), "--method", "pca"]
    assert cli.main([*args, "--thumbnails", "5"]) == 0
    assert "tensorboard --logdir" in capsys.readouterr().out
    rows = list(csv.DictReader((out / "map.csv").open()))
    from hf_fmnist.data.tensors import load_arrays, open_dataset

    _, labels = load_arrays("test", open_dataset(dataset))
    assert [int(r["label"]) for r in rows] == labels.tolist()
    assert (out / "map.png").stat().st_size > 10_000
    projector = out / "projector"
    config = next(projector.rglob("projector_config.pbtxt")).read_text()
    assert "sprite" in config and "metadata.tsv" in config
    metadata = next(projector.rglob("metadata.tsv")).read_text().splitlines()
    assert metadata == [CLASS_NAMES[c] for c in labels]
    from PIL import Image

    with Image.open(next(projector.rglob("sprite.png"))) as sprite:  # 40 images: a 7×7 grid of 28×28 cells
        assert sprite.size == (7 * 28, 7 * 28)
    vectors = next(projector.rglob("tensors.tsv")).read_text().splitlines()
    width = [m for m in load_model("cnn")[0].classifier.modules() if isinstance(m, torch.nn.Linear)][0].in_features
    assert len(vectors) == 40 and len(vectors[0].split("\t")) == width
    # a second run replaces its own files; a folder of someone else's is refused
    assert cli.main(args) == 0
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    assert cli.main([*args[:-4], "--output-dir", str(tmp_path / "mine"), "--method", "pca"]) == 2
    # review of issue 27: a user's file put in projector/ was deleted by the next run, and projector/ as a link to
    # another folder gave a traceback: both are one line now, before any work, and nothing of theirs changes
    capsys.readouterr()
    (projector / "00000" / "notes.txt").write_text("mine")
    assert cli.main(args) == 2
    assert "notes.txt was not written by TensorBoard's projector" in capsys.readouterr().err
    assert (projector / "00000" / "notes.txt").read_text() == "mine"
    (projector / "00000" / "notes.txt").unlink()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("theirs")
    projector.rename(tmp_path / "old-projector")
    projector.symlink_to(elsewhere)
    assert cli.main(args) == 2
    assert "projector is a link" in capsys.readouterr().err
    assert os.listdir(elsewhere) == ["keep.txt"] and projector.is_symlink()


def test_a_missing_extra_is_one_line_naming_it(model_and_data, tmp_path, capsys, monkeypatch):
    model, dataset = model_and_data
    monkeypatch.setitem(sys.modules, "umap", None)  # as if umap-learn were not installed
    assert cli.main(["embed", "--model", model, "--dataset", dataset, "--output-dir", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "error: hf-fmnist embed needs the 'embed' extra (umap is not installed): pip install \"hf_fmnist[embed]\""
    )
    assert not (tmp_path / "m").exists()


@pytest.mark.slow
def test_umap_map_of_raw_pixels_and_sigterm_during_it(model_and_data, tmp_path):
    """summary --map with UMAP (in a child process); then SIGTERM while a t-SNE of more points runs: exit 143 within
    10 s, no temp folder left, no map written."""
    _, dataset = model_and_data
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    command = [sys.executable, "-m", "hf_fmnist.cli", "summary", "--dataset", dataset]
    done = subprocess.run([*command, "--map", str(tmp_path / "umap.png")], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "umap.png").is_file() and not list(tmp_path.glob(".hf_fmnist-map-*"))
    big = learnable_export(tmp_path / "big", sizes=(3000, 10))  # t-SNE of 3,000 images: seconds, not a blink
    proc = subprocess.Popen(
        [*command[:-1], big, "--map", str(tmp_path / "tsne.png"), "--map-method", "tsne"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".hf_fmnist-map-*/features.npz")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert list(tmp_path.glob(".hf_fmnist-map-*")), "the map never started"
    proc.send_signal(signal.SIGTERM)
    start = time.monotonic()
    _, err = proc.communicate(timeout=30)
    assert time.monotonic() - start < 10
    assert proc.returncode == 143, err
    assert not list(tmp_path.glob(".hf_fmnist-map-*")) and not (tmp_path / "tsne.png").exists()


def test_features_beyond_the_memory_budget_are_refused_in_one_line(model_and_data, tmp_path, capsys, monkeypatch):
    """Hostile sizes: the whole split's feature vectors are judged from the first batch against the budget, before
    they pile up; nothing is written."""
    from hf_fmnist.inference import embed

    model, dataset = model_and_data
    real = embed.pooled_features
    monkeypatch.setenv("HF_FMNIST_MEMORY_MB", "4")  # the images and a batch fit; 40 × 128,000 features do not
    monkeypatch.setattr(embed, "pooled_features", lambda m, x: real(m, x).repeat(1, 1000))
    args = ["embed", "--model", model, "--dataset", dataset, "--output-dir", str(tmp_path / "m"), "--method", "pca"]
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: 40 feature vectors asks for about") and "HF_FMNIST_MEMORY_MB" in err
    assert not (tmp_path / "m").exists()
