"""What a push publishes: only the files hf_fmnist writes, a dataset whole or not at all, cards read in bounded time.

Each test replays a case of the outside review and says what happened before the fix.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hf_fmnist import cli
from hf_fmnist.hub import files as gate

from conftest import one_error_line, synthetic_export, tiny_train_args, unique_repo


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory) -> Path:
    return synthetic_export(tmp_path_factory.mktemp("publishing"), sizes=(40, 20))


@pytest.fixture(scope="module")
def trained(export_dir, tmp_path_factory) -> Path:
    """One tiny model, with TensorBoard logs (runs/), shared by the module's tests."""
    from hf_fmnist.training.loop import main as train_main

    out = tmp_path_factory.mktemp("trained") / "m"
    assert train_main(tiny_train_args(out, str(export_dir), "--max_train_steps", "1", "--with_tracking")) == 0
    return out


@pytest.fixture
def model_copy(trained, tmp_path) -> Path:
    folder = tmp_path / "m"
    shutil.copytree(trained, folder)
    return folder


@pytest.fixture
def dataset_copy(export_dir, tmp_path) -> Path:
    folder = tmp_path / "ds"
    shutil.copytree(export_dir, folder)
    return folder


def _not_created(hub, repo_type: str, repo_id: str) -> bool:
    return (repo_type, repo_id) not in hub.state.repos


# A model folder: only the files training and export write ---------------------------------------------------------


def test_a_users_own_files_in_a_model_folder_stay_local(model_copy, hub, capsys):
    """Before: my_passport_scan.png ("*.png"), runs/notes.txt and runs/private/diary.md ("runs/*", "runs/*/*") were
    uploaded with no "Not publishing" line; examples/²_boot.png made the card raise ValueError (a traceback)."""
    own = ["my_passport_scan.png", "runs/notes.txt", "runs/private/diary.md", "examples/²_boot.png", "onnx/other.onnx"]
    for rel in own:
        (model_copy / rel).parent.mkdir(parents=True, exist_ok=True)
        (model_copy / rel).write_bytes(b"api_key=SECRET123\n")
    repo_id = unique_repo("ownfiles")
    assert cli.main(["push-model", "--repo-id", repo_id, "--model-dir", str(model_copy)]) == 0
    remote = hub.state.files("model", repo_id)
    assert not [path for path, data in remote.items() if b"SECRET123" in data]
    assert {"learning_curves.png", "confusion_matrix.png", "predictions.png"} <= set(remote)
    ours = {p.relative_to(model_copy).as_posix() for p in (model_copy / "examples").glob("[0-9]_*.png")}
    assert ours and ours <= set(remote)  # the widget's examples, as training wrote them
    runs = sorted(p for p in remote if p.startswith("runs/"))  # TensorBoard's files, as accelerate wrote them
    assert any(p.endswith("/hparams.yml") for p in runs) and any("events.out.tfevents." in p for p in runs), runs
    log = capsys.readouterr().err
    assert "Not publishing" in log
    for rel in own:
        assert f"{rel} (not a file hf_fmnist writes)" in log, rel


def test_the_model_list_names_each_file_as_hf_fmnist_writes_it(tmp_path):
    """Before: any PNG, anything up to four folders deep under runs/ and anything under onnx/ was published."""
    ours = [
        "README.md",
        "config.json",
        "preprocessor_config.json",
        "model.safetensors",
        "model-00001-of-00002.safetensors",
        "model.safetensors.index.json",
        "all_results.json",
        "training_config.json",
        "learning_curves.png",
        "confusion_matrix.png",
        "predictions.png",
        "examples/3_dress.png",
        "examples/9_ankle_boot.png",
        "onnx/model.onnx",
        "onnx/model_quantized.onnx",
        "onnx/model_fp16.onnx",
        "onnx/export.json",
        "runs/hf_fmnist/events.out.tfevents.1796284550.vm.7811.0",
        "runs/hf_fmnist/1796284550.8963056/events.out.tfevents.1796284550.vm.7811.1",
        "runs/hf_fmnist/1796284550.8978794/hparams.yml",
    ]
    theirs = [
        "scan.png",
        "plots/learning_curves.png",
        "examples/²_boot.png",
        "examples/photo.png",
        "examples/3_Dress.png",
        "examples/4_coat.png",  # named like ours, but not one training wrote (its examples/ marker lists those)
        "onnx/model.onnx.bak",
        "onnx/notes.txt",
        "onnx/model_int8.onnx",
        "runs/notes.txt",
        "runs/hf_fmnist/notes.txt",
        "runs/hf_fmnist/private/hparams.yml",
        "runs/private/diary.md",
        "runs/a/b/c/events.out.tfevents.1.x",
        "model-final.safetensors",
    ]
    folder = tmp_path / "m"
    for rel in ours + theirs:
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(rel.encode())
    from hf_fmnist import ownership

    ownership.mark(folder / "examples", ownership.EXAMPLES, files=["3_dress.png", "9_ankle_boot.png"])
    logged: list[str] = []
    selected = gate.gather(
        folder, tmp_path / "snapshot", include=gate.model_files(folder), ignore=gate.MODEL_IGNORE, log=logged.append
    )
    assert sorted(selected) == sorted(ours)
    assert len(logged) == 1 and all(f"{rel} (not a file hf_fmnist writes)" in logged[0] for rel in theirs), logged


