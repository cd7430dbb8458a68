"""Where every ByzSGD rank is and what it is built from: the rank layout, the pairs of channels,
the deployment built from the config, and the ``f`` a synchronous party can use.

Ranks: servers ``0 .. n_ps - 1``, workers ``n_ps .. n_ps + n_w - 1`` (worker ``j`` is rank
``n_ps + j``). Pairs: every (server, worker) and every (server, server), created in that order
by every rank (:func:`pairs`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ....config import RunConfig

__all__ = ["Layout", "pairs", "build_deployment", "feasible_f"]


@dataclasses.dataclass(frozen=True)
class Layout:
    """Rank layout of a job with ``n_ps`` servers and ``n_w`` workers."""

    n_ps: int
    n_w: int

    @property
    def world(self) -> int:
        return self.n_ps + self.n_w

    @property
    def servers(self) -> list[int]:
        return list(range(self.n_ps))

    @property
    def workers(self) -> list[int]:
        return list(range(self.n_ps, self.n_ps + self.n_w))

    def worker_rank(self, j: int) -> int:
        return self.n_ps + j

    def worker_index(self, rank: int) -> int:
        return rank - self.n_ps


def pairs(layout: Layout) -> list[tuple[int, int]]:
    """Every (server, worker) pair, then every (server, server) pair, in one fixed order."""
    out = [(s, w) for s in layout.servers for w in layout.workers]
    out += [(a, b) for a in layout.servers for b in layout.servers if a < b]
    return out


def build_deployment(cfg: RunConfig) -> tuple[Any, Any]:
    """``(dataset, cluster)``: the data set and a :class:`~byzantium.byzsgd.ByzSGDCluster` built
    exactly as ``byzantium train`` builds it. Each rank uses the cluster's *parts* (initial model,
    file sampler, learning-rate schedule, T, who is Byzantine, the attacks), never its lock-step
    :meth:`step`."""
    from ...byzsgd_sim import build_byzsgd_cluster
    from ....training.datasets import load_run_dataset

    dataset = load_run_dataset(cfg)
    cluster = build_byzsgd_cluster(cfg, dataset, scheme_cfg=cfg.scheme, attack_enabled=True)
    return dataset, cluster


def feasible_f(f: int, m: int) -> int:
    """The ``f`` a synchronous party uses over ``m`` received vectors: ``f`` itself while
    ``m > 2f`` (MDA's condition), else the largest that ``m`` allows. The simulator may lower
    ``f`` by the number of silent senders, since there only Byzantine nodes are ever silent; on
    real machines a correct node can miss a deadline, so silence proves nothing."""
    return min(f, max(0, (m - 1) // 2))
