"""Hostile input, one test per way it went wrong. Each test says what it caught on the earlier code.

Every case plays a user who downloaded a folder, checkpoint, model, dataset or image from a stranger: nothing in it
may run code, leave the folder it came in, use unbounded memory, or destroy the user's own files; bad input ends in
one clear line, never a traceback.
"""

import gzip
import http.server
import json
import os
import pickle
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from PIL import Image

from hf_fmnist import cli
from hf_fmnist.data import idx
from hf_fmnist.errors import HfFmnistError
from hf_fmnist.hub import push as publish
from hf_fmnist.training.loop import find_checkpoints
from hf_fmnist.training.loop import main as train_main

from conftest import one_error_line, synthetic_export, tiny_train_args

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory) -> str:
    return str(synthetic_export(tmp_path_factory.mktemp("safety"), sizes=(128, 40)))


@pytest.fixture(scope="module")
def checkpointed_run(tmp_path_factory, tiny_dataset) -> Path:
    """A finished run with checkpoints step_2 and step_4 (4 steps of 32 images)."""
    out = tmp_path_factory.mktemp("run") / "out"
    assert train_main(tiny_train_args(out, tiny_dataset, "--checkpointing_steps", "2")) == 0
    assert [p.name for p in find_checkpoints(out)] == ["step_2", "step_4"]
    return out


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


class _Planted:
    """Unpickling this runs a shell command that leaves a file behind: the proof that code ran."""

    def __init__(self, proof: Path):
        self.proof = proof

    def __reduce__(self):
        return (os.system, (f"touch {self.proof}",))


def _copy_checkpoint(run: Path, tmp_path: Path) -> Path:
    import shutil

    copy = tmp_path / "out"
    shutil.copytree(run, copy)
    return copy


# 1. Resume never unpickles ------------------------------------------------------------------------------------------


def test_resume_ignores_planted_pickles(checkpointed_run, tiny_dataset, tmp_path, capsys):
    """Before: accelerate's load_state unpickled custom_checkpoint_0.pkl (weights_only=False) and ran the command."""
    import shutil

    proof = tmp_path / "code-ran"
    downloaded = tmp_path / "from-a-stranger"
    shutil.copytree(checkpointed_run / "step_2", downloaded)
    for name in (
        "custom_checkpoint_0.pkl",
        "custom_checkpoint_1.pkl",
        "random_states_0.pkl",
        "optimizer.bin",
        "scheduler.bin",
        "pytorch_model.bin",
    ):
        with open(downloaded / name, "wb") as f:
            pickle.dump(_Planted(proof), f)
    out = tmp_path / "out"
    assert train_main(tiny_train_args(out, tiny_dataset, "--resume_from_checkpoint", str(downloaded))) == 0
    assert f"Resumed from {downloaded} at step 2" in capsys.readouterr().out
    assert not proof.exists()
    # planted inside a run folder, the checkpoint is no longer one that training may replace: refused up front
    shutil.copytree(downloaded, out / "step_2", dirs_exist_ok=True)
    assert train_main(tiny_train_args(out, tiny_dataset, "--resume_from_checkpoint", "latest")) == 2
    assert "step_2/, named like a checkpoint but holding files hf_fmnist did not write (custom_checkpoint_0.pkl" in (
        one_error_line(capsys)
    )
    assert not proof.exists()


@pytest.mark.parametrize("victim", ["optimizer.safetensors", "model.safetensors", "rng_state_0.safetensors"])
def test_a_tampered_checkpoint_file_is_one_clear_line(checkpointed_run, tiny_dataset, tmp_path, capsys, victim):
    """Before: a pickle in optimizer.bin / random_states_0.pkl was unpickled; a damaged file was a traceback."""
    out = _copy_checkpoint(checkpointed_run, tmp_path)
    proof = tmp_path / "code-ran"
    with open(out / "step_4" / victim, "wb") as f:
        pickle.dump(_Planted(proof), f)
    assert train_main(tiny_train_args(out, tiny_dataset, "--resume_from_checkpoint", str(out / "step_4"))) == 2
    line = one_error_line(capsys)
    assert "step_4 is damaged or was not written by hf_fmnist" in line and victim in line
    assert not proof.exists()


