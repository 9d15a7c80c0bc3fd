"""Publishing end to end: the real huggingface_hub, datasets and transformers against the Hub-protocol test server."""

import json
import threading
import uuid
from pathlib import Path

import numpy as np
import pytest

from conftest import HUB_TOKEN, HUB_USER, Synthetic
from hf_fmnist import cli
from hf_fmnist import hub as publish
from hf_fmnist.dataset_export import export
from hf_fmnist.config import TrainConfig
from hf_fmnist.train import train
from hub_server import Fault


def _repo(name: str) -> str:
    return f"{HUB_USER}/{name}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("hubdata")
    synthetic = Synthetic(folder / "raw", sizes=(96, 40))
    return export(folder / "export", data_dir=synthetic.folder, verify=False)


@pytest.fixture(scope="module")
def model_dir(dataset_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("hubmodel") / "out"
    train(TrainConfig(output_dir=str(out), dataset=str(dataset_dir), num_train_epochs=1,
                      per_device_train_batch_size=32, checkpointing_steps="1"))
    return out


def _quiet(message: str) -> None:
    pass


def _timeout(fn, seconds: float = 120):
    """Run ``fn`` with a deadline: the Hub client's API calls have no timeout of their own."""
    result, error = [], []
    thread = threading.Thread(target=lambda: _capture(fn, result, error), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"timed out after {seconds} s"
    if error:
        raise error[0]
    return result[0]


def _capture(fn, result, error):
    try:
        result.append(fn())
    except BaseException as e:  # handed back to the test thread
        error.append(e)


def test_push_dataset_then_load_it_normal_and_streaming(dataset_dir, hub, tmp_path, capsys):
    import datasets

    repo_id = _repo("fmnist")
    assert cli.main(["push-dataset", "--repo-id", repo_id, "--dataset-dir", str(dataset_dir)]) == 0
    assert not any(p.endswith(".py") for p in hub.state.files("dataset", repo_id))
    local = datasets.load_dataset(str(dataset_dir))
    remote = datasets.load_dataset(repo_id, cache_dir=str(tmp_path / "clean"))
    for split in ("train", "test"):
        assert remote[split].features == local[split].features
        assert remote[split]["label"] == local[split]["label"]
        assert [np.asarray(i).tolist() for i in remote[split][:5]["image"]] == \
               [np.asarray(i).tolist() for i in local[split][:5]["image"]]
    streamed = datasets.load_dataset(repo_id, split="test", streaming=True)
    rows = list(streamed)
    assert [r["label"] for r in rows] == local["test"]["label"]
    assert np.array_equal(np.asarray(rows[3]["image"]), np.asarray(local["test"][3]["image"]))


def test_push_model_then_from_pretrained_and_pipeline_agree(model_dir, dataset_dir, hub, tmp_path):
    import datasets
    from transformers import AutoModelForImageClassification, pipeline

    repo_id = _repo("fmnist-cnn")
    url = publish.push_model(repo_id, model_dir, log=_quiet)
    assert url.endswith(repo_id)
    files = hub.state.files("model", repo_id)
    assert {"model.safetensors", "config.json", "preprocessor_config.json", "README.md", "all_results.json",
            "training_config.json", "confusion_matrix.png"} <= set(files)
    assert not any(p.startswith(("step_", "epoch_", ".")) and p != ".gitattributes" for p in files)
    assert HUB_TOKEN not in "".join(v.decode("utf-8", "replace") for v in files.values())
    model = AutoModelForImageClassification.from_pretrained(repo_id, cache_dir=str(tmp_path / "clean"))
    assert model.config.id2label[9] == "Ankle boot"
    images = [row["image"] for row in datasets.load_dataset(str(dataset_dir))["test"].select(range(12))]
    remote = pipeline("image-classification", model=repo_id, device="cpu", model_kwargs={"cache_dir": str(tmp_path / "c2")})
    local = pipeline("image-classification", model=str(model_dir), device="cpu")
    assert [r[0]["label"] for r in remote(images, top_k=1)] == [r[0]["label"] for r in local(images, top_k=1)]


def test_repush_makes_no_commit(dataset_dir, hub):
    repo_id = _repo("again")
    publish.push_dataset(repo_id, dataset_dir, log=_quiet)
    commits = hub.state.commit_count("dataset", repo_id)
    result = publish.push_folder(repo_id, dataset_dir, repo_type="dataset", ignore=publish.DATASET_IGNORE, log=_quiet)
    assert result["commit"] is None and result["changed"] is False
    assert hub.state.commit_count("dataset", repo_id) == commits


def test_private_repo_needs_the_token(model_dir, hub, tmp_path):
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import RepositoryNotFoundError

    repo_id = _repo("private")
    publish.push_model(repo_id, model_dir, private=True, log=_quiet)
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download(repo_id, "config.json", token=False, cache_dir=str(tmp_path / "a"))
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download(repo_id, "config.json", token="hf_othertoken0123456789abcdef", cache_dir=str(tmp_path / "b"))
    path = hf_hub_download(repo_id, "config.json", cache_dir=str(tmp_path / "c"))
    assert json.loads(Path(path).read_text())["id2label"]["0"] == "T-shirt/top"


def test_fine_tune_from_a_hub_checkpoint(dataset_dir, tmp_path):
    from transformers import RegNetConfig, RegNetForImageClassification

    from hf_fmnist.models import preset_image_processor

    ckpt = tmp_path / "ckpt"
    RegNetForImageClassification(RegNetConfig(num_channels=3, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1],
                                              num_labels=4)).save_pretrained(ckpt)
    preset_image_processor().save_pretrained(ckpt)
    repo_id = _repo("base")
    publish.push_folder(repo_id, ckpt, repo_type="model", log=_quiet)
    out = tmp_path / "ft"
    train(TrainConfig(output_dir=str(out), dataset=str(dataset_dir), model_name_or_path=repo_id,
                      ignore_mismatched_sizes=True, num_train_epochs=1, per_device_train_batch_size=32))
    saved = json.loads((out / "config.json").read_text())
    assert len(saved["id2label"]) == 10 and saved["id2label"]["9"] == "Ankle boot"
    assert f"base_model: {repo_id}" in (out / "README.md").read_text()


def test_missing_and_rejected_tokens_fail_before_upload(dataset_dir, hub, monkeypatch, capsys):
    repo_id = _repo("notoken")
    monkeypatch.delenv("HF_TOKEN")
    before = len(hub.state.log)
    assert cli.main(["push-dataset", "--repo-id", repo_id, "--dataset-dir", str(dataset_dir)]) == 2
    assert "No Hugging Face token" in capsys.readouterr().err
    assert len(hub.state.log) == before  # nothing was sent
    assert cli.main(["push-dataset", "--repo-id", repo_id, "--dataset-dir", str(dataset_dir), "--token",
                     "hf_wrongtoken0123456789"]) == 2
    err = capsys.readouterr().err
    assert "rejected the token" in err and "hf_wrongtoken0123456789" not in err
    assert ("dataset", repo_id) not in hub.state.repos


def test_bad_repo_ids_and_folders(dataset_dir, tmp_path, capsys):
    assert cli.main(["push-dataset", "--repo-id", "no-namespace", "--dataset-dir", str(dataset_dir)]) == 2
    assert "NAMESPACE/NAME" in capsys.readouterr().err
    assert cli.main(["push-model", "--repo-id", _repo("m"), "--model-dir", str(tmp_path)]) == 2
    assert "has no config.json" in capsys.readouterr().err
    with pytest.raises(publish.HubError, match="Repo id must be a string, not int"):
        publish.check_repo_id(42)


@pytest.mark.parametrize("faults", [
    [Fault("POST", r"/preupload/", "503", times=2), Fault("POST", r"/commit/", "503", times=1)],
    [Fault("POST", r"/commit/", "drop", times=1)],
    [Fault("POST", r"/commit/", "apply_500", times=1)],
    [Fault("POST", r"/commit/", "apply_drop", times=1)],
    [Fault("POST", r"lfs/objects/batch", "503", times=1), Fault("GET", r"/tree/", "503", times=1)],
], ids=["503s", "dropped", "applied-then-500", "applied-then-dropped", "lfs-and-tree-503"])
def test_faults_end_with_full_content_in_exactly_one_commit(faults, dataset_dir, hub, monkeypatch):
    monkeypatch.setattr(publish, "BACKOFF_S", 0.05)
    repo_id = _repo("faulty")
    hub.state.faults[:] = faults
    messages = []
    try:
        result = _timeout(lambda: publish.push_dataset(repo_id, dataset_dir, log=messages.append))
    finally:
        hub.state.faults.clear()
    state = hub.state
    assert state.commit_count("dataset", repo_id) == 2  # the repo's initial commit + exactly one push
    local = {p.relative_to(dataset_dir).as_posix(): p.read_bytes() for p in dataset_dir.rglob("*")
             if p.is_file() and not p.name.startswith(".")}  # hidden files (our ownership marker) stay local
    remote = state.files("dataset", repo_id)
    remote.pop(".gitattributes")
    assert remote == local
    assert result.endswith(repo_id)
    if any(f.path == r"/commit/" for f in faults):
        assert any("retrying" in m for m in messages)
    assert all(HUB_TOKEN not in m for m in messages)


def test_cards_validate_and_round_trip(dataset_dir, model_dir):
    from huggingface_hub import DatasetCard, ModelCard

    for cls, path in ((DatasetCard, dataset_dir / "README.md"), (ModelCard, model_dir / "README.md")):
        card = cls.load(path)
        card.validate()  # POSTs to /api/validate-yaml on the endpoint
        again = cls(str(card))
        assert again.data.to_dict() == card.data.to_dict() and again.text == card.text
    model_card = ModelCard.load(model_dir / "README.md")
    result = model_card.data.eval_results[0]
    assert result.task_type == "image-classification" and result.metric_type == "accuracy"
    assert result.dataset_split == "test"


def test_train_push_to_hub_uses_the_same_push(dataset_dir, hub, tmp_path):
    repo_id = _repo("trained")
    train(TrainConfig(output_dir=str(tmp_path / "out"), dataset=str(dataset_dir), num_train_epochs=1,
                      per_device_train_batch_size=32, push_to_hub=True, hub_model_id=repo_id))
    files = hub.state.files("model", repo_id)
    assert files["all_results.json"] == (tmp_path / "out" / "all_results.json").read_bytes()
    assert f"model=\"{repo_id}\"" in files["README.md"].decode()  # the card's usage names the pushed repo


def test_branch_and_pull_request(dataset_dir, hub):
    repo_id = _repo("branches")
    publish.push_dataset(repo_id, dataset_dir, revision="dev", log=_quiet)
    assert "README.md" in hub.state.files("dataset", repo_id, "dev")
    assert set(hub.state.files("dataset", repo_id, "main")) == {".gitattributes"}
    publish.push_dataset(repo_id, dataset_dir, create_pr=True, log=_quiet)
    assert "README.md" in hub.state.files("dataset", repo_id, "refs/pr/1")


@pytest.mark.skipif(not __import__("conftest").HAVE_REAL, reason="needs Debian's dataset-fashion-mnist")
def test_push_dataset_builds_the_real_export_when_no_folder_is_given(hub, tmp_path):
    import datasets

    repo_id = _repo("real")
    assert cli.main(["push-dataset", "--repo-id", repo_id]) == 0
    loaded = datasets.load_dataset(repo_id, cache_dir=str(tmp_path / "clean"))
    assert {split: len(ds) for split, ds in loaded.items()} == {"train": 60_000, "test": 10_000}
    assert loaded["train"][:10]["label"] == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
