"""ByzSGD parameters and their resilience conditions (dstar_byzsgd.md §2.2, §2.4).

Asynchronous ByzSGD (El-Mhamdi et al., PODC 2020) needs ``n_ps >= 3 f_ps + 2`` servers and
``n_w >= 3 f_w + 1`` workers. The synchronous variant's bounds were not verified; by default it
uses the same, and ``relaxed=True`` allows the majorities its prototype needs
(``n_ps >= 2 f_ps + 1``, ``n_w >= 2 f_w + 1``). With ``f_ps = 0`` any ``n_ps >= 1`` is accepted
(a single trusted server is the baseline the paper compares against). Quorums default to ``n - f`` (async) or ``n``
(sync: wait for everyone until the timeout; silent nodes are then known faulty).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

__all__ = ["ByzSGDError", "ByzSGDParams"]


class ByzSGDError(ValueError):
    """A ByzSGD parameter violates a bound of the protocol (the message names it)."""


def _int(name: str, v: object, minimum: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise ByzSGDError(f"ByzSGDParams: {name} must be an int >= {minimum}, got {name}={v!r}")
    return v


@dataclass(frozen=True)
class ByzSGDParams:
    """Servers, workers, variant, gather period and quorums of one ByzSGD deployment.

    ``gather_period``: an int ``T >= 1`` or ``"auto"`` = ``max(1, floor(1 / (3 L eta0)))`` (the
    authors' prototypes, §2.4), resolved once by :meth:`resolve_period` from the base learning
    rate (never from a decayed one, P11). ``q_ps`` / ``q_w``: how many models / gradients a correct
    node waits for; ``None`` takes the default above.
    """

    n_ps: int
    f_ps: int
    n_w: int
    f_w: int
    variant: Literal["async", "sync"] = "async"
    gather_period: int | Literal["auto"] = "auto"
    lipschitz: float = 1.0
    q_ps: int | None = None
    q_w: int | None = None
    relaxed: bool = False
    outliers_norm: Literal["previous", "pulled"] = "previous"
    """Sync outliers filter: the gradient norm in its bound. ``"pulled"`` is the prototype's (the
    gradient just computed at the pulled model), which a Byzantine server inflates at will: a
    -100 theta model of an MLP has a huge gradient, hence a huge bound, and passes (measured:
    accepted at step 1 on MNIST-1D, loss 3e4, then NaN). ``"previous"`` (default) uses the
    worker's previous gradient, at a model it already trusted, as the prediction itself does."""

    def __post_init__(self) -> None:
        n_ps, f_ps = _int("n_ps", self.n_ps, 1), _int("f_ps", self.f_ps, 0)
        n_w, f_w = _int("n_w", self.n_w, 1), _int("f_w", self.f_w, 0)
        if self.variant not in ("async", "sync"):
            raise ByzSGDError(f"ByzSGDParams: variant must be 'async' or 'sync', got variant={self.variant!r}")
        if not isinstance(self.relaxed, bool):
            raise ByzSGDError(f"ByzSGDParams: relaxed must be a bool, got relaxed={self.relaxed!r}")
        if self.outliers_norm not in ("previous", "pulled"):
            raise ByzSGDError(f"ByzSGDParams: outliers_norm must be 'previous' or 'pulled', got "
                              f"outliers_norm={self.outliers_norm!r}")
        if self.relaxed and self.variant == "async":
            raise ByzSGDError("ByzSGDParams: relaxed=True is only allowed with variant='sync'")
        if self.relaxed:
            if n_ps < 2 * f_ps + 1:
                raise ByzSGDError(
                    f"ByzSGDParams: sync (relaxed) requires n_ps >= 2*f_ps + 1, got n_ps={n_ps}, f_ps={f_ps}")
            if n_w < 2 * f_w + 1:
                raise ByzSGDError(
                    f"ByzSGDParams: sync (relaxed) requires n_w >= 2*f_w + 1, got n_w={n_w}, f_w={f_w}")
        else:
            if f_ps > 0 and n_ps < 3 * f_ps + 2:  # f_ps = 0: one trusted server is fine
                raise ByzSGDError(
                    f"ByzSGDParams: {self.variant} ByzSGD requires n_ps >= 3*f_ps + 2, got n_ps={n_ps}, "
                    f"f_ps={f_ps}" + (" (pass relaxed=True for n_ps >= 2*f_ps + 1)" if self.variant == "sync" else ""))
            if n_w < 3 * f_w + 1:
                raise ByzSGDError(
                    f"ByzSGDParams: {self.variant} ByzSGD requires n_w >= 3*f_w + 1, got n_w={n_w}, "
                    f"f_w={f_w}" + (" (pass relaxed=True for n_w >= 2*f_w + 1)" if self.variant == "sync" else ""))
        T = self.gather_period
        if T != "auto":
            _int("gather_period", T, 1)
        L = self.lipschitz
        if isinstance(L, bool) or not isinstance(L, (int, float)) or not (math.isfinite(L) and L > 0):
            raise ByzSGDError(f"ByzSGDParams: lipschitz must be a finite number > 0, got lipschitz={L!r}")
        for name, q, n, f in (("q_ps", self.q_ps, n_ps, f_ps), ("q_w", self.q_w, n_w, f_w)):
            if q is None:
                continue
            q = _int(name, q, 1)
            what = "MDA" if name == "q_w" else "the coordinate-wise median"
            fname = "f_w" if name == "q_w" else "f_ps"
            if q < 2 * f + 1:
                raise ByzSGDError(
                    f"ByzSGDParams: {what} needs {name} >= 2*{fname} + 1, got {name}={q}, {fname}={f}")
            if q > n:
                raise ByzSGDError(f"ByzSGDParams: {name} must be <= {n} (senders), got {name}={q}")
            if self.variant == "async" and q > n - f:
                raise ByzSGDError(
                    f"ByzSGDParams: async quorum {name} must be <= n - f = {n - f} (else {f} silent "
                    f"Byzantine nodes block it), got {name}={q}")

    # resolved quorums -----------------------------------------------------------------------
    @property
    def quorum_ps(self) -> int:
        """Models a correct worker (or server, in the gather) waits for."""
        if self.q_ps is not None:
            return self.q_ps
        return self.n_ps - self.f_ps if self.variant == "async" else self.n_ps

    @property
    def quorum_w(self) -> int:
        """Gradients a correct server waits for."""
        if self.q_w is not None:
            return self.q_w
        return self.n_w - self.f_w if self.variant == "async" else self.n_w

    def resolve_period(self, lr0: float) -> int:
        """The scatter length ``T``: the configured int, or ``max(1, floor(1 / (3 L lr0)))``."""
        if self.gather_period != "auto":
            return int(self.gather_period)
        if not (isinstance(lr0, (int, float)) and math.isfinite(lr0) and lr0 > 0):
            raise ByzSGDError(f"ByzSGDParams.resolve_period: lr0 must be a finite number > 0, got lr0={lr0!r}")
        return max(1, math.floor(1.0 / (3.0 * self.lipschitz * lr0)))
