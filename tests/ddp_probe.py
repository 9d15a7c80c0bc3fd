"""``train.py`` with a record of what each process did, for the multi-process tests (run under torchrun).

Each process writes ``rank<R>.json`` into ``$HF_FMNIST_PROBE_DIR``: the dataset indices of every training batch it
took, in order, and a digest of its model's weights and buffers at the final evaluation. The training code runs
unchanged; the probe only wraps two functions to look at their arguments.
"""

import hashlib
import json
import os
import sys
from pathlib import Path

from hf_fmnist.core import loader
from hf_fmnist.training import loop as train

record: dict = {"train_batches": [], "weights_sha256": None}
_apply, _evaluate_logits = loader.DeviceLoader._apply, train.evaluate_logits


def apply(self, index, draws):
    """Every training batch goes through ``_apply`` with this process's indices (its share of the global batch)."""
    if self.train:
        record["train_batches"].append(index.tolist())
    return _apply(self, index, draws)


def evaluate_logits(model, eval_loader, accelerator=None):
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.removeprefix("module.").encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    record["weights_sha256"] = digest.hexdigest()  # the last call is the final evaluation
    return _evaluate_logits(model, eval_loader, accelerator)


if __name__ == "__main__":
    loader.DeviceLoader._apply = apply
    train.evaluate_logits = evaluate_logits
    status = train.main(sys.argv[1:])
    out = Path(os.environ["HF_FMNIST_PROBE_DIR"]) / f"rank{os.environ.get('RANK', '0')}.json"
    out.write_text(json.dumps(record))
    sys.exit(status)
