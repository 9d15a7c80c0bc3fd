"""The hf-fmnist command with the Hub-protocol test server: `hf-fmnist train` with a token, `evaluate` on a Hub
model id, and the push flags (--private, --revision, --commit-message, deleting what was removed locally)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from counts import correct_images

from hf_fmnist import cli

from conftest import HUB_TOKEN, synthetic_export, unique_repo


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory) -> Path:
    return synthetic_export(tmp_path_factory.mktemp("clihub"), sizes=(128, 40))


@pytest.fixture(scope="module")
def trained(dataset_dir, tmp_path_factory):
    """`hf-fmnist train` (the console script) with the token given both ways, checkpoints, TensorBoard and a push."""
    out = tmp_path_factory.mktemp("clitrain") / "out"
    repo_id = unique_repo("cli-trained")
    exe = Path(sys.executable).with_name("hf-fmnist")
    result = subprocess.run(
        [
            str(exe),
            "train",
            "--output_dir",
            str(out),
            "--dataset",
            str(dataset_dir),
            "--num_train_epochs",
            "2",
            "--per_device_train_batch_size",
            "32",
            "--checkpointing_steps",
            "3",
            "--with_tracking",
            "--hub_token",
            HUB_TOKEN,
            "--push_to_hub",
            "--hub_model_id",
            repo_id,
        ],
        env={**os.environ, "HF_TOKEN": HUB_TOKEN, "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        timeout=600,
    )
    return out, repo_id, result


def test_hf_fmnist_train_trains_and_pushes(trained):
    out, repo_id, result = trained
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    saved = json.loads((out / "all_results.json").read_text())
    assert saved["train_steps"] == 8 and saved["eval_samples"] == 40  # 128 images / 32 x 2 epochs
    assert correct_images(saved) >= 10  # of 40; 8 steps on learnable data: above chance (4 images), far from done
    assert "Pushed to " in result.stdout.decode() and repo_id in result.stdout.decode()


def test_the_token_is_in_no_file_and_no_message(trained, hub):
    out, repo_id, result = trained
    token = HUB_TOKEN.encode()
    files = [p for p in out.rglob("*") if p.is_file()]
    names = {p.relative_to(out).as_posix() for p in files}
    # the places a token would leak to: the saved config, the card, TensorBoard's events, checkpoints
    assert {"training_config.json", "README.md", "all_results.json"} <= names
    assert any(n.startswith("runs/") and "events.out.tfevents" in n for n in names)
    assert any(n.startswith("step_3/") for n in names) and any(n.startswith("step_6/") for n in names)
    leaks = [p for p in files if token in p.read_bytes()]
    assert not leaks, f"the token is in {leaks}"
    assert token not in result.stdout and token not in result.stderr
    pushed = hub.state.files("model", repo_id)
    assert "README.md" in pushed and not [p for p, data in pushed.items() if token in data]


def test_evaluate_a_hub_model_id(trained, dataset_dir, tmp_path, monkeypatch, capsys):
    out, repo_id, _ = trained
    monkeypatch.chdir(tmp_path)
    assert cli.main(["evaluate", "--model", repo_id, "--dataset", str(dataset_dir)]) == 0
    printed = capsys.readouterr().out
    assert f"{repo_id} on {dataset_dir} [test], 40 images" in printed
    folder = tmp_path / f"evaluation-{repo_id.replace('/', '_')}"  # the default for a Hub id: here, not the cache
    results = json.loads((folder / "eval_results.json").read_text())
    trained_results = json.loads((out / "all_results.json").read_text())
    # the model downloaded from the Hub measures what training measured on the same images
    assert results["eval_confusion_matrix"] == trained_results["eval_confusion_matrix"]
    assert results["eval_accuracy"] == trained_results["eval_accuracy"]
    assert (folder / "confusion_matrix.png").is_file()


def test_push_flags_private_revision_and_commit_message(trained, hub, tmp_path):
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError

    out, _, _ = trained
    repo_id = unique_repo("flags")
    assert (
        cli.main(
            [
                "push-model",
                "--repo-id",
                repo_id,
                "--model-dir",
                str(out),
                "--private",
                "--revision",
                "dev",
                "--commit-message",
                "First weights, from the CLI",
            ]
        )
        == 0
    )
    api = HfApi()
    assert api.model_info(repo_id).private is True
    with pytest.raises(RepositoryNotFoundError):
        HfApi(token=False).model_info(repo_id)  # invisible without the token
    assert "model.safetensors" in api.list_repo_files(repo_id, revision="dev")
    assert "model.safetensors" not in api.list_repo_files(repo_id)  # main untouched
    repo = hub.state.repos[("model", repo_id)]
    assert hub.state.commits[repo.branches["dev"]].title == "First weights, from the CLI"


def test_files_removed_locally_are_deleted_remotely(trained, hub, tmp_path):
    out, _, _ = trained
    folder = tmp_path / "model"
    shutil.copytree(out, folder)
    repo_id = unique_repo("deletions")
    assert cli.main(["push-model", "--repo-id", repo_id, "--model-dir", str(folder)]) == 0
    before = set(hub.state.files("model", repo_id))
    assert "predictions.png" in before and any(p.startswith("runs/") for p in before)
    commits = hub.state.commit_count("model", repo_id)
    (folder / "predictions.png").unlink()
    shutil.rmtree(folder / "runs")  # a whole folder of TensorBoard logs
    assert cli.main(["push-model", "--repo-id", repo_id, "--model-dir", str(folder)]) == 0
    after = set(hub.state.files("model", repo_id))
    assert after == {p for p in before if p != "predictions.png" and not p.startswith("runs/")}
    assert hub.state.commit_count("model", repo_id) == commits + 1  # one commit with all the deletions
