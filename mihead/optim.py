"""Optimisers and the learning-rate schedule a recipe's ``[train]`` section names."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from mihead.recipe import TrainParams

__all__ = ["learning_rate", "make_optimizer"]


def make_optimizer(params: Iterable[torch.nn.Parameter], train: TrainParams) -> torch.optim.Optimizer:
    """The optimiser ``train.optimizer`` with the recipe's lr, weight decay and momentum (and
    RMSprop's ``rmsprop_alpha``, the smoothing constant of its squared-gradient average). On
    CUDA, Adam and SGD use torch's fused kernels (one launch updates every parameter, and the
    step count stays on the device)."""
    params = list(params)
    fused = True if params and all(p.is_cuda for p in params) else None
    if train.optimizer == "adam":
        return torch.optim.Adam(params, lr=train.lr, weight_decay=train.weight_decay, fused=fused)
    if train.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=train.lr, momentum=train.momentum, weight_decay=train.weight_decay, fused=fused
        )
    if train.optimizer == "rmsprop":
        return torch.optim.RMSprop(
            params, lr=train.lr, alpha=train.rmsprop_alpha, momentum=train.momentum, weight_decay=train.weight_decay
        )
    raise ValueError(f"unknown optimizer {train.optimizer!r}")


def learning_rate(step: int, total_steps: int, train: TrainParams) -> float:
    """The learning rate for optimiser step ``step`` (0-based) of ``total_steps``: linear
    warm-up over ``warmup_steps``, then constant or cosine-annealed down to
    ``min_lr_ratio * lr`` at the last step."""
    if step < train.warmup_steps:
        return train.lr * (step + 1) / train.warmup_steps
    if train.schedule == "constant":
        return train.lr
    span = max(1, total_steps - train.warmup_steps - 1)
    progress = min(1.0, (step - train.warmup_steps) / span)
    floor = train.lr * train.min_lr_ratio
    return floor + (train.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
