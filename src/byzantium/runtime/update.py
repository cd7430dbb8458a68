"""The model update of a single-server run: SGD with heavy-ball momentum and weight decay, the
configured learning-rate schedule, and the model's test metrics."""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor

from ..config import RunConfig

__all__ = ["make_optimizer", "lr_schedule", "assign_flat_grad", "ModelUpdate"]


def make_optimizer(
    model: torch.nn.Module, cfg: RunConfig
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """SGD with heavy-ball momentum and weight decay, and the configured schedule."""
    o = cfg.optim
    opt = torch.optim.SGD(
        model.parameters(), lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay
    )
    if o.schedule == "constant":
        sched: Any = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    elif o.schedule == "step":
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=o.step_size, gamma=o.gamma)
    else:
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.training.steps)
    return opt, sched


def lr_schedule(cfg: RunConfig) -> Callable[[int], float]:
    """The learning rate of step ``t`` (0-based) exactly as :func:`make_optimizer`'s schedule
    sets it: the same torch scheduler, stepped once per step, read into a table (for runtimes
    that update parameters without a torch optimizer, such as ByzSGD's servers)."""
    dummy = torch.nn.Parameter(torch.zeros(1))
    holder = torch.nn.Module()
    holder.p = dummy
    opt, sched = make_optimizer(holder, cfg)
    table = []
    for _ in range(cfg.training.steps):
        table.append(opt.param_groups[0]["lr"])
        opt.step()  # no gradient: a no-op that keeps the scheduler's order check quiet
        sched.step()
    last = table[-1] if table else cfg.optim.lr
    return lambda t: table[t] if 0 <= t < len(table) else last


def assign_flat_grad(params: list[torch.nn.Parameter], flat: Tensor) -> None:
    """Set each parameter's ``.grad`` from the flat gradient vector ``flat``."""
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset : offset + n].view_as(p).to(p.dtype).clone()
        offset += n
    if offset != flat.numel():
        raise ValueError(f"gradient has {flat.numel()} entries, model has {offset} parameters")


class ModelUpdate:
    """A model, its optimizer and schedule: :meth:`apply` one aggregated gradient."""

    def __init__(self, model: torch.nn.Module, cfg: RunConfig, dataset: Any) -> None:
        self.model = model
        self.cfg = cfg
        self.dataset = dataset
        self.opt, self.sched = make_optimizer(model, cfg)
        self.params = [p for p in model.parameters() if p.requires_grad]

    def flat(self) -> Tensor:
        """The parameters as one float32 vector (what a parameter frame carries)."""
        return torch.nn.utils.parameters_to_vector(self.model.parameters()).detach().to(torch.float32)

    def apply(self, gradient: Tensor) -> float:
        """One optimizer and schedule step with ``gradient``; returns the learning rate used."""
        assign_flat_grad(self.params, gradient)
        lr = self.opt.param_groups[0]["lr"]
        self.opt.step()
        self.sched.step()
        return lr

    def finite(self) -> bool:
        """Whether every parameter is finite (read in place, no copy of the model)."""
        with torch.no_grad():
            return bool(torch.isfinite(torch.stack([p.abs().amax() for p in self.params])).all())

    def evaluate(self) -> dict[str, Any]:
        from ..training.models import evaluate

        ev = evaluate(self.model, self.dataset, batch_size=self.cfg.training.eval_batch_size)
        return {"test_loss": ev.get("loss"), "test_accuracy": ev.get("accuracy")}

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
                "scheduler": self.sched.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> int:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        return int(state["step"])
