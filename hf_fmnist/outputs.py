"""The model folder a training run leaves: everything the Hub and stock transformers need, written atomically.

``model.safetensors``, ``config.json``, ``preprocessor_config.json``, ``all_results.json``, ``training_config.json``,
``learning_curves.png``, ``confusion_matrix.png``, ``predictions.png`` and the ``README.md`` model card. Files are
assembled in a temp folder inside the output folder and moved into place one by one, so no file is ever half written
and checkpoints or logs already there are left alone.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from . import plots

RESULTS_FILE = "all_results.json"


def write_model_folder(output_dir, model, processor, results: dict, config, resolved: dict, *,
                       images: np.ndarray, logits: np.ndarray, labels: np.ndarray, names) -> Path:
    from . import cards

    output_dir = Path(output_dir)
    tmp = output_dir / ".final.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        model = model.to("cpu")
        for p in model.parameters():  # channels_last weights are not contiguous; safetensors wants them so
            p.data = p.data.contiguous()
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        (tmp / RESULTS_FILE).write_text(json.dumps(results, indent=2) + "\n")
        config.save(tmp, **resolved, num_processes=results["num_processes"])
        predictions = logits.argmax(axis=1)
        plots.learning_curves(results["history"], tmp / "learning_curves.png")
        plots.confusion_matrix(np.asarray(results["eval_confusion_matrix"]), names, tmp / "confusion_matrix.png")
        plots.predictions_grid(images, labels, predictions, names, tmp / "predictions.png")
        cards.model_card(model, processor, results, config, resolved).save(tmp / "README.md")
        for item in sorted(tmp.iterdir()):
            os.replace(item, output_dir / item.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return output_dir

