"""ByzSGD (El-Mhamdi, Guerraoui, Guirguis, Hoang, Rouault, PODC 2020) in the simulator.

Replicated parameter servers (``f_ps`` Byzantine) and workers (``f_w`` Byzantine): workers take
the coordinate-wise median of the models they pull, servers aggregate gradients with MDA, and
every ``T`` steps servers contract their models with Distributed Median Contraction. Spec:
``shared/papers/dstar_byzsgd.md`` §2.
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
from .servers import SERVER_ATTACKS, ServerAttackContext, get_server_attack, server_attack_names
from .cluster import ByzSGDCluster

__all__ = [
    "ByzSGDCluster",
    "ByzSGDError",
    "ByzSGDParams",
    "SCHEDULERS",
    "SERVER_ATTACKS",
    "ServerAttackContext",
    "choose_senders",
    "combine_models",
    "dmc_gather",
    "drift",
    "get_server_attack",
    "lipschitz_accept",
    "lipschitz_coefficient",
    "outliers_accept",
    "outliers_bound",
    "predicted_model",
    "push_history",
    "server_aggregate",
    "server_attack_names",
    "server_update",
    "sgd_step",
]
