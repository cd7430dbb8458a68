"""ByzSGD (El-Mhamdi, Guerraoui, Guirguis, Hoang, Rouault, PODC 2020) in the simulator.

Replicated parameter servers (``f_ps`` Byzantine) and workers (``f_w`` Byzantine): workers take
the coordinate-wise median of the models they pull, servers aggregate gradients with MDA, and
every ``T`` steps servers contract their models with Distributed Median Contraction. Spec:
``shared/papers/dstar_byzsgd.md`` §2. What Byzantine servers send lives next to the worker
attacks, in :mod:`byzantium.attacks.server`.
"""

from .params import ByzSGDError, ByzSGDParams
from .protocol import (
    combine_models,
    dmc_gather,
    drift,
    lipschitz_accept,
    lipschitz_coefficient,
    outliers_accept,
    outliers_bound,
    predicted_model,
    push_history,
    server_aggregate,
    server_update,
    sgd_step,
)
from .scheduler import SCHEDULERS, choose_senders
from .cluster import ByzSGDCluster

__all__ = [
    "ByzSGDCluster",
    "ByzSGDError",
    "ByzSGDParams",
    "SCHEDULERS",
    "choose_senders",
    "combine_models",
    "dmc_gather",
    "drift",
    "lipschitz_accept",
    "lipschitz_coefficient",
    "outliers_accept",
    "outliers_bound",
    "predicted_model",
    "push_history",
    "server_aggregate",
    "server_update",
    "sgd_step",
]