@pytest.mark.parametrize(
    "content", ["{not json", '{"format": "hf_fmnist-checkpoint", "version": 1, "step": "9"}', '{"step": 4}']
)
def test_a_malformed_trainer_state_is_one_clear_line(checkpointed_run, tiny_dataset, tmp_path, capsys, content):
    """Before: json.loads(...)["step"] raised a JSONDecodeError/KeyError traceback from find_checkpoints."""
    out = _copy_checkpoint(checkpointed_run, tmp_path)
    (out / "step_4" / "trainer_state.json").write_text(content)
    assert train_main(tiny_train_args(out, tiny_dataset, "--resume_from_checkpoint", "latest")) == 2
    assert "step_4 is damaged or was not written by hf_fmnist" in one_error_line(capsys)


def test_checkpoint_round_trip_restores_the_optimizer_exactly(checkpointed_run):
    """The pickle-free optimizer format loses nothing: every tensor and hyper-parameter comes back equal."""
    import torch

    from hf_fmnist.training import checkpoint

    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW([{"params": [model.weight], "weight_decay": 0.1}, {"params": [model.bias]}], lr=0.01)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    tensors, metadata = checkpoint._flatten_optimizer(opt.state_dict())
    restored = checkpoint._unflatten_optimizer(tensors, metadata, opt.state_dict())
    original = opt.state_dict()
    assert restored["param_groups"] == json.loads(json.dumps(original["param_groups"]))
    for index, entries in original["state"].items():
        for key, value in entries.items():
            assert torch.equal(restored["state"][index][key], value), (index, key)


class _OneProcess:
    """The little of an Accelerator that checkpoint.save and load use, for one CPU process."""

    is_main_process, process_index, num_processes, scaler = True, 0, 1, None
    device = "cpu"

    def wait_for_everyone(self):
        pass

    def unwrap_model(self, model, keep_torch_compile=True):
        return model


def test_a_checkpoint_restores_the_random_generators(tmp_path):
    """Resuming must continue the same random stream (dropout, any augmentation drawn from torch's generator)."""
    import torch

    from hf_fmnist.training import checkpoint

    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    checkpoint.save(_OneProcess(), model, optimizer, checkpoint.TrainState(), tmp_path, "step_1")
    expected = torch.rand(5)
    checkpoint.load(tmp_path / "step_1", _OneProcess(), model, optimizer, scheduler)
    assert torch.equal(torch.rand(5), expected)


def test_the_newest_checkpoint_is_the_highest_step_not_the_last_name(tmp_path):
    """step_10 sorts before step_9 by name; resuming "latest" from step_9 would silently redo a step."""
    from hf_fmnist.training.checkpoint import FORMAT, STATE_FILE, VERSION, find_checkpoints

    for step in (9, 10, 100):
        (tmp_path / f"step_{step}").mkdir()
        state = {"format": FORMAT, "version": VERSION, "step": step, "files": {}}
        (tmp_path / f"step_{step}" / STATE_FILE).write_text(json.dumps(state))
    assert [p.name for p in find_checkpoints(tmp_path)] == ["step_9", "step_10", "step_100"]


# 2. build never replaces a user's folder ---------------------------------------------------------------------------


def test_build_refuses_a_folder_with_a_readme_and_data_of_the_users(synthetic, tmp_path, capsys):
    """Before: README.md + data/measurements.csv passed check_replaceable and the folder was replaced (files gone)."""
    user = tmp_path / "notes"
    (user / "data").mkdir(parents=True)
    (user / "README.md").write_text("my notes")
    (user / "data" / "measurements.csv").write_text("a,b\n1,2\n")
    before = _snapshot(user)
    assert cli.main(["build", "--data-dir", str(synthetic.folder), "--no-verify", "--output-dir", str(user)]) == 2
    assert "did not write" in one_error_line(capsys)
    assert _snapshot(user) == before


def test_build_refuses_an_earlier_export_that_now_holds_user_files(synthetic, tmp_path, capsys):
    out = tmp_path / "export"
    args = ["build", "--data-dir", str(synthetic.folder), "--no-verify", "--output-dir", str(out)]
    assert cli.main(args) == 0
    assert cli.main(args) == 0  # an earlier export of ours is replaced
    (out / "data" / "measurements.csv").write_text("mine")
    capsys.readouterr()
    assert cli.main(args) == 2
    assert "data/measurements.csv" in one_error_line(capsys)
    assert (out / "data" / "measurements.csv").read_text() == "mine"


# 3. train never overwrites or deletes a user's files ----------------------------------------------------------------


def _user_folder(folder: Path) -> Path:
    (folder / "step_1").mkdir(parents=True)
    (folder / "README.md").write_text("my project")
    (folder / "config.json").write_text('{"mine": true}')
    (folder / "notes.txt").write_text("notes")
    (folder / "step_1" / "important.txt").write_text("important")
    return folder


