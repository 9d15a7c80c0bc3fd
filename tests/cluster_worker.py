"""One process of a 2-process group for tests/test_clusters.py, started without a launcher (RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR and MASTER_PORT in its environment), so that each can run in its own mount namespace: two
"machines" that share the output folder, or do not.

Usage: ``python cluster_worker.py OUTPUT_DIR REPORT_DIR``. Each step's outcome (``ok`` or the HfFmnistError line) goes
to ``REPORT_DIR/rank<R>.json``.
"""

import json
import sys
from pathlib import Path

import torch
from accelerate import Accelerator

from hf_fmnist.errors import HfFmnistError
from hf_fmnist.training import checkpoint


class NoScheduler:
    def step(self):
        pass


def main(out: Path, report: Path) -> None:
    accelerator = Accelerator(cpu=True)
    assert accelerator.num_processes == 2
    results: dict[str, str] = {}

    def attempt(name, step):
        try:
            step()
            results[name] = "ok"
        except HfFmnistError as e:
            results[name] = str(e)

    attempt("shared", lambda: checkpoint.check_shared_storage(accelerator, out, wait_s=1))
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    optimizer = torch.optim.AdamW(model.parameters())
    model, optimizer = accelerator.prepare(model, optimizer)
    out.mkdir(parents=True, exist_ok=True)
    state = checkpoint.TrainState(step=2)
    attempt("save", lambda: checkpoint.save(accelerator, model, optimizer, state, out, "step_2"))
    found = checkpoint.find_checkpoints(out)
    attempt("same", lambda: checkpoint.check_same_everywhere(accelerator, found[-1] if found else None))
    attempt("load", lambda: checkpoint.load(out / "step_2", accelerator, model, optimizer, NoScheduler()))
    if checkpoint.find_checkpoints(out):
        saved = json.loads((out / "step_2" / checkpoint.STATE_FILE).read_text())
        results["files"] = sorted(saved["files"])
    (report / f"rank{accelerator.process_index}.json").write_text(json.dumps(results))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
