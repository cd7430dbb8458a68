"""What Byzantine workers send: a pure function per attack, its knowledge model, a registry.

Use::

    from byzantium import attacks
    atk = attacks.get("alie")                         # paper defaults, validated
    ctx = attacks.AttackContext(honest=H, own=O, n=15, num_byzantine=3,
                                rule=server_rule, generator=gen)
    B = atk(ctx)                                      # (ctx.slots, d), one row per Byzantine slot

**Slots.** An attack returns one vector per Byzantine *slot*; the engine decides what a slot is:

* plain schemes (vanilla, robust rule, dSTAR): a Byzantine worker; ``own`` is its honest gradient;
* vote schemes (DRACO repetition, DETOX, ByzShield): a corrupted file (one where the Byzantines
  hold a majority of the copies); ``own`` is that file's honest gradient, ``n`` the number of
  vectors the rule aggregates after the vote and ``num_byzantine`` the corrupted ones (``c_max``).
  Every Byzantine copy of a file sends that file's row, so colluders agree and win the vote;
* DRACO's cyclic code: a Byzantine worker's encoded message.

**Collusion.** ``Attack.shared`` is True when the formula gives one vector for every slot (ALIE,
IPM, MinMax/MinSum, the optimal variants, constant, zero, NaN/Inf, mimic, sign flip of the mean);
the engine may call ``attack.vector(ctx)`` once and write it everywhere. Per-slot attacks
(gaussian, sign flip / reversed of ``own``, label flip) compute one row per slot; pass
``collude=True`` to make them agree (the first slot's vector goes to every slot).

**Conventions** (one per attack, parameters named after the paper; see each docstring):

============  =================================================================================
alie          b = μ + z·σ, z = Φ⁻¹((n − s)/n), s = ⌊n/2 + 1⌋ − f (paper); z_rule="honest",
              sign="-", std="unbiased", source="own"/"all" switch to other tools' conventions
ipm           b = −ε·μ, ε = 0.1 (DETOX/ByzShield ``foe``: ε = 100)
alie_opt      b = μ + τ·σ, τ maximising ‖rule(honest ∪ f·b) − μ‖ (line search, 20 evals)
ipm_opt       b = −τ·μ, τ as above
minmax        b = μ − γ·p, largest γ with max_j ‖b − x_j‖ ≤ max_ij ‖x_i − x_j‖ (exact)
minsum        b = μ − γ·p, largest γ with Σ_j ‖b − x_j‖² ≤ max_i Σ_j ‖x_i − x_j‖² (exact)
sign_flip     b = −own (mode="own", default) or −μ (mode="mean")
reversed      b = −100·own (DETOX/ByzShield ``rev_grad``)
gaussian      b ~ N(0, 1) per slot, from ctx.generator
constant      b = −100·1 (DETOX/ByzShield)
zero          b = 0
nan / inf     b = NaN·1 / ±∞·1
mimic         b = honest[0]
label_flip    data-level: train on y' = C − 1 − y; b = own
============  =================================================================================

``describe()`` lists them for ``byzantium list attacks``.

**Server attacks** (ByzSGD's Byzantine parameter servers: random, reverse, drop, equivocation,
alie, stale, silent, filter_hug) have their own registry in :mod:`.server`:
``get_server_attack(name, **params)`` binds one, ``describe_server_attacks()`` lists them.
"""

from .base import (
    KNOWLEDGE,
    REGISTRY,
    Attack,
    AttackContext,
    AttackError,
    AttackWarning,
    describe,
    get,
    names,
    register,
)
from .simple import constant, gaussian, inf, mimic, nan, reversed_gradient, sign_flip, zero
from .statistical import (
    alie,
    alie_supporters,
    alie_vector,
    alie_z,
    alie_z_max,
    ipm,
    minmax,
    minsum,
    perturbation,
)
from .optimal import alie_opt, distortion, ipm_opt, line_maximize
from .data import flip_labels, label_flip
from .fang import fang
from .server import (
    SERVER_REGISTRY,
    ServerAttack,
    ServerAttackContext,
    describe_server_attacks,
    get_server_attack,
    register_server_attack,
    server_attack_names,
)

__all__ = [
    "KNOWLEDGE",
    "REGISTRY",
    "Attack",
    "AttackContext",
    "fang",
    "AttackError",
    "AttackWarning",
    "describe",
    "get",
    "names",
    "register",
    "SERVER_REGISTRY",
    "ServerAttack",
    "ServerAttackContext",
    "describe_server_attacks",
    "get_server_attack",
    "register_server_attack",
    "server_attack_names",
    "alie",
    "alie_opt",
    "alie_supporters",
    "alie_vector",
    "alie_z",
    "alie_z_max",
    "constant",
    "distortion",
    "flip_labels",
    "gaussian",
    "inf",
    "ipm",
    "ipm_opt",
    "label_flip",
    "line_maximize",
    "mimic",
    "minmax",
    "minsum",
    "nan",
    "perturbation",
    "reversed_gradient",
    "sign_flip",
    "zero",
]