def test_train_refuses_a_folder_it_did_not_write(tiny_dataset, tmp_path, capsys):
    """Before: README.md and config.json were overwritten and step_1/ deleted by save_checkpoint's rmtree."""
    user = _user_folder(tmp_path / "mine")
    before = _snapshot(user)
    assert train_main(tiny_train_args(user, tiny_dataset, "--checkpointing_steps", "1")) == 2
    assert "--overwrite_output_dir" in one_error_line(capsys)
    # even when told to write there, a step_N folder that is not our checkpoint is never replaced
    assert train_main(tiny_train_args(user, tiny_dataset, "--checkpointing_steps", "1", "--overwrite_output_dir")) == 2
    assert "step_1" in one_error_line(capsys)
    assert _snapshot(user) == before


def test_overwrite_output_dir_keeps_the_users_other_files(tiny_dataset, tmp_path):
    user = _user_folder(tmp_path / "mine")
    (user / "step_1" / "important.txt").rename(user / "important.txt")
    (user / "step_1").rmdir()
    assert train_main(tiny_train_args(user, tiny_dataset, "--checkpointing_steps", "2", "--overwrite_output_dir")) == 0
    assert (user / "notes.txt").read_text() == "notes" and (user / "important.txt").read_text() == "important"
    assert (user / "README.md").read_text() != "my project"  # the model card: writing there was asked for
    assert (user / "model.safetensors").is_file() and [p.name for p in find_checkpoints(user)] == ["step_2", "step_4"]


def _example_name(label: int) -> str:
    import re

    from hf_fmnist import CLASS_NAMES

    return f"{label}_{re.sub(r'[^a-z0-9]+', '_', CLASS_NAMES[label].lower()).strip('_')}.png"


def test_examples_of_the_users_are_never_deleted_or_replaced(tiny_dataset, tmp_path, capsys):
    """Before: every examples/N_name.png was deleted as if ours (1_cat.png too), and ours written over the user's."""
    user = tmp_path / "mine"
    (user / "examples").mkdir(parents=True)
    mine = {name: f"picture {name}".encode() for name in ["1_cat.png", *map(_example_name, range(5))]}
    for name, data in mine.items():
        (user / "examples" / name).write_bytes(data)
    args = tiny_train_args(user, tiny_dataset, "--checkpointing_steps", "2", "--overwrite_output_dir")
    assert train_main(args) == 0
    out = capsys.readouterr().out
    assert {name: (user / "examples" / name).read_bytes() for name in mine} == mine
    ours = sorted(p.name for p in (user / "examples").iterdir() if p.name not in mine and not p.name.startswith("."))
    assert ours and all(int(name.split("_")[0]) >= 5 for name in ours)
    kept = [line for line in out.splitlines() if line.startswith("note: kept")]
    assert len(kept) == 6 - len(ours)  # one line per example left out, each naming a file of the user's
    # a second run replaces its own examples (no note about them) and still leaves the user's alone
    assert train_main(args) == 0
    assert [line for line in capsys.readouterr().out.splitlines() if line.startswith("note: kept")] == kept
    assert {name: (user / "examples" / name).read_bytes() for name in mine} == mine
    assert sorted(p.name for p in (user / "examples").iterdir() if p.name not in mine and p.name[0] != ".") == ours


def test_an_examples_link_in_a_resumed_folder_is_not_written_through(checkpointed_run, tiny_dataset, tmp_path, capsys):
    """Before: a run folder whose examples/ linked to the user's pictures had them deleted and ours written there."""
    import shutil

    pictures = tmp_path / "pictures"
    pictures.mkdir()
    (pictures / "3_my_dress.png").write_bytes(b"my dress")
    (pictures / "0_t_shirt_top.png").write_bytes(b"my shirt")
    run = _copy_checkpoint(checkpointed_run, tmp_path)
    shutil.rmtree(run / "examples")
    (run / "examples").symlink_to(pictures)
    assert train_main(tiny_train_args(run, tiny_dataset, "--resume_from_checkpoint", "latest")) == 0
    assert "no example images written" in capsys.readouterr().out
    assert _snapshot(pictures) == {"0_t_shirt_top.png": b"my shirt", "3_my_dress.png": b"my dress"}
    assert (run / "examples").is_symlink() and (run / "model.safetensors").is_file()


