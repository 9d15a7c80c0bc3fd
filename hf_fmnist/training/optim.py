"""The optimizer and the learning-rate schedule, and the one line that describes the optimizer on the model card."""

from __future__ import annotations

import math

import torch

BETAS = (0.9, 0.99)


def make_optimizer(model, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW; no decay on biases and normalisation weights (1-d parameters), as is standard."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=BETAS)


def describe_optimizer() -> str:
    """What :func:`make_optimizer` builds, as the card states it (``training_config.json`` → ``resolved``).

    >>> describe_optimizer()
    'AdamW (betas 0.9, 0.99)'
    """
    return f"{torch.optim.AdamW.__name__} (betas {BETAS[0]}, {BETAS[1]})"


def make_scheduler(kind: str, optimizer, warmup: int, total: int):
    """``onecycle``: linear warm-up to the peak, then cosine annealing to ~0; the rest from transformers."""
    if kind == "onecycle":

        def factor(step: int) -> float:
            if step < warmup:
                return 0.04 + 0.96 * step / max(1, warmup)
            progress = (step - warmup) / max(1, total - warmup)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    from transformers import get_scheduler

    return get_scheduler(kind, optimizer=optimizer, num_warmup_steps=warmup, num_training_steps=total)
