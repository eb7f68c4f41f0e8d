"""The optimiser recipe every trained model here shares (DiffMD and the baselines): Adam with the
config's learning rate and weight decay, ReduceLROnPlateau stepped on the training loss once an
epoch (paper appendix: Adam 5e-4, weight decay 1e-10, patience 5, min lr 1e-7)."""
from __future__ import annotations

from collections.abc import Iterable

import torch

from ..config import TrainConfig


def make_optimiser(params: Iterable[torch.nn.Parameter], tc: TrainConfig
                   ) -> tuple[torch.optim.Adam, torch.optim.lr_scheduler.ReduceLROnPlateau]:
    """(Adam over ``params``, its plateau scheduler) from ``tc``'s lr, weight_decay, lr_factor, patience
    and min_lr."""
    opt = torch.optim.Adam(params, lr=tc.lr, weight_decay=tc.weight_decay)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=tc.lr_factor, patience=tc.patience,
                                                       min_lr=tc.min_lr)
    return opt, sched