def _evaluate(model, dataset, *extra) -> int:
    return cli.main(["evaluate", "--model", str(model), "--dataset", dataset, *extra])


def test_evaluate_never_writes_over_the_users_files(model_folder, tiny_dataset, tmp_path, capsys):
    """Before: --output-dir my_photos replaced the user's predictions.png and eval_results.json without a word."""
    photos = tmp_path / "my_photos"
    photos.mkdir()
    (photos / "predictions.png").write_bytes(b"holiday picture")
    (photos / "eval_results.json").write_text('{"mine": true}')
    before = _snapshot(photos)
    assert _evaluate(model_folder, tiny_dataset, "--output-dir", str(photos)) == 2
    assert "did not write" in one_error_line(capsys)
    assert _snapshot(photos) == before
    # a folder of its own it writes again
    assert _evaluate(model_folder, tiny_dataset, "--output-dir", str(tmp_path / "eval")) == 0
    assert _evaluate(model_folder, tiny_dataset, "--output-dir", str(tmp_path / "eval")) == 0


def test_evaluate_writes_nothing_through_links_in_a_strangers_model_folder(
    model_folder, tiny_dataset, tmp_path, capsys
):
    """Before: a link evaluation/.eval_results.json.tmp -> the user's notes.txt got the results written into it."""
    import shutil

    from hf_fmnist import ownership

    victim = tmp_path / "victim"
    victim.mkdir()
    for name in ("notes.txt", "holiday.png", "old.txt"):
        (victim / name).write_text(f"my {name}")
    before = _snapshot(victim)
    model = tmp_path / "model"
    shutil.copytree(model_folder, model)
    # the default output folder, a link out of the model folder: refused
    (model / "evaluation").symlink_to(victim)
    assert _evaluate(model, tiny_dataset) == 2
    assert "link" in one_error_line(capsys)
    # the default folder holding files evaluate did not write (no marker) is not evaluate's to replace
    (model / "evaluation").unlink()
    (model / "evaluation").mkdir()
    for name in ("eval_results.json", "confusion_matrix.png", "predictions.png"):
        (model / "evaluation" / name).write_text("old")
    (model / "evaluation" / "my_notes.txt").write_text("mine")
    assert _evaluate(model, tiny_dataset) == 2
    assert "my_notes.txt" in one_error_line(capsys)
    shutil.rmtree(model / "evaluation")
    assert _evaluate(model, tiny_dataset) == 0
    # a real folder dressed as ours, holding links named like every file evaluate writes (and its old temp file)
    shutil.rmtree(model / "evaluation")
    (model / "evaluation").mkdir()
    ownership.mark(model / "evaluation", ownership.EVALUATION)
    links = {
        ".eval_results.json.tmp": "notes.txt",
        "eval_results.json": "old.txt",
        "confusion_matrix.png": "holiday.png",
        "predictions.png": "holiday.png",
    }
    for name, target in links.items():
        (model / "evaluation" / name).symlink_to(victim / target)
    assert _evaluate(model, tiny_dataset) == 0
    assert _snapshot(victim) == before
    for name in ("eval_results.json", "confusion_matrix.png", "predictions.png"):
        assert not (model / "evaluation" / name).is_symlink()
    assert json.loads((model / "evaluation" / "eval_results.json").read_text())["eval_samples"] == 40


def test_evaluate_report_prints_names_from_files_escaped():
    from hf_fmnist.inference.evaluate import format_report

    hostile = "Shirt\x1b]0;owned\x07\x1b[2J\nerror: your token leaked"
    report = format_report(
        {
            "model": "m\x1b[31m",
            "dataset": "d",
            "split": "test",
            "eval_samples": 1,
            "eval_accuracy": 1.0,
            "eval_top5_accuracy": 1.0,
            "eval_macro_f1": 1.0,
            "eval_per_class_accuracy": {hostile: 1.0},
            "eval_ece": 0.0,
            "eval_ece_bins": 15,
            "eval_nll": 0.0,
            "eval_confused_pairs": [{"true": hostile, "predicted": hostile, "count": 1, "of": 1}],
            "output_dir": "out\nforged",
        }
    )
    assert "\x1b" not in report and "\x07" not in report
    # header, 3 metrics, ECE, NLL, "per class:", 1 class, "most confused pairs", 1 pair, "Saved ..."
    assert len(report.splitlines()) == 11 and "error: your token" not in "".join(
        line for line in report.splitlines() if line.startswith("error")
    )


