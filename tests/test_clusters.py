"""Training for clusters: resume on another process count, several machines, what each machine needs to see.

- A checkpoint written by N processes resumes on M (N, M in {1, 2}) and ends where the uninterrupted M-process run
  ends, up to the floor of tests/test_distributed.py (the same run with 2 threads instead of 1: reduction order).
- Gradient accumulation changing between the two runs is refused with one line.
- Two "machines" started without a launcher, the second in its own mount namespace (root only): with a shared output
  folder they agree; without one, the start-up check, the resume agreement and the checkpoint load each refuse with
  one line, naming the process and its host.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from counts import correct_images
from test_disk_full import OneProcess, _model_and_optimizer, _NoScheduler
from test_distributed import _initial_weights, _weights, relative_gap

from hf_fmnist.errors import HfFmnistError
from hf_fmnist.training import checkpoint

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    """512 train / 100 test learnable synthetic images (the set of tests/test_distributed.py)."""
    from learnable import learnable_export

    return learnable_export(tmp_path_factory.mktemp("small"), sizes=(512, 100))


def _train(args: list[str], processes: int) -> subprocess.CompletedProcess:
    """train.py on 1 process (plain python: its exit status is train.py's) or 2 (torchrun, gloo)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    launcher = [sys.executable]
    if processes > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
    return subprocess.run(
        [*launcher, str(ROOT / "train.py"), *args], env=env, capture_output=True, text=True, timeout=600
    )


@pytest.mark.slow
def test_a_checkpoint_resumes_on_another_process_count(tmp_path, small_dataset):
    """1 → 2 and 2 → 1 processes from the step-8 checkpoint of a 16-step run (global batch 128 either way): each
    resumed run ends no farther from the uninterrupted run on its own process count than twice the 2-threads floor
    (as tests/test_distributed.py's 2-processes-equal-1 test). A change of gradient accumulation is refused."""
    common = [
        *("--dataset", small_dataset, "--recipe", "cpu-5min", "--pad_crop", "1", "--random_erasing", "0.25"),
        *("--per_device_eval_batch_size", "50", "--num_train_epochs", "4", "--eval_last_epochs", "0"),
    ]

    def run(name: str, processes: int, *extra: str, threads: int = 1) -> subprocess.CompletedProcess:
        batch = ["--per_device_train_batch_size", str(128 // processes), "--cpu_threads", str(threads)]
        result = _train(["--output_dir", str(tmp_path / name), *common, *batch, *extra], processes)
        assert result.returncode == 0, result.stderr[-3000:]
        return result

    run("one", 1, "--checkpointing_steps", "8")
    run("one_2_threads", 1, threads=2)
    run("two", 2, "--checkpointing_steps", "8")
    for name, processes in (("one", 1), ("two", 2)):
        saved = json.loads((tmp_path / name / "step_8" / checkpoint.STATE_FILE).read_text())
        assert saved["num_processes"] == processes and saved["gradient_accumulation_steps"] == 1
        assert {f for f in saved["files"] if f.startswith("rng_state_")} == {
            f"rng_state_{r}.safetensors" for r in range(processes)
        }  # written by the main process, gathered from every process
    resumed = {
        "two_from_one": run("two_from_one", 2, "--resume_from_checkpoint", str(tmp_path / "one" / "step_8")),
        "one_from_two": run("one_from_two", 1, "--resume_from_checkpoint", str(tmp_path / "two" / "step_8")),
    }
    assert "at step 8 (written by 1 process, now 2)" in resumed["two_from_one"].stdout
    assert "at step 8 (written by 2 processes, now 1)" in resumed["one_from_two"].stdout
    res = {n: json.loads((tmp_path / n / "all_results.json").read_text()) for n in ("one", "two", *resumed)}
    assert [res[n]["num_processes"] for n in res] == [1, 2, 2, 1]
    assert res["one_from_two"]["resumes"] == [
        {"step": 8, "written_by_processes": 2, "num_processes": 1, "stopped_by": None}
    ]
    assert {res[n]["train_steps"] for n in res} == {16}
    start = _initial_weights("cnn", tmp_path / "start")
    one, two = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    floor = relative_gap(one, _weights(tmp_path / "one_2_threads"), start)
    gaps = {
        "2 -> 1 vs 1": relative_gap(one, _weights(tmp_path / "one_from_two"), start),
        "1 -> 2 vs 2": relative_gap(two, _weights(tmp_path / "two_from_one"), start),
        "2 vs 1 (no resume)": relative_gap(one, two, start),
    }
    print(f"floor (2 threads vs 1): {floor:.2e}; " + "; ".join(f"{k}: {v:.2e}" for k, v in gaps.items()))
    assert gaps["2 -> 1 vs 1"] <= max(2 * floor, 1e-6), (gaps, floor)
    assert gaps["1 -> 2 vs 2"] <= max(2 * floor, 1e-6), (gaps, floor)
    for resumed_run, whole in (("one_from_two", "one"), ("two_from_one", "two")):  # at most one image apart
        assert abs(correct_images(res[resumed_run]) - correct_images(res[whole])) <= 1, resumed_run

    refused = _train(
        [
            *("--output_dir", str(tmp_path / "accumulated"), *common, "--cpu_threads", "1"),
            *("--per_device_train_batch_size", "64", "--gradient_accumulation_steps", "2"),
            *("--resume_from_checkpoint", str(tmp_path / "two" / "step_8")),
        ],
        1,
    )
    assert refused.returncode == 2, refused.stderr[-3000:]
    errors = [line for line in refused.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in refused.stderr, refused.stderr[-3000:]
    assert "written with --gradient_accumulation_steps 1, this run has 2" in errors[0]


def test_load_says_how_many_processes_wrote_it_and_refuses_another_accumulation(tmp_path):
    accelerator, (model, optimizer) = OneProcess(), _model_and_optimizer(8)
    folder = checkpoint.save(accelerator, model, optimizer, checkpoint.TrainState(step=3), tmp_path, "step_3")
    state = checkpoint.load(folder, accelerator, model, optimizer, _NoScheduler())
    assert state.written_by_processes == 1
    assert checkpoint.resumed_line(folder, state, 2) == f"Resumed from {folder} at step 3 (written by 1 process, now 2)"

    class Accumulating(OneProcess):
        gradient_accumulation_steps = 4

    with pytest.raises(HfFmnistError, match=r"written with --gradient_accumulation_steps 1, this run has 4: .*") as e:
        checkpoint.load(folder, Accumulating(), model, optimizer, _NoScheduler())
    assert "\n" not in str(e.value)
    saved = json.loads((folder / checkpoint.STATE_FILE).read_text())
    for bad in (0, True, "2", 2.0):  # a forged count is a damaged checkpoint, not a crash
        (folder / checkpoint.STATE_FILE).write_text(json.dumps({**saved, "num_processes": bad}))
        with pytest.raises(checkpoint.CheckpointError, match="'num_processes' is"):
            checkpoint.load(folder, accelerator, model, optimizer, _NoScheduler())
    del saved["gradient_accumulation_steps"], saved["num_processes"]  # as an older version wrote it
    (folder / checkpoint.STATE_FILE).write_text(json.dumps(saved))
    state = checkpoint.load(folder, Accumulating(), model, optimizer, _NoScheduler())
    assert state.written_by_processes is None
    assert checkpoint.resumed_line(folder, state, 1).endswith("(written by an unknown number of processes, now 1)")


def test_a_machine_that_lacks_a_checkpoint_file_is_told_so(tmp_path):
    """A checkpoint written by 2 processes, read on a machine that lacks rank 1's generator state (a second machine
    with its own copy of --output_dir): one line naming the file, the host and the way out, not "damaged"."""
    accelerator, (model, optimizer) = OneProcess(), _model_and_optimizer(8)
    folder = checkpoint.save(accelerator, model, optimizer, checkpoint.TrainState(step=3), tmp_path, "step_3")
    saved = json.loads((folder / checkpoint.STATE_FILE).read_text())
    saved["files"]["rng_state_1.safetensors"] = saved["files"]["rng_state_0.safetensors"]
    (folder / checkpoint.STATE_FILE).write_text(json.dumps(saved))
    with pytest.raises(HfFmnistError, match=r"lacks rng_state_1\.safetensors on .*storage all machines share") as e:
        checkpoint.load(folder, accelerator, model, optimizer, _NoScheduler())
    assert socket.gethostname() in str(e.value) and not isinstance(e.value, checkpoint.CheckpointError)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_machines(tmp_path: Path, shared: bool) -> list[dict]:
    """tests/cluster_worker.py as ranks 0 and 1; rank 1 in its own mount namespace, with a tmpfs over the output
    folder when ``shared`` is False (a machine that does not see the main process's disk)."""
    out, report = tmp_path / "out", tmp_path / "report"
    out.mkdir()
    report.mkdir()
    port = _free_port()
    worker = [sys.executable, str(ROOT / "tests" / "cluster_worker.py"), str(out), str(report)]
    processes = []
    for rank in (0, 1):
        env = {
            **os.environ,
            "RANK": str(rank),
            "LOCAL_RANK": "0",
            "WORLD_SIZE": "2",
            "LOCAL_WORLD_SIZE": "1",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "OMP_NUM_THREADS": "1",
            "PYTHONPATH": str(ROOT / "tests"),
        }
        command = worker
        if rank == 1:
            mount = "" if shared else f"mount -t tmpfs tmpfs {out} && "
            command = ["unshare", "-m", "sh", "-c", f'{mount}exec "$@"', "sh", *worker]
        processes.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    try:
        outputs = [p.communicate(timeout=300)[0].decode(errors="replace") for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
    for p, output in zip(processes, outputs):
        assert p.returncode == 0, output[-3000:]
    return [json.loads((report / f"rank{r}.json").read_text()) for r in (0, 1)]


def _needs_namespaces():
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("a second 'machine' needs its own mount namespace: root and unshare (CI runs as root)")
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"unshare -m fails here: {probe.stderr.decode().strip()}")


@pytest.mark.slow
def test_two_machines_sharing_the_output_folder_save_and_resume(tmp_path):
    _needs_namespaces()
    ranks = _two_machines(tmp_path, shared=True)
    for r in ranks:
        assert {k: r[k] for k in ("shared", "save", "same", "load")} == dict.fromkeys(
            ("shared", "save", "same", "load"), "ok"
        )
    assert ranks[0]["files"] == sorted(
        ["model.safetensors", "optimizer.safetensors", "rng_state_0.safetensors", "rng_state_1.safetensors"]
    )
    assert not [p for p in tmp_path.rglob(".hf_fmnist-shared-*")]  # the token is removed


@pytest.mark.slow
def test_two_machines_without_shared_storage_are_refused_with_one_line(tmp_path):
    _needs_namespaces()
    ranks = _two_machines(tmp_path, shared=False)
    host = socket.gethostname()
    for r in ranks:  # the start-up check refuses on every process, before anything is trained
        assert r["shared"].startswith(f"--output_dir {tmp_path / 'out'} is not on storage all machines share: "), r
        assert f"process 1 on {host} cannot see the file process 0 on {host} wrote" in r["shared"]
        assert r["same"].startswith("the processes do not see the same checkpoint to resume from: process 0"), r
        assert "process 1 on" in r["same"] and "has no checkpoint" in r["same"]
    assert ranks[0]["save"] == "ok" and ranks[0]["load"] == "ok"
    assert ranks[1]["load"].startswith(f"checkpoint {tmp_path / 'out' / 'step_2'} lacks "), ranks[1]
    assert all("\n" not in value for r in ranks for value in r.values() if isinstance(value, str))
    assert not [p for p in tmp_path.rglob(".hf_fmnist-shared-*")]


def test_training_checks_the_shared_folder_and_the_agreed_checkpoint_before_it_trains(
    tmp_path, small_dataset, monkeypatch
):
    """The loop asks both questions of a multi-machine run (answered on one process without a collective), with the
    output folder and the checkpoint each process resolved: a loop that skipped them would train on machines that
    cannot resume, or with one machine starting over."""
    from hf_fmnist.training.loop import main as train_main

    from conftest import tiny_train_args

    calls = []

    def spy(name):
        original = getattr(checkpoint, name)
        return lambda accelerator, folder: calls.append((name, folder)) or original(accelerator, folder)

    for name in ("check_shared_storage", "check_same_everywhere"):
        monkeypatch.setattr(checkpoint, name, spy(name))
    out = tmp_path / "out"
    assert train_main(tiny_train_args(out, small_dataset, "--checkpointing_steps", "epoch")) == 0
    assert calls == [("check_shared_storage", str(out)), ("check_same_everywhere", None)]
    calls.clear()
    args = tiny_train_args(out, small_dataset, "--num_train_epochs", "2", "--resume_from_checkpoint", "latest")
    assert train_main(args) == 0
    assert calls == [("check_shared_storage", str(out)), ("check_same_everywhere", out / "epoch_1")]


def test_a_refusal_in_the_first_processs_turn_still_reaches_the_barrier():
    """Accelerate's local_main_process_first makes the others wait at a barrier the first process reaches after its
    turn: a refusal there (a bad dataset card) left them waiting until torchrun killed them, 30 s later."""
    import contextlib

    from hf_fmnist.training.accelerator import local_main_first

    events = []

    class FirstProcess:
        @contextlib.contextmanager
        def local_main_process_first(self):  # as Accelerate's _goes_first for the main process
            yield
            events.append("barrier")

    with pytest.raises(HfFmnistError, match="bad card"), local_main_first(FirstProcess()):
        raise HfFmnistError("bad card")
    assert events == ["barrier"]
    with pytest.raises(KeyError), local_main_first(FirstProcess()):  # a bug is not a refusal: it keeps its traceback
        raise KeyError("bug")
