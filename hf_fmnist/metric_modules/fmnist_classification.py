"""An ``evaluate`` metric for image classification: accuracy, top-5 accuracy, macro-F1, per-class accuracy and the
confusion matrix, from logits. Shipped inside hf_fmnist so it loads offline: ``evaluate.load(<path to this file>)``.
"""

import datasets
import evaluate
import numpy as np

from hf_fmnist.core.metrics import classification_report

_DESCRIPTION = "Accuracy, top-5 accuracy, macro-F1, per-class accuracy and the confusion matrix, from logits."
_KWARGS = """
Args:
    predictions: logits or scores, one row of num_classes floats per example.
    references: true class ids.
Returns:
    accuracy, top5_accuracy, macro_f1, samples, per_class_accuracy (by class name), confusion_matrix ([true][pred]).
"""


class FmnistClassification(evaluate.Metric):
    def __init__(self, class_names=None, **kwargs):
        super().__init__(**kwargs)
        self.class_names = list(class_names) if class_names is not None else [str(i) for i in range(10)]

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS,
            features=datasets.Features(
                {"predictions": datasets.Sequence(datasets.Value("float32")), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references):
        return classification_report(np.asarray(predictions), np.asarray(references), self.class_names)