def test_a_folder_of_ours_of_another_kind_is_not_a_training_output(tmp_path):
    """The marker's kind counts: a dataset export (ours, but not a run) must not be trained into."""
    from hf_fmnist import ownership
    from hf_fmnist.core.config import TrainConfig
    from hf_fmnist.training.loop import check_output_dir

    ownership.mark(tmp_path, ownership.EXPORT)
    (tmp_path / "README.md").write_text("the dataset card")
    with pytest.raises(HfFmnistError, match="did not write"):
        check_output_dir(TrainConfig(output_dir=str(tmp_path)))
    ownership.mark(tmp_path, ownership.TRAINING_OUTPUT)
    check_output_dir(TrainConfig(output_dir=str(tmp_path)))


def test_evaluate_refuses_a_model_whose_classes_come_in_another_order(tiny_dataset, tmp_path, capsys):
    """Same names, other order: every prediction would be scored against the wrong class."""
    from hf_fmnist import CLASS_NAMES
    from hf_fmnist.core import models

    folder = tmp_path / "reversed"
    models.create_model("cnn", names=list(reversed(CLASS_NAMES))).save_pretrained(folder)
    models.preset_image_processor().save_pretrained(folder)
    assert _evaluate(folder, tiny_dataset, "--output-dir", str(tmp_path / "eval")) == 2
    assert "differ from the dataset" in one_error_line(capsys)


def test_an_earlier_run_of_ours_resumes_from_an_explicit_checkpoint(checkpointed_run, tiny_dataset, tmp_path, capsys):
    out = _copy_checkpoint(checkpointed_run, tmp_path)
    assert train_main(tiny_train_args(out, tiny_dataset, "--resume_from_checkpoint", "step_does_not_matter")) == 2
    capsys.readouterr()
    assert train_main(tiny_train_args(out, tiny_dataset, "--resume_from_checkpoint", str(out / "step_2"))) == 0
    assert f"Resumed from {out / 'step_2'} at step 2" in capsys.readouterr().out


# 4. A push never follows a link out of the folder -------------------------------------------------------------------


def test_push_never_publishes_what_a_link_points_to_outside(tiny_dataset, tmp_path, hub):
    """Before: notes.txt -> a secret file outside the folder was listed and its content uploaded."""
    import shutil

    secret = tmp_path / "token"
    secret.write_text("hf_secretsecretsecretsecret0000")
    folder = tmp_path / "export"
    shutil.copytree(tiny_dataset, folder)
    (folder / "notes.txt").symlink_to(secret)
    (folder / "data" / "more").symlink_to(tmp_path, target_is_directory=True)
    (folder / "inside.md").symlink_to(folder / "README.md")  # even a link that stays inside is left out
    logged = []
    publish.push_dataset("tester/linked", folder, log=logged.append)
    remote = hub.state.files("dataset", "tester/linked")
    assert "notes.txt" not in remote and not any(b"secretsecret" in data for data in remote.values())
    assert not any(name.startswith("data/more") for name in remote)
    assert "inside.md" not in remote
    assert any("notes.txt" in line and "not a file hf_fmnist writes" in line for line in logged), logged


def test_push_model_publishes_only_what_training_wrote(checkpointed_run, tiny_dataset, tmp_path, hub):
    """Before: a folder trained into with the user's notes.txt published notes.txt along with the model."""
    out = _copy_checkpoint(checkpointed_run, tmp_path)
    (out / "notes.txt").write_text("private notes")
    (out / "examples" / "my_photo.jpg").write_bytes(b"mine")
    assert train_main(tiny_train_args(out, tiny_dataset)) == 0  # training again replaces only its own examples
    assert (out / "examples" / "my_photo.jpg").read_bytes() == b"mine"
    logged = []
    publish.push_model("tester/only-ours", out, log=logged.append)
    remote = hub.state.files("model", "tester/only-ours")
    assert "notes.txt" not in remote and "examples/my_photo.jpg" not in remote
    assert {"model.safetensors", "config.json", "README.md", "all_results.json"} <= set(remote)
    assert any(name.startswith("examples/") and name.endswith(".png") for name in remote)
    assert not any(name.startswith(("step_", ".")) for name in remote if name != ".gitattributes")
    assert any("notes.txt (not a file hf_fmnist writes)" in line for line in logged), logged


# 5. Remote code is refused explicitly, never prompted for -----------------------------------------------------------


