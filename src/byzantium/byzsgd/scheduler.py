"""Which ``q`` senders' messages a recipient counts in a lock-step simulation (§2.3, P18, P19).

* ``"random"``: a uniform random ``q``-subset of the senders that replied (Byzantine ones
  included), drawn per recipient from the step's generator.
* ``"adversarial"`` (default for robustness claims): every Byzantine sender that replied is
  always counted (the adversary is fastest); the remaining slots go to a uniform random subset of
  the correct senders, drawn per recipient (the spec's simpler option; no divergence-maximising
  choice of correct senders).
* ``"first"``: the ``q`` lowest sender indices (deterministic; every recipient sees the same
  quorum, which makes "no asynchrony" runs exact).

``must`` forces senders in (a server's own model in the gather, P13).
"""

from __future__ import annotations

from typing import Sequence

import torch

__all__ = ["SCHEDULERS", "choose_senders"]

SCHEDULERS = ("random", "adversarial", "first")


def choose_senders(
    available: Sequence[int],
    byzantine: Sequence[int] | set[int],
    q: int,
    mode: str,
    generator: torch.Generator,
    must: Sequence[int] = (),
) -> list[int]:
    """Sorted indices of the ``min(q, len(available))`` senders counted by one recipient."""
    if mode not in SCHEDULERS:
        raise ValueError(f"choose_senders: mode must be one of {SCHEDULERS}, got mode={mode!r}")
    avail = sorted(set(available))
    q = min(q, len(avail))
    byz = set(byzantine)
    chosen = [s for s in must if s in avail][:q]
    rest = [s for s in avail if s not in chosen]
    if mode == "adversarial":
        first = [s for s in rest if s in byz][: q - len(chosen)]
        chosen += first
        rest = [s for s in rest if s not in byz]
    need = q - len(chosen)
    if need > 0:
        if mode == "first":
            chosen += rest[:need]
        else:
            perm = torch.randperm(len(rest), generator=generator)[:need].tolist()
            chosen += [rest[i] for i in perm]
    return sorted(chosen)
