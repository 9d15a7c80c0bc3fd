"""BatchNorm over the global batch: N processes normalise with the statistics of all their images together.

With plain BatchNorm each process normalises its own share, so N processes with batch B/N train another model than
one process with batch B. ``torch.nn.SyncBatchNorm`` fixes that on GPUs only: it refuses CPU tensors and relies on
CUDA-only kernels (``batch_norm_stats`` has no CPU implementation in torch 2.13), so N CPU processes over gloo could
not use it. :class:`GlobalBatchNorm2d` (and its 1d and 3d siblings) does the same with two all-reduces of
per-channel sums, on any device and backend, and its backward all-reduces the gradients of those sums, so every
process's parameters get the gradient of the loss over the global batch.

:func:`synchronise` changes the class of a model's ``BatchNorm{1,2,3}d`` layers in place: parameters, buffers and
``state_dict`` keys stay the same, so checkpoints, ``save_pretrained`` and the saved config are those of the stock
model. Statistics are computed in float32 by two passes (sum, then centred squares), as ``F.batch_norm`` does.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


class _AllReduceSum(torch.autograd.Function):
    """Sum over processes; its gradient is the sum of the processes' gradients (each process's loss uses it)."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.clone()
        dist.all_reduce(tensor)
        return tensor

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class _GlobalStatistics(_BatchNorm):
    """The forward of a ``BatchNorm{1,2,3}d`` subclass, with training statistics over the global batch.

    It derives from their common base so that its attributes are BatchNorm's; in ``GlobalBatchNorm2d(_GlobalStatistics,
    nn.BatchNorm2d)`` the method order is unchanged: this ``forward``, then ``BatchNorm2d``'s (``_BatchNorm``'s)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and self.track_running_stats and _distributed()):
            return super().forward(x)
        return self._global_forward(x)

    @torch.compiler.disable  # collectives inside an autograd Function: run eagerly even in a compiled model
    def _global_forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        channels = xf.shape[1]
        dims = (0, *range(2, xf.dim()))  # every dimension but the channels
        shape = (1, -1) + (1,) * (xf.dim() - 2)
        local_count = torch.tensor([xf.numel() // channels], dtype=torch.float32, device=xf.device)
        sums = _AllReduceSum.apply(torch.cat([xf.sum(dim=dims), local_count]))
        count = sums[-1].detach()
        mean = sums[:channels] / count
        centred = xf - mean.view(shape)
        var = _AllReduceSum.apply(centred.square().sum(dim=dims)) / count
        y = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        # forward comes here only with track_running_stats, which is what makes these buffers exist
        assert self.num_batches_tracked is not None and self.running_mean is not None and self.running_var is not None
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            factor = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
            self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), factor)
            unbiased = var.detach() * count / (count - 1).clamp(min=1)
            self.running_var.lerp_(unbiased.to(self.running_var.dtype), factor)
        return y.to(x.dtype)


class GlobalBatchNorm1d(_GlobalStatistics, nn.BatchNorm1d):
    """``BatchNorm1d`` with the statistics of the global batch."""


class GlobalBatchNorm2d(_GlobalStatistics, nn.BatchNorm2d):
    """``BatchNorm2d`` with the statistics of the global batch."""


class GlobalBatchNorm3d(_GlobalStatistics, nn.BatchNorm3d):
    """``BatchNorm3d`` with the statistics of the global batch."""


_GLOBAL: dict[type[nn.Module], type[nn.Module]] = {
    nn.BatchNorm1d: GlobalBatchNorm1d,
    nn.BatchNorm2d: GlobalBatchNorm2d,
    nn.BatchNorm3d: GlobalBatchNorm3d,
}


def synchronise(model: nn.Module) -> int:
    """Make every ``BatchNorm{1,2,3}d`` of ``model`` its global-statistics subclass (in place); returns how many."""
    changed = 0
    for module in model.modules():
        if type(module) in _GLOBAL:
            module.__class__ = _GLOBAL[type(module)]  # same object, parameters and buffers: only forward changes
            changed += 1
    return changed