def _remote_code_model(folder: Path, proof: Path) -> Path:
    folder.mkdir()
    (folder / "evil.py").write_text(f"open({str(proof)!r}, 'w').write('ran')\n")
    (folder / "config.json").write_text(
        json.dumps(
            {
                "model_type": "evil-net",
                "auto_map": {
                    "AutoConfig": "evil.EvilConfig",
                    "AutoModelForImageClassification": "evil.EvilModel",
                    "AutoImageProcessor": "evil.EvilProcessor",
                },
            }
        )
    )
    (folder / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "image_processor_type": "EvilProcessor",
                "auto_map": {"AutoImageProcessor": "evil.EvilProcessor"},
            }
        )
    )
    return folder


def test_fine_tuning_from_a_folder_asking_for_remote_code_runs_none(tiny_dataset, tmp_path, capsys, monkeypatch):
    """Before: no trust_remote_code was passed, transformers asked on stdin, and answering 'y' ran evil.py."""
    import io

    proof = tmp_path / "code-ran"
    model = _remote_code_model(tmp_path / "evil", proof)
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\ny\ny\n"))
    assert train_main(tiny_train_args(tmp_path / "out", tiny_dataset, "--model_name_or_path", str(model))) == 2
    assert "Cannot load model" in one_error_line(capsys)
    assert cli.main(["predict", "--model", str(model), str(tmp_path)]) == 2
    assert cli.main(["evaluate", "--model", str(model), "--dataset", tiny_dataset]) == 2
    assert not proof.exists()


def test_a_known_model_type_with_a_planted_processor_runs_no_code(model_folder, tmp_path, monkeypatch):
    """A stock model whose preprocessor_config.json asks for remote code: refused, not run, not silently replaced."""
    import io
    import shutil

    from hf_fmnist.core.models import load_image_processor

    proof = tmp_path / "code-ran"
    folder = tmp_path / "m"
    shutil.copytree(model_folder, folder)
    _remote_code_model(tmp_path / "evil", proof)
    shutil.copy(tmp_path / "evil" / "evil.py", folder)
    shutil.copy(tmp_path / "evil" / "preprocessor_config.json", folder)
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))
    with pytest.raises(HfFmnistError, match="never runs code from a model repo"):
        load_image_processor(str(folder))
    assert not proof.exists()


# 6. A gzip bomb stops early ------------------------------------------------------------------------------------------


