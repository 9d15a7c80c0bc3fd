"""Publishing end to end: the real huggingface_hub, datasets and transformers against the Hub-protocol test server."""

import base64
import hashlib
import json
import shutil
import threading
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest

from hf_fmnist import cli
from hf_fmnist.core.config import TrainConfig
from hf_fmnist.data.card import dataset_card_for_repo
from hf_fmnist.data.export import export
from hf_fmnist.hub import push as publish
from hf_fmnist.training.loop import train

from conftest import HUB_TOKEN, HUB_USER, Synthetic, synthetic_export, unique_repo
from hub_server import Fault


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory) -> Path:
    return synthetic_export(tmp_path_factory.mktemp("hubdata"), sizes=(96, 40))


@pytest.fixture(scope="module")
def model_dir(dataset_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("hubmodel") / "out"
    train(
        TrainConfig(
            output_dir=str(out),
            dataset=str(dataset_dir),
            num_train_epochs=1,
            per_device_train_batch_size=32,
            checkpointing_steps="1",
        )
    )
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

    repo_id = unique_repo("fmnist")
    assert cli.main(["push-dataset", "--repo-id", repo_id, "--dataset-dir", str(dataset_dir)]) == 0
    assert not any(p.endswith(".py") for p in hub.state.files("dataset", repo_id))
    local = datasets.load_dataset(str(dataset_dir))
    remote = datasets.load_dataset(repo_id, cache_dir=str(tmp_path / "clean"))
    for split in ("train", "test"):
        assert remote[split].features == local[split].features
        assert remote[split]["label"] == local[split]["label"]
        assert [np.asarray(i).tolist() for i in remote[split][:5]["image"]] == [
            np.asarray(i).tolist() for i in local[split][:5]["image"]
        ]
    streamed = datasets.load_dataset(repo_id, split="test", streaming=True)
    rows = list(streamed)
    assert [r["label"] for r in rows] == local["test"]["label"]
    assert np.array_equal(np.asarray(rows[3]["image"]), np.asarray(local["test"][3]["image"]))


def test_push_model_then_from_pretrained_and_pipeline_agree(model_dir, dataset_dir, hub, tmp_path):
    import datasets
    from transformers import AutoModelForImageClassification, pipeline

    repo_id = unique_repo("fmnist-cnn")
    url = publish.push_model(repo_id, model_dir, log=_quiet)
    assert url.endswith(repo_id)
    files = hub.state.files("model", repo_id)
    assert {
        "model.safetensors",
        "config.json",
        "preprocessor_config.json",
        "README.md",
        "all_results.json",
        "training_config.json",
        "confusion_matrix.png",
    } <= set(files)
    assert not any(p.startswith(("step_", "epoch_", ".")) and p != ".gitattributes" for p in files)
    assert HUB_TOKEN not in "".join(v.decode("utf-8", "replace") for v in files.values())
    model = AutoModelForImageClassification.from_pretrained(
        repo_id, cache_dir=str(tmp_path / "clean"), trust_remote_code=False
    )
    assert model.config.id2label[9] == "Ankle boot"
    images = [row["image"] for row in datasets.load_dataset(str(dataset_dir))["test"].select(range(12))]
    remote = pipeline(
        "image-classification",
        trust_remote_code=False,
        model=repo_id,
        device="cpu",
        model_kwargs={"cache_dir": str(tmp_path / "c2")},
    )
    local = pipeline("image-classification", trust_remote_code=False, model=str(model_dir), device="cpu")
    assert [r[0]["label"] for r in remote(images, top_k=1)] == [r[0]["label"] for r in local(images, top_k=1)]


def test_repush_makes_no_commit(dataset_dir, hub):
    repo_id = unique_repo("again")
    publish.push_dataset(repo_id, dataset_dir, log=_quiet)
    commits = hub.state.commit_count("dataset", repo_id)
    messages = []
    publish.push_dataset(repo_id, dataset_dir, log=messages.append)
    assert messages == [f"{repo_id}@main already holds this content: no commit made."]
    assert hub.state.commit_count("dataset", repo_id) == commits


def test_private_repo_needs_the_token(model_dir, hub, tmp_path):
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import RepositoryNotFoundError

    repo_id = unique_repo("private")
    publish.push_model(repo_id, model_dir, private=True, log=_quiet)
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download(repo_id, "config.json", token=False, cache_dir=str(tmp_path / "a"))
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download(repo_id, "config.json", token="hf_othertoken0123456789abcdef", cache_dir=str(tmp_path / "b"))
    path = hf_hub_download(repo_id, "config.json", cache_dir=str(tmp_path / "c"))
    assert json.loads(Path(path).read_text())["id2label"]["0"] == "T-shirt/top"


def test_fine_tune_from_a_hub_checkpoint(dataset_dir, tmp_path):
    from transformers import RegNetConfig, RegNetForImageClassification

    from hf_fmnist.core.models import preset_image_processor

    ckpt = tmp_path / "ckpt"
    RegNetForImageClassification(
        RegNetConfig(num_channels=3, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=4)
    ).save_pretrained(ckpt)
    preset_image_processor().save_pretrained(ckpt)
    repo_id = unique_repo("base")
    publish.push_folder(repo_id, ckpt, repo_type="model", log=_quiet)
    out = tmp_path / "ft"
    train(
        TrainConfig(
            output_dir=str(out),
            dataset=str(dataset_dir),
            model_name_or_path=repo_id,
            ignore_mismatched_sizes=True,
            num_train_epochs=1,
            per_device_train_batch_size=32,
        )
    )
    saved = json.loads((out / "config.json").read_text())
    assert len(saved["id2label"]) == 10 and saved["id2label"]["9"] == "Ankle boot"
    assert f"base_model: {repo_id}" in (out / "README.md").read_text()


def test_missing_and_rejected_tokens_fail_before_upload(dataset_dir, hub, monkeypatch, capsys):
    repo_id = unique_repo("notoken")
    monkeypatch.delenv("HF_TOKEN")
    before = len(hub.state.log)
    assert cli.main(["push-dataset", "--repo-id", repo_id, "--dataset-dir", str(dataset_dir)]) == 2
    assert "No Hugging Face token" in capsys.readouterr().err
    assert len(hub.state.log) == before  # nothing was sent
    assert (
        cli.main(
            [
                "push-dataset",
                "--repo-id",
                repo_id,
                "--dataset-dir",
                str(dataset_dir),
                "--token",
                "hf_wrongtoken0123456789",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "rejected the token" in err and "hf_wrongtoken0123456789" not in err
    assert ("dataset", repo_id) not in hub.state.repos


def test_bad_repo_ids_and_folders(dataset_dir, tmp_path, capsys):
    assert cli.main(["push-dataset", "--repo-id", "no-namespace", "--dataset-dir", str(dataset_dir)]) == 2
    assert "NAMESPACE/NAME" in capsys.readouterr().err
    assert cli.main(["push-model", "--repo-id", unique_repo("m"), "--model-dir", str(tmp_path)]) == 2
    assert "has no config.json" in capsys.readouterr().err
    with pytest.raises(publish.HubError, match="Repo id must be a string, not int"):
        publish.check_repo_id(42)


@pytest.mark.parametrize(
    "faults",
    [
        [Fault("POST", r"/preupload/", "503", times=2), Fault("POST", r"/commit/", "503", times=1)],
        [Fault("POST", r"/commit/", "drop", times=1)],
        [Fault("POST", r"/commit/", "apply_500", times=1)],
        [Fault("POST", r"/commit/", "apply_drop", times=1)],
        [Fault("POST", r"lfs/objects/batch", "503", times=1), Fault("GET", r"/tree/", "503", times=1)],
    ],
    ids=["503s", "dropped", "applied-then-500", "applied-then-dropped", "lfs-and-tree-503"],
)
def test_faults_end_with_full_content_in_exactly_one_commit(faults, dataset_dir, hub, monkeypatch):
    monkeypatch.setattr(publish, "BACKOFF_S", 0.05)
    repo_id = unique_repo("faulty")
    hub.state.faults[:] = faults
    messages = []
    try:
        result = _timeout(lambda: publish.push_dataset(repo_id, dataset_dir, log=messages.append))
    finally:
        hub.state.faults.clear()
    state = hub.state
    assert state.commit_count("dataset", repo_id) == 2  # the repo's initial commit + exactly one push
    local = {
        p.relative_to(dataset_dir).as_posix(): p.read_bytes()
        for p in dataset_dir.rglob("*")
        if p.is_file() and not p.name.startswith(".")
    }  # hidden files (our ownership marker) stay local
    local["README.md"] = dataset_card_for_repo(local["README.md"].decode(), repo_id).encode()  # rendered on push
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
        card.validate()  # POSTs to /api/validate-yaml on the endpoint, which is as strict as the Hub
        again = cls(str(card))
        assert again.data.to_dict() == card.data.to_dict() and again.text == card.text
    results = json.loads((model_dir / "all_results.json").read_text())
    # synthetic data is not Fashion-MNIST: training says so, and the card claims no test-split result
    assert results["eval_dataset_verified"] is False and results["train_dataset_verified"] is False
    assert ModelCard.load(model_dir / "README.md").data.eval_results is None


@pytest.mark.parametrize(
    "metadata, complaint",
    [
        ("license: not-a-license", "license"),
        ("pipeline_tag: not-a-task", "pipeline_tag"),
        ("datasets: 7", "datasets"),
        (
            "model-index:\n- name: x\n  results:\n  - task: {type: image-classification}\n    dataset: {name: d}\n"
            "    metrics: [{type: accuracy, value: 1}]",
            "dataset needs a type",
        ),
    ],
)
def test_the_test_hub_refuses_metadata_the_hub_refuses(metadata, complaint, hub, tmp_path):
    """The test server accepted any YAML, so a card the Hub refuses passed every test."""
    from huggingface_hub import RepoCard

    text = f"---\n{metadata}\n---\n# card\n"
    with pytest.raises(ValueError, match=complaint):
        RepoCard(text).validate(repo_type="model")  # RepoCard: sent as written, not re-serialised by ModelCardData
    folder = tmp_path / "repo"
    folder.mkdir()
    (folder / "README.md").write_text(text)
    repo_id = unique_repo("badcard")
    with pytest.raises(publish.HubError, match=f"rejected the card.*{complaint}"):
        publish.push_folder(repo_id, folder, repo_type="model", log=_quiet)
    assert set(hub.state.files("model", repo_id)) == {".gitattributes"}
    # a client that skips the check (an ndjson commit of its own) is refused by the commit endpoint itself
    lines = [
        {"key": "header", "value": {"summary": "x"}},
        {
            "key": "file",
            "value": {"path": "README.md", "encoding": "base64", "content": base64.b64encode(text.encode()).decode()},
        },
    ]
    status, answer = _http(
        "POST",
        f"{hub.endpoint}/api/models/{repo_id}/commit/main",
        "\n".join(json.dumps(line) for line in lines).encode(),
        token=HUB_TOKEN,
    )
    assert status == 400 and complaint in answer.decode()
    assert set(hub.state.files("model", repo_id)) == {".gitattributes"}


def test_dataset_metadata_is_checked_too(hub):
    from huggingface_hub import DatasetCard

    for bad in ("task_categories: [not-a-task]", "size_categories: [lots]", "license: [mit, nope]"):
        with pytest.raises(ValueError):
            DatasetCard(f"---\n{bad}\n---\n").validate()
    DatasetCard("---\ntask_categories: [image-classification]\nsize_categories: [10K<n<100K]\n---\n").validate()


def test_train_push_to_hub_without_id_publishes_no_local_path(dataset_dir, hub, tmp_path, tmp_path_factory):
    """Bugs: --push_to_hub was refused without --hub_model_id; training_config.json, TensorBoard's hparams and the
    card ("fine-tuned from /tmp/...") published paths of the training machine."""
    from transformers import RegNetConfig, RegNetForImageClassification

    from hf_fmnist.core.models import preset_image_processor

    ckpt = tmp_path / "base-ckpt"
    RegNetForImageClassification(
        RegNetConfig(num_channels=3, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=4)
    ).save_pretrained(ckpt)
    preset_image_processor().save_pretrained(ckpt)
    raw = tmp_path / "raw-files"
    raw.mkdir()
    name = f"fm-{uuid.uuid4().hex[:8]}"
    out = tmp_path / name
    train(
        TrainConfig(
            output_dir=str(out),
            dataset=str(dataset_dir),
            data_dir=str(raw),
            model_name_or_path=str(ckpt),
            ignore_mismatched_sizes=True,
            max_train_steps=2,
            per_device_train_batch_size=32,
            with_tracking=True,
            push_to_hub=True,
        )
    )
    repo_id = f"{HUB_USER}/{name}"  # the Trainer's default: <namespace>/<output_dir's name>
    files = hub.state.files("model", repo_id)
    assert files["all_results.json"] == (out / "all_results.json").read_bytes()
    hparams = [p for p in files if p.startswith("runs/") and p.endswith("hparams.yml")]
    assert hparams and any(p.startswith("runs/") and "tfevents" in p for p in files)
    assert f"output_dir: ./{name}" in files[hparams[0]].decode()
    machine = str(tmp_path_factory.getbasetemp()).encode()  # holds tmp_path and the dataset's folder
    leaked = [p for p, data in files.items() if machine in data or b"/pytest-of-" in data]
    assert leaked == []
    card = files["README.md"].decode()
    assert f'model="{repo_id}"' in card and f"\n# {name}\n" in card
    assert "fine-tuned from a local checkpoint (`./base-ckpt`)" in card
    saved = json.loads(files["training_config.json"])
    assert saved["config"]["dataset"] == "./export" and saved["config"]["data_dir"] == "./raw-files"
    assert saved["sources"] == {"dataset": "local", "model_name_or_path": "local"}


@pytest.mark.parametrize("max_eval_samples", [None, 39])
def test_training_records_whether_it_evaluated_the_whole_verified_test_split(
    max_eval_samples, hub, tmp_path, monkeypatch
):
    """Bug: the model-index claimed Fashion-MNIST's test split for any evaluation. Here the synthetic files stand in
    for the release (their checksums and sizes patched in), so training on them must claim it, unless a subset was
    evaluated."""
    from huggingface_hub import ModelCard

    from hf_fmnist.data import idx

    synthetic = Synthetic(tmp_path / "raw", sizes=(64, 40))
    for name, digest in synthetic.checksums.items():
        monkeypatch.setitem(idx.SHA256, name, digest)
    monkeypatch.setitem(idx.NUM_EXAMPLES, "train", 64)
    monkeypatch.setitem(idx.NUM_EXAMPLES, "test", 40)
    data = export(tmp_path / "export", data_dir=synthetic.folder, verify=False)
    out = tmp_path / "out"
    train(
        TrainConfig(
            output_dir=str(out),
            dataset=str(data),
            max_train_steps=1,
            per_device_train_batch_size=32,
            max_eval_samples=max_eval_samples,
        )
    )
    results = json.loads((out / "all_results.json").read_text())
    assert results["train_dataset_verified"] is True
    assert results["eval_dataset_verified"] is (max_eval_samples is None)
    assert results["epochs"] == 0.5 and results["steps_per_epoch"] == 2
    repo_id = unique_repo("claims")
    publish.push_model(repo_id, out, log=_quiet)  # the strict server validates the card's metadata
    card = ModelCard(hub.state.files("model", repo_id)["README.md"].decode())
    card.validate()
    assert card.data.datasets == ["zalando-datasets/fashion_mnist"]
    if max_eval_samples is None:
        assert [(r.dataset_type, r.dataset_split, r.metric_type) for r in card.data.eval_results] == [
            ("zalando-datasets/fashion_mnist", "test", "accuracy"),
            ("zalando-datasets/fashion_mnist", "test", "f1"),
        ]
        assert card.data.eval_results[0].metric_value == round(results["eval_accuracy"], 4)
    else:
        assert card.data.eval_results is None
        assert "39 images of the `test` split" in card.text and "model-index reports no result" in card.text


def test_pushes_without_repo_id_use_the_token_namespace(dataset_dir, model_dir, hub, tmp_path, capsys):
    """Bug: --repo-id was required; as the Trainer does, it defaults to <namespace>/hf_fmnist and
    <namespace>/<model folder name>."""
    assert cli.main(["push-dataset", "--dataset-dir", str(dataset_dir)]) == 0
    assert f"Dataset at {hub.endpoint}/datasets/{HUB_USER}/hf_fmnist" in capsys.readouterr().out
    card = hub.state.files("dataset", f"{HUB_USER}/hf_fmnist")["README.md"].decode()
    assert f'ds = load_dataset("{HUB_USER}/hf_fmnist")' in card
    folder = tmp_path / f"my model {uuid.uuid4().hex[:6]}"  # a space is not allowed in repo names
    shutil.copytree(model_dir, folder)
    assert cli.main(["push-model", "--model-dir", str(folder)]) == 0
    repo_id = f"{HUB_USER}/{folder.name.replace(' ', '-')}"
    assert f"Model at {hub.endpoint}/{repo_id}" in capsys.readouterr().out
    assert f'model="{repo_id}"' in hub.state.files("model", repo_id)["README.md"].decode()


def test_one_model_folder_pushed_to_two_repos_gets_a_right_card_in_each(model_dir, hub):
    """Bug: pushed cards quoted NAMESPACE/fashion-mnist-classifier; no widget examples were published."""
    from huggingface_hub import ModelCard

    before = {p: p.read_bytes() for p in model_dir.rglob("*") if p.is_file()}
    for repo_id in (unique_repo("first"), unique_repo("second")):
        publish.push_model(repo_id, model_dir, log=_quiet)
        files = hub.state.files("model", repo_id)
        card = files["README.md"].decode()
        assert card.count(f'"{repo_id}"') == 3 and f"\n# {repo_id.split('/')[1]}\n" in card
        assert "NAMESPACE" not in card and 'model="."' not in card
        widget = ModelCard(card).data.widget
        assert len(widget) == 6
        for item in widget:
            assert item["src"].startswith(f"{hub.endpoint}/{repo_id}/resolve/main/examples/")
            with urllib.request.urlopen(item["src"]) as answer:  # the URL the Hub's widget fetches
                assert answer.read() == (model_dir / "examples" / item["src"].rsplit("/", 1)[1]).read_bytes()
        messages = []
        publish.push_model(repo_id, model_dir, log=messages.append)
        assert messages == [f"{repo_id}@main already holds this content: no commit made."]
    assert {p: p.read_bytes() for p in model_dir.rglob("*") if p.is_file()} == before  # the folder is untouched


def test_a_folder_trained_before_paths_were_hidden_is_pushed_without_them(model_dir, dataset_dir, hub, tmp_path):
    """A model folder from before this fix holds absolute paths in training_config.json: the push leaves them out."""
    folder = tmp_path / "legacy"
    shutil.copytree(model_dir, folder)
    saved = json.loads((folder / "training_config.json").read_text())
    del saved["sources"]
    saved["config"].update(output_dir=str(folder), dataset=str(dataset_dir), data_dir=str(tmp_path / "raw"))
    (folder / "training_config.json").write_text(json.dumps(saved, indent=2))
    repo_id = unique_repo("legacy")
    publish.push_model(repo_id, folder, log=_quiet)
    files = hub.state.files("model", repo_id)
    pushed = json.loads(files["training_config.json"])
    assert pushed["config"]["output_dir"] == "./legacy" and pushed["config"]["dataset"] == "./export"
    assert pushed["sources"]["dataset"] == "local"
    assert not [p for p, data in files.items() if str(tmp_path).encode() in data or str(dataset_dir).encode() in data]
    commits = hub.state.commit_count("model", repo_id)
    publish.push_model(repo_id, folder, log=_quiet)
    assert hub.state.commit_count("model", repo_id) == commits


def test_a_later_model_push_keeps_the_demo_block_of_the_remote_card(model_dir, hub):
    from huggingface_hub import HfApi

    from hf_fmnist.core.card import DEMO_END, DEMO_START

    repo_id = unique_repo("demo")
    publish.push_model(repo_id, model_dir, log=_quiet)
    card = hub.state.files("model", repo_id)["README.md"].decode()
    block = f"{DEMO_START}\n## Demo\n\nTry it in [the Space]({hub.endpoint}/spaces/{repo_id}-demo).\n{DEMO_END}"
    HfApi().upload_file(
        path_or_fileobj=card.replace("## Results", f"{block}\n\n## Results").encode(),
        path_in_repo="README.md",
        repo_id=repo_id,
    )
    publish.push_model(repo_id, model_dir, log=_quiet)
    kept = hub.state.files("model", repo_id)["README.md"].decode()
    assert kept.count(block) == 1 and kept.index("## Usage") < kept.index(block) < kept.index("## Results")
    commits = hub.state.commit_count("model", repo_id)
    publish.push_model(repo_id, model_dir, log=_quiet)
    assert hub.state.commit_count("model", repo_id) == commits


def test_create_pr_opens_one_pull_request_per_content_and_names_it(dataset_dir, hub, monkeypatch, capsys, tmp_path):
    """Bug: a lost commit answer opened 2 PRs, re-pushing opened a 3rd, and the log said "Committed ... @main"."""
    monkeypatch.setattr(publish, "BACKOFF_S", 0.05)
    repo_id = unique_repo("prs")
    hub.state.faults[:] = [Fault("POST", r"/commit/", "apply_drop", times=1)]
    messages = []
    try:
        url = _timeout(lambda: publish.push_dataset(repo_id, dataset_dir, create_pr=True, log=messages.append))
    finally:
        hub.state.faults.clear()
    repo = hub.state.repos[("dataset", repo_id)]
    assert [d["num"] for d in repo.discussions] == [1]
    assert url == f"{hub.endpoint}/datasets/{repo_id}/discussions/1"
    assert any(f"Pull request {url} already holds this content" in m for m in messages)
    assert not any("Committed" in m for m in messages)
    card = hub.state.files("dataset", repo_id, "refs/pr/1")["README.md"].decode()
    assert f'ds = load_dataset("{repo_id}")' in card
    assert cli.main(["push-dataset", "--repo-id", repo_id, "--dataset-dir", str(dataset_dir), "--create-pr"]) == 0
    out = capsys.readouterr()
    assert f"Pull request at {url}" in out.out and "Committed" not in out.err
    assert len(repo.discussions) == 1 and set(hub.state.files("dataset", repo_id)) == {".gitattributes"}
    changed = tmp_path / "changed"
    shutil.copytree(dataset_dir, changed)
    with open(changed / "README.md", "a") as f:
        f.write("\nOne more line.\n")
    messages.clear()
    second = publish.push_dataset(repo_id, changed, create_pr=True, log=messages.append)
    assert second == f"{hub.endpoint}/datasets/{repo_id}/discussions/2"
    assert messages == [
        f"Opened pull request {second} against {repo_id}@main with 3 added/changed and 0 deleted file(s)."
    ]  # main is still empty: the PR holds the whole folder


def test_read_only_tokens_read_but_never_write(dataset_dir, hub, capsys):
    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub.errors import HfHubHTTPError

    token = "hf_readonly0123456789abcdef"
    hub.state.add_token(token, HUB_USER, role="read")
    reader = HfApi(token=token)
    assert reader.whoami()["auth"]["accessToken"]["role"] == "read"
    repo_id = unique_repo("readonly")
    assert cli.main(["push-dataset", "--repo-id", repo_id, "--dataset-dir", str(dataset_dir), "--token", token]) == 2
    err = capsys.readouterr().err
    assert "403" in err and token not in err
    assert ("dataset", repo_id) not in hub.state.repos
    publish.push_dataset(repo_id, dataset_dir, log=_quiet)  # with the write token
    assert "README.md" in reader.list_repo_files(repo_id, repo_type="dataset")
    for write in (
        lambda: reader.create_commit(
            repo_id, [CommitOperationAdd("x.txt", b"x")], commit_message="x", repo_type="dataset"
        ),
        lambda: reader.create_branch(repo_id, branch="b", repo_type="dataset"),
        lambda: reader.delete_repo(repo_id, repo_type="dataset"),
    ):
        with pytest.raises(HfHubHTTPError) as refused:
            write()
        assert refused.value.response.status_code == 403
    assert hub.state.commit_count("dataset", repo_id) == 2


def _http(method: str, url: str, body: bytes | dict = b"", token: str | None = None) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    request = urllib.request.Request(url, data=data if method != "GET" else None, method=method)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_lfs_writes_need_a_write_token_a_signed_url_and_the_declared_size(hub):
    """The test server took anonymous LFS writes and ignored declared sizes."""
    from huggingface_hub import HfApi

    repo_id = unique_repo("lfs")
    HfApi().create_repo(repo_id)
    hub.state.add_token("hf_readonly0123456789abcdef", HUB_USER, role="read")
    data = bytes(range(256)) * 4
    oid = hashlib.sha256(data).hexdigest()
    batch = f"{hub.endpoint}/{repo_id}.git/info/lfs/objects/batch"
    request = {"operation": "upload", "transfers": ["basic"], "objects": [{"oid": oid, "size": len(data)}]}
    assert _http("POST", batch, request)[0] == 401
    assert _http("POST", batch, request, token="hf_readonly0123456789abcdef")[0] == 403
    assert _http("POST", batch, request, token="hf_othertoken0123456789abcdef")[0] == 403  # not their namespace
    status, answer = _http("POST", batch, request, token=HUB_TOKEN)
    assert status == 200
    actions = json.loads(answer)["objects"][0]["actions"]
    href = actions["upload"]["href"]
    assert _http("PUT", href.split("?")[0], data)[0] == 403  # unsigned
    assert _http("PUT", href.replace(oid, "0" * 64), data)[0] == 403  # signed for another object
    assert _http("PUT", href, data[:-1])[0] == 400  # fewer bytes than declared
    assert _http("PUT", href, data)[0] == 200
    assert _http("POST", actions["verify"]["href"], {"oid": oid, "size": len(data) + 1}, token=HUB_TOKEN)[0] == 422
    assert _http("POST", actions["verify"]["href"], {"oid": oid, "size": len(data)})[0] == 401
    assert _http("POST", actions["verify"]["href"], {"oid": oid, "size": len(data)}, token=HUB_TOKEN)[0] == 200
    lines = [
        {"key": "header", "value": {"summary": "x"}},
        {"key": "lfsFile", "value": {"path": "w.bin", "algo": "sha256", "oid": oid, "size": len(data) - 1}},
    ]
    commit = f"{hub.endpoint}/api/models/{repo_id}/commit/main"
    ndjson = "\n".join(json.dumps(line) for line in lines).encode()
    assert _http("POST", commit, ndjson, token=HUB_TOKEN)[0] == 422
    assert "w.bin" not in hub.state.files("model", repo_id)


def test_preupload_ignores_what_the_repos_gitignore_ignores(hub):
    from huggingface_hub import CommitOperationAdd, HfApi

    api = HfApi()
    repo_id = unique_repo("ignore")
    api.create_repo(repo_id)
    api.upload_file(path_or_fileobj=b"# comment\n*.log\nlogs/\n/top.txt\n", path_in_repo=".gitignore", repo_id=repo_id)
    api.create_commit(
        repo_id,
        [
            CommitOperationAdd(p, p.encode())
            for p in ("a.txt", "b.log", "sub/c.log", "logs/d.txt", "top.txt", "sub/top.txt")
        ],
        commit_message="m",
    )
    assert set(hub.state.files("model", repo_id)) == {".gitattributes", ".gitignore", "a.txt", "sub/top.txt"}


def test_branch_and_pull_request(dataset_dir, hub):
    repo_id = unique_repo("branches")
    publish.push_dataset(repo_id, dataset_dir, revision="dev", log=_quiet)
    assert "README.md" in hub.state.files("dataset", repo_id, "dev")
    assert set(hub.state.files("dataset", repo_id, "main")) == {".gitattributes"}
    publish.push_dataset(repo_id, dataset_dir, create_pr=True, log=_quiet)
    assert "README.md" in hub.state.files("dataset", repo_id, "refs/pr/1")


@pytest.mark.real_data
def test_push_dataset_builds_the_real_export_when_no_folder_is_given(hub, tmp_path):
    import datasets

    repo_id = unique_repo("real")
    assert cli.main(["push-dataset", "--repo-id", repo_id]) == 0
    loaded = datasets.load_dataset(repo_id, cache_dir=str(tmp_path / "clean"))
    assert {split: len(ds) for split, ds in loaded.items()} == {"train": 60_000, "test": 10_000}
    assert loaded["train"][:10]["label"] == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]


def test_two_pushes_racing_to_one_repo_end_with_two_commits_and_the_last_ones_exact_content(model_dir, hub, tmp_path):
    """Both pushes read the remote state before either commits (a barrier at create_commit); the first then commits.
    The second commit names the revision it planned against (parent_commit), so the Hub refuses it (412) and the
    push re-reads the state and commits again: 2 commits, and the repo holds exactly the second folder's files.
    Without parent_commit the stale plan is applied on top of the first push and predictions.png, which only the
    first folder has, stays in the repo: a mix of both that neither user pushed."""
    from huggingface_hub import HfApi

    first, second = tmp_path / "first", tmp_path / "second"
    shutil.copytree(model_dir, first)
    shutil.copytree(model_dir, second)
    (second / "predictions.png").unlink()  # the first folder has a file the second lacks
    repo_id = unique_repo("raced")
    HfApi().create_repo(repo_id)
    initial = hub.state.commit_count("model", repo_id)

    original = HfApi.create_commit
    both_planned, first_done, lock = threading.Barrier(2, timeout=60), threading.Event(), threading.Lock()
    calls: list[tuple[str, str]] = []  # (push, outcome) in the order the commits were answered
    started: set[str] = set()

    def create_commit(self, *args, **kwargs):
        me = threading.current_thread().name
        with lock:
            first_call = me not in started
            started.add(me)
        if first_call:
            both_planned.wait()  # each push has read the head it will name as parent_commit
            if me == "second":
                assert first_done.wait(60)
        try:
            info = original(self, *args, **kwargs)
            calls.append((me, "committed"))
            return info
        except Exception as e:
            calls.append((me, f"refused {getattr(getattr(e, 'response', None), 'status_code', type(e).__name__)}"))
            raise
        finally:
            if me == "first":
                first_done.set()

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(HfApi, "create_commit", create_commit)
        mp.setattr(publish, "BACKOFF_S", 0.01)
        results, errors = [], []
        push = {
            name: (lambda f=f: publish.push_model(repo_id, f, log=_quiet))
            for name, f in [("first", first), ("second", second)]
        }
        threads = [threading.Thread(name=n, target=_capture, args=(push[n], results, errors)) for n in push]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    assert not errors and len(results) == 2, errors
    assert calls == [("first", "committed"), ("second", "refused 412"), ("second", "committed")]
    assert hub.state.commit_count("model", repo_id) == initial + 2

    solo = unique_repo("solo")  # what a push of the second folder alone publishes, for comparison
    publish.push_model(solo, second, log=_quiet)
    raced, alone = hub.state.files("model", repo_id), hub.state.files("model", solo)
    card = alone.pop("README.md").decode().replace(solo, repo_id).replace(solo.split("/")[1], repo_id.split("/")[1])
    assert raced.pop("README.md").decode() == card
    assert raced == alone and "predictions.png" not in raced