def test_an_example_named_with_a_superscript_digit_is_titled_by_its_name():
    """Before: '²'.isdigit() is True and int('²') raised ValueError while rendering the card's widget."""
    from hf_fmnist.core.card import _example_title

    assert _example_title("²_boot.png", {2: "pullover"}) == "²_boot.png"
    assert _example_title("9_ankle_boot.png", {9: "ankle boot"}) == "ankle boot"


@pytest.mark.parametrize("id2label", [{"zero": "a"}, {"0": 5}, {"٣": "a"}])
def test_a_config_whose_id2label_is_not_indices_to_names_is_one_line(model_copy, hub, capsys, id2label):
    """Before: push-model ended in "ValueError: invalid literal for int()" (a traceback) at the card's id2label."""
    path = model_copy / "config.json"
    config = json.loads(path.read_text())
    path.write_text(json.dumps({**config, "id2label": {**config["id2label"], **id2label}}))
    repo_id = unique_repo("id2label")
    assert cli.main(["push-model", "--repo-id", repo_id, "--model-dir", str(model_copy)]) == 2
    line = one_error_line(capsys)
    assert f"{model_copy}/config.json: field 'id2label'" in line, line  # the user's folder, not the snapshot
    assert _not_created(hub, "model", repo_id)


# A dataset: whole or not at all -----------------------------------------------------------------------------------


def test_a_dataset_push_leaving_out_a_shard_is_refused(dataset_copy, tmp_path, hub, capsys):
    """Before: the hard-linked test shard was left out and the push went ahead, publishing a card that declares a
    test split with only the train shard: a dataset that does not load."""
    shard = next((dataset_copy / "data").glob("test-*.parquet"))
    os.link(shard, tmp_path / "second-name.parquet")
    repo_id = unique_repo("leftshard")
    args = ["push-dataset", "--repo-id", repo_id, "--dataset-dir", str(dataset_copy)]
    assert cli.main(args) == 2
    line = one_error_line(capsys)
    assert f"data/{shard.name} cannot be published" in line, line
    assert _not_created(hub, "dataset", repo_id)

    (tmp_path / "second-name.parquet").unlink()  # a single link again; a file nobody reads stays local, as before
    (dataset_copy / "notes.txt").write_text("mine")
    assert cli.main(args) == 0
    remote = set(hub.state.files("dataset", repo_id))
    assert {f"data/{p.name}" for p in (dataset_copy / "data").glob("*.parquet")} <= remote
    assert "notes.txt" not in remote


def test_a_dataset_push_leaving_out_a_file_its_card_names_is_refused(dataset_copy, hub, capsys):
    """Before: a config of the card naming extra/*.jsonl was published without the file (not one hf_fmnist writes)."""
    card = dataset_copy / "README.md"
    text = card.read_text()
    assert text.startswith("---\n") and "\nconfigs:\n" in text
    card.write_text(text.replace("\nconfigs:\n", "\nconfigs:\n- config_name: extra\n  data_files: extra/*.jsonl\n", 1))
    (dataset_copy / "extra").mkdir()
    (dataset_copy / "extra" / "rows.jsonl").write_text('{"label": 1}\n')
    repo_id = unique_repo("cardnames")
    assert cli.main(["push-dataset", "--repo-id", repo_id, "--dataset-dir", str(dataset_copy)]) == 2
    assert "extra/rows.jsonl cannot be published" in one_error_line(capsys)
    assert _not_created(hub, "dataset", repo_id)


# The model card a Space push edits ---------------------------------------------------------------------------------


def test_a_card_of_start_markers_is_searched_in_linear_time():
    """Before: START.*?END with re.S tried every start marker against the rest of the card: 40,000 markers (0.9 MB,
    under the size cap) took minutes (87,000: over 300 s at 100% CPU)."""
    script = (
        "import time\n"
        "from hf_fmnist.core.card import DEMO_START\n"
        "from hf_fmnist.hub.space import with_demo_block\n"
        "card = '# model\\n\\n## Usage\\n\\n' + DEMO_START * 40_000 + '\\n'\n"
        "t = time.perf_counter()\n"
        "new = with_demo_block(card, 'me/space', 'https://hub/spaces/me/space')\n"
        "assert new.count(DEMO_START) == 40_001 and 'me/space' in new\n"
        "print(time.perf_counter() - t)\n"
    )
    try:
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail("with_demo_block ran for more than 20 s on a 0.9 MB card")
    assert done.returncode == 0, done.stderr
    assert float(done.stdout) < 1.0


def test_a_remote_card_over_the_size_cap_is_left_as_it_is(hub):
    """Before: update_file downloaded and edited a remote README.md of any size (the regex above then ran on it)."""
    from huggingface_hub import CommitOperationAdd, HfApi

    from hf_fmnist.core.card import MAX_README_BYTES
    from hf_fmnist.hub.space import link_from_model_card

    model_id = unique_repo("bigcard")
    api = HfApi()
    api.create_repo(model_id)
    card = ("---\nlicense: mit\n---\n# model\n\n## Usage\n\n" + "x" * (MAX_README_BYTES + 10) + "\n").encode()
    api.create_commit(model_id, [CommitOperationAdd("README.md", card)], commit_message="a big card")
    logged: list[str] = []
    assert not link_from_model_card(model_id, "tester/space", "https://hub/spaces/tester/space", log=logged.append)
    assert len(logged) == 1 and "README.md" in logged[0] and f"more than {MAX_README_BYTES:,}" in logged[0], logged
    assert hub.state.files("model", model_id)["README.md"] == card