def _bomb(path: Path, header: bytes, zeros: int) -> None:
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(header)
        chunk = bytes(8 << 20)
        for _ in range(zeros // len(chunk)):
            f.write(chunk)


def _peak_rss_mib(code: str) -> tuple[float, str]:
    """Run ``code`` in a fresh interpreter; its peak resident memory in MiB and its output.

    VmHWM, not getrusage: ru_maxrss carries over the forked parent's (pytest's) peak across exec.
    """
    wrapper = (
        f"{code}\nimport re\nprint('PEAK', re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1))"
    )
    result = subprocess.run([sys.executable, "-c", wrapper], capture_output=True, text=True, timeout=300)
    peak = next(line for line in result.stdout.splitlines() if line.startswith("PEAK")).split()[1]
    return int(peak) / 1024, result.stdout


def test_a_gzip_bomb_stops_at_what_the_header_promises(synthetic, tmp_path):
    """Before: a 2 MB .gz of 2 GB of zeros took 4.2 GB of memory and 31 s before 'unexpected trailing bytes'."""
    name = "train-images-idx3-ubyte"
    header = b"".join(x.to_bytes(4, "big") for x in (idx.IMAGES_MAGIC, 40, 28, 28))
    _bomb(synthetic.path(name), header, 640 << 20)  # 640 MiB of zeros behind a header promising 40 images
    code = (
        f"from hf_fmnist.data import idx\ntry:\n    idx.read_bytes({str(synthetic.path(name))!r}, idx.IMAGES_MAGIC)\n"
        f"except idx.IdxError as e:\n    print('ERROR', e)"
    )
    peak, out = _peak_rss_mib(code)
    assert "more than 1,048,576 unexpected trailing bytes after 40 images of 28x28" in out
    assert peak < 300, f"peak memory {peak:.0f} MiB"  # the whole bomb would be 640+ MiB


def test_a_header_promising_too_much_is_refused_before_reading(synthetic):
    header = b"".join(x.to_bytes(4, "big") for x in (idx.IMAGES_MAGIC, 4_000_000, 28, 28))
    synthetic.path("train-images-idx3-ubyte").write_bytes(gzip.compress(header + bytes(1000)))
    with pytest.raises(idx.IdxError, match="promises 4,000,000 items, more than the 100,000"):
        idx.read_split(synthetic.folder, "train", verify=False)


def test_a_fifo_in_the_data_folder_is_refused_not_read(synthetic):
    path = synthetic.path("train-labels-idx1-ubyte")
    path.unlink()
    os.mkfifo(path.with_suffix(""))  # the uncompressed name: found, but never opened for reading
    with pytest.raises(idx.IdxError, match="not a regular file"):
        idx.read_split(synthetic.folder, "train", verify=False)


def test_a_download_larger_than_any_original_is_cut_off(tmp_path, monkeypatch):
    from hf_fmnist.data import raw

    class Endless(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            try:
                for _ in range(64):
                    self.wfile.write(bytes(1 << 16))
            except OSError:
                pass

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Endless)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(raw, "MAX_DOWNLOAD_BYTES", 1 << 20)
    try:
        with pytest.raises(raw.DownloadError, match="sent more than 1,048,576 bytes"):
            raw.download(tmp_path / "dl", mirrors=[f"http://127.0.0.1:{server.server_port}/"])
    finally:
        server.shutdown()
    assert not list((tmp_path / "dl").glob("*.part"))  # a bad copy is not kept to resume from


# 7. Huge images: refused or shrunk on load, results streamed ---------------------------------------------------------


def test_a_huge_image_is_refused_before_it_is_decoded(model_folder, tmp_path):
    """Before: a 79 KB 9000x9000 PNG was decoded at full size (0.83 GB) and classified."""
    from hf_fmnist.inference.predict import predict

    Image.new("L", (9000, 9000)).save(tmp_path / "huge.png")
    Image.new("L", (1200, 900), 200).save(tmp_path / "photo.png")  # large but fine: shrunk on load
    results = {Path(r["path"]).name: r for r in predict(str(model_folder), [str(tmp_path)])}
    assert "9000x9000 pixels, more than the 8.4 MP" in results["huge.png"]["error"]
    assert "predictions" in results["photo.png"]


def test_predict_memory_stays_bounded_on_a_folder_of_large_images(model_folder, tmp_path):
    """Before: every image stayed full-size until a batch of 256 was full (12 x 9000x9000 -> 1.7 GB)."""
    folder = tmp_path / "big"
    folder.mkdir()
    for i in range(12):
        Image.new("L", (2800, 2800), i * 20).save(folder / f"{i}.png")  # 7.8 MP each, just under the cap
    code = (
        f"from hf_fmnist.inference.predict import predict\n"
        f"r = predict({str(model_folder)!r}, [{str(folder)!r}])\nprint('OK', sum('predictions' in x for x in r))"
    )
    peak, out = _peak_rss_mib(code)
    assert "OK 12" in out
    assert peak < 900, f"peak memory {peak:.0f} MiB"  # 12 full-size images would add 94 MB each on top of ~600


def test_results_are_streamed_batch_by_batch(model_folder, tmp_path, monkeypatch):
    from hf_fmnist.inference import predict as predict_module

    for i in range(5):
        Image.new("L", (28, 28), i * 50).save(tmp_path / f"{i}.png")
    loaded = []
    real = predict_module.load_image
    monkeypatch.setattr(predict_module, "load_image", lambda path: loaded.append(path.name) or real(path))
    stream = predict_module.iter_predict(str(model_folder), [str(tmp_path)], batch_size=2)
    first = [next(stream), next(stream)]
    assert [Path(r["path"]).name for r in first] == ["0.png", "1.png"] and loaded == ["0.png", "1.png"]
    assert len(list(stream)) == 3 and len(loaded) == 5


# 8. Image cells that hold a path -------------------------------------------------------------------------------------


def _path_only_dataset(cells: list[dict]):
    import datasets

    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(num_classes=10)})
    return datasets.Dataset.from_dict({"image": cells, "label": [0] * len(cells)}, features=features)


def test_image_cells_pointing_outside_the_dataset_folder_are_refused(tmp_path):
    """Before: {"bytes": null, "path": "/dev/zero"} was read until 3 GB; any readable file was read."""
    from hf_fmnist.data.tensors import decode

    folder = tmp_path / "dataset"
    (folder / "images").mkdir(parents=True)
    Image.new("L", (28, 28), 7).save(folder / "images" / "ok.png")
    secret = tmp_path / "secret.png"
    Image.new("L", (28, 28), 9).save(secret)
    for path, message in [
        ("/dev/zero", "outside the dataset folder"),
        (str(secret), "outside the dataset folder"),
        ("../secret.png", "outside the dataset folder"),
    ]:
        with pytest.raises(HfFmnistError, match=message):
            decode(_path_only_dataset([{"bytes": None, "path": path}]), folder)
    with pytest.raises(HfFmnistError, match="only a path"):  # a Hub dataset has no folder to be inside
        decode(_path_only_dataset([{"bytes": None, "path": "images/ok.png"}]), None)
    os.mkfifo(folder / "images" / "fifo.png")
    with pytest.raises(HfFmnistError, match="not a regular file"):
        decode(_path_only_dataset([{"bytes": None, "path": "images/fifo.png"}]), folder)
    images, _ = decode(_path_only_dataset([{"bytes": None, "path": "images/ok.png"}]), folder)
    assert images.shape == (1, 28, 28) and (images == 7).all()


# 9. Hostile file names in predict's output ----------------------------------------------------------------------------


def test_file_names_cannot_forge_output_lines(model_folder, tmp_path, capsys):
    """Before: a name with a newline printed a forged result line and raw escape codes; a non-UTF-8 name crashed."""
    folder = tmp_path / "in"
    folder.mkdir()
    forged = "a.png\nforged.png: Bag 100.0%\x1b[31m.png"
    Image.new("L", (28, 28), 30).save(folder / forged)
    raw_name = os.fsencode(folder) + b"/caf\xe9.png"
    Image.new("L", (28, 28), 60).save(raw_name.decode("utf-8", "surrogateescape"), format="PNG")
    assert cli.main(["predict", "--model", str(model_folder), str(folder)]) == 0
    out = capsys.readouterr().out
    assert len(out.strip().splitlines()) == 2 and "\x1b" not in out
    assert "a.png\\nforged.png: Bag 100.0%\\x1b[31m.png: " in out and "caf\\xe9.png: " in out
    assert cli.main(["predict", "--json", "--model", str(model_folder), str(folder)]) == 0
    paths = sorted(r["path"] for r in json.loads(capsys.readouterr().out))
    assert paths == sorted([str(folder / forged), os.fsdecode(raw_name)])  # JSON keeps the exact names


def test_streamed_json_is_exactly_json_dumps(model_folder, tmp_path, capsys):
    for i in range(3):
        Image.new("L", (28, 28), i).save(tmp_path / f"{i}.png")
    (tmp_path / "bad.png").write_text("not an image")
    from hf_fmnist.inference.predict import predict

    expected = json.dumps(predict(str(model_folder), [str(tmp_path)], top_k=3), indent=2) + "\n"
    assert cli.main(["predict", "--json", "--model", str(model_folder), str(tmp_path)]) == 1
    assert capsys.readouterr().out == expected


# 10. Errors are one line ---------------------------------------------------------------------------------------------


def test_a_fifo_given_to_predict_is_named_not_read(model_folder, tmp_path):
    """Before: 'empty file (0 bytes)' (the FIFO's size); opening it for reading would block."""
    from hf_fmnist.inference.predict import predict

    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    [result] = predict(str(model_folder), [str(fifo)])
    assert "a FIFO, not an image file" in result["error"]


def test_a_whoami_reply_that_is_not_json_is_one_line(tmp_path, monkeypatch):
    """Before: the JSONDecodeError escaped _check_token as a traceback."""
    from huggingface_hub import constants

    class Html(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"<html>captive portal</html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Html)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    (tmp_path / "f.txt").write_text("x")
    try:
        with pytest.raises(publish.HubError, match="answered whoami with something that is not JSON"):
            publish.push_folder("tester/x", tmp_path, repo_type="model", log=lambda m: None)
    finally:
        server.shutdown()


def test_hub_errors_keep_the_servers_reason_and_redact_credentials():
    """Before: only the first line ('Bad request:') survived, and only hf_ tokens of one shape were redacted."""
    error = Exception(
        "Bad request:\n  'license' must be one of the Hub's ids, got 'x'\n"
        "sent with Authorization: Bearer abc.def-ghi and hf_AbCdEfGhIjKlMnOpQrStUv012345"
    )
    reason = publish._reason(error)
    assert "\n" not in reason and "'license' must be one of the Hub's ids" in reason
    assert "abc.def-ghi" not in reason and "AbCdEfGhIjKlMnOp" not in reason
    assert "Bearer ***" in reason and "hf_***" in reason
    assert publish.redact("built by hf_fmnist") == "built by hf_fmnist"  # package names are not tokens
