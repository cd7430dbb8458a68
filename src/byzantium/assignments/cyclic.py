r"""DRACO's cyclic code (Chen et al., ICML 2018; spec ``papers/redundancy.md`` §3.3-§3.5b).

``n = K`` workers, ``n`` parts (files) of the batch, ``s`` adversaries tolerated, ``r = 2s + 1``.
Worker ``j`` computes the part-gradients ``g_k`` for ``k in {j, ..., j + 2s} mod n`` and sends the
single complex vector ``y_j = sum_k W[j, k] g_k``. With ``omega = exp(-2 pi i / n)``,
``C[p, t] = omega^(p t) / sqrt(n)`` (unitary DFT), ``C_1 = C[:, :n-2s]`` and ``C_2 = C[:, n-2s:]``,
the encoding matrix is ``W = C_1 Q`` where column ``i`` of ``Q`` holds the coefficients of

    p_i(x) = prod_{j' in Z_i} (1 - x omega^(-j')),   Z_i = workers that do not compute g_i,

so ``W[j, i] = p_i(omega^j) / sqrt(n)`` vanishes exactly off the cyclic support (the product
has the factor ``1 - omega^0``), and ``p_i(0) = 1`` puts ones in row 0 of ``Q``, so that
``e_1^T Q G = sum_k g_k``.

Decoding (server), from ``R = W G + E`` with at most ``s`` nonzero rows of ``E``:

1. ``u = R phi`` with a fresh secret ``phi ~ N(1, 1)^d`` drawn from the caller's generator (a
   fixed ``phi`` lets an adaptive adversary send errors orthogonal to it, spec pitfall 21c);
2. syndromes ``sigma = C_2^H u = C_2^H E phi`` (``C_2^H W = 0``): a sum of at most ``s``
   exponentials ``z_j^k``, ``z_j = exp(2 pi i j / n)``;
3. error locator ``Lambda(z) = z^s - sum_t alpha_t z^t`` from the ``s x s`` Hankel system
   ``sum_t alpha_t sigma[m + t] = sigma[m + s]`` by SVD least squares (singular when fewer than
   ``s`` workers are bad; every least-squares solution still vanishes at the bad ``z_j``);
4. flag the ``s`` workers with the smallest ``|Lambda(z_j)|`` (not the authors' ``1e-9``
   threshold, which fails at float32 precision, pitfall 21a);
5. with ``U`` the ``n - s`` unflagged workers, take the minimum-norm ``v`` with
   ``C_1[U, :]^T v = e_1`` and return ``Re(v^T R[U, :]) = sum_k g_k`` exactly (rows of ``U`` carry
   no error).

Why complex128 on the wire (in the simulator and the runtime alike): the messages are complex and
their entries are products of up to ``n - 2s - 1`` factors ``|1 - omega^k| <= 2``, so float32
parts (complex64) leave ``|Lambda(z_adv)|`` at ~1e-8 instead of 0 and the recovered sum at float32
error relative to the *encoded* magnitudes (spec §3.4 item 7); complex128 keeps the decoded sum at
~1e-13 relative error, i.e. DRACO's "identical to the adversary-free model" holds to float64
round-off. The cost is 4x the bytes of a float32 gradient per message.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .graph import Assignment, AssignmentError

__all__ = ["cyclic", "CyclicCode", "CyclicDecodeResult", "DecodeError"]


class DecodeError(ValueError):
    """The received messages cannot be decoded (malformed input or evidently more than ``s``
    adversaries)."""


def _check(K: int, s: int, fn: str) -> tuple[int, int]:
    for name, v, lo in (("K", K, 1), ("s", s, 1)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise AssignmentError(f"{fn}: {name} must be an integer, got {name}={v!r}")
        if v < lo:
            raise AssignmentError(f"{fn}: {name} must be >= {lo}, got {name}={v}")
    if K < 2 * s + 1:
        raise AssignmentError(f"{fn}: needs K >= 2s+1 workers, got K={K}, s={s}")
    return int(K), int(s)


def cyclic(K: int, s: int) -> Assignment:
    """The assignment graph of DRACO's cyclic code: ``K`` parts, worker ``j`` computes the
    ``2s + 1`` cyclically consecutive parts ``j, ..., j + 2s (mod K)`` (``files_of`` sorted)."""
    K, s = _check(K, s, "cyclic")
    files_of = tuple(tuple(sorted((j + t) % K for t in range(2 * s + 1))) for j in range(K))
    rotate = tuple((j + 1) % K for j in range(K))
    reflect = tuple((-j - 2 * s) % K for j in range(K))  # support {j..j+2s} -> {-j-2s..-j}
    return Assignment(K, K, files_of, "cyclic", (("K", K), ("s", s)), (rotate, reflect))


@dataclass(frozen=True)
class CyclicDecodeResult:
    """``total``: the decoded ``sum_k g_k`` (real, ``(d,)``); ``flagged``: the ``s`` workers
    excluded (all adversaries when at most ``s`` are present, padded with honest workers when fewer
    are); ``locator``: ``|Lambda(z_j)|`` per worker; ``residual``: relative distance of the
    unflagged projections ``u[U]`` from the code space -- round-off (~1e-12) when decoding is
    consistent, large when more than ``s`` workers sent errors."""

    total: Tensor
    flagged: tuple[int, ...]
    locator: np.ndarray
    residual: float

    def mean(self) -> Tensor:
        """The full-batch mean gradient ``total / n`` (what DRACO's server applies)."""
        return self.total / len(self.locator)


class CyclicCode:
    """DRACO's cyclic code for ``K`` workers tolerating ``s`` adversaries (module docstring).

    Holds the precomputed ``W`` (``K x K`` complex128, numpy and torch), ``C_1``, ``C_2`` and the
    assignment graph. Thin state, pure methods: :meth:`encode` (all workers at once, simulator),
    :meth:`encode_worker` (one worker, runtime) and :meth:`decode` (server).
    """

    def __init__(self, K: int, s: int) -> None:
        K, s = _check(K, s, "CyclicCode")
        self.K, self.s, self.r = K, s, 2 * s + 1
        self.assignment = cyclic(K, s)
        n = K
        p = np.arange(n)
        # exact roots of unity from the integer exponent mod n (avoids phase drift for large p*t)
        self.C = np.exp(-2j * np.pi * ((p[:, None] * p[None, :]) % n) / n) / np.sqrt(n)
        self.C1 = self.C[:, : n - 2 * s]
        self.C2 = self.C[:, n - 2 * s:]
        holds = ((p[None, :] - p[:, None]) % n) <= 2 * s  # holds[j, i]: worker j computes g_i
        W = np.empty((n, n), dtype=np.complex128)
        for i in range(n):
            Z = np.flatnonzero(~holds[:, i])
            # W[j, i] = prod_{j' in Z_i} (1 - omega^(j - j')) / sqrt(n)
            diff = (p[:, None] - Z[None, :]) % n
            W[:, i] = np.prod(1.0 - np.exp(-2j * np.pi * diff / n), axis=1) / np.sqrt(n)
        W[~holds] = 0.0  # exact zeros off the support (the product has an exact zero factor)
        self.W = W
        self.W_t = torch.from_numpy(W)
        self.z = np.exp(2j * np.pi * p / n)  # z_j = conj(omega^j)
        self._coef = [W[j, list(fs)] for j, fs in enumerate(self.assignment.files_of)]

    # -------------------------------------------------------------------------------- encoding
    def coefficients(self, j: int) -> np.ndarray:
        """``W[j, files_of[j]]``: worker ``j``'s ``r`` coefficients in its (sorted) file order."""
        return self._coef[j].copy()

    def encode_worker(self, j: int, parts: Tensor) -> Tensor:
        """``y_j = sum_t W[j, files_of[j][t]] parts[t]`` for an ``(r, d)`` stack of the worker's
        part-gradients in ``assignment.files_of[j]`` order; returns complex128 ``(d,)``."""
        if not 0 <= j < self.K:
            raise AssignmentError(f"CyclicCode.encode_worker: j must lie in [0, {self.K}), got {j}")
        if parts.dim() != 2 or parts.shape[0] != self.r:
            raise AssignmentError(
                f"CyclicCode.encode_worker: expected ({self.r}, d) part-gradients, got shape "
                f"{tuple(parts.shape)}"
            )
        c = torch.from_numpy(self._coef[j]).to(parts.device)
        return c @ parts.to(torch.complex128)

    def encode(self, G: Tensor) -> Tensor:
        """All honest messages ``R = W G`` (complex128 ``(K, d)``) from the ``(K, d)`` real
        part-gradients, touching only the ``r`` nonzero coefficients per worker."""
        n = self.K
        if G.dim() != 2 or G.shape[0] != n:
            raise AssignmentError(
                f"CyclicCode.encode: expected ({n}, d) part-gradients, got shape {tuple(G.shape)}"
            )
        idx0 = torch.arange(n, device=G.device)
        W = self.W_t.to(G.device)
        Y = torch.zeros(G.shape, dtype=torch.complex128, device=G.device)
        for t in range(self.r):
            idx = (idx0 + t) % n
            Y.add_(W[idx0, idx].unsqueeze(1) * G.index_select(0, idx))
        return Y

    # -------------------------------------------------------------------------------- decoding
    def locate(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Steps 2-4 on the projections ``u`` (``(K,)`` complex): ``(flagged, |Lambda(z_j)|)``.

        Non-finite ``u_j`` (a message with NaN/Inf, or overflowing) are flagged first and treated
        as errors of unknown value (``u_j := 0``)."""
        s = self.s
        bad = ~np.isfinite(u)
        if bad.sum() > s:
            raise DecodeError(
                f"CyclicCode.decode: {int(bad.sum())} messages are non-finite, more than s={s}"
            )
        u = np.where(bad, 0.0, u)
        sigma = self.C2.conj().T @ u  # (2s,)
        H = np.array([[sigma[m + t] for t in range(s)] for m in range(s)])
        alpha = np.linalg.lstsq(H, sigma[s: 2 * s], rcond=None)[0]
        lam = self.z ** s - np.polynomial.polynomial.polyval(self.z, alpha)
        lam_abs = np.abs(lam)
        key = np.where(bad, -1.0, lam_abs)
        flagged = np.sort(np.argsort(key, kind="stable")[:s])
        return flagged, lam_abs

    def combination(self, unflagged: np.ndarray) -> np.ndarray:
        """Minimum-norm ``v`` with ``C_1[U, :]^T v = e_1`` (``U`` = ``unflagged``, at least
        ``n - 2s`` rows), so that ``v^T R[U] = sum_k g_k`` when the rows of ``U`` are honest."""
        e1 = np.zeros(self.K - 2 * self.s, dtype=np.complex128)
        e1[0] = 1.0
        A = self.C1[unflagged, :].T
        if A.shape[0] == A.shape[1]:
            return np.linalg.solve(A, e1)
        return np.linalg.lstsq(A, e1, rcond=None)[0]

    def decode(
        self,
        R: Tensor,
        generator: torch.Generator,
        *,
        out_dtype: torch.dtype = torch.float64,
    ) -> CyclicDecodeResult:
        """Recover ``sum_k g_k`` from the ``(K, d)`` complex received messages ``R`` of which at
        most ``s`` are arbitrary (module docstring). ``generator`` draws the secret projection
        ``phi`` (on ``R``'s device); the ``(K, d)`` matrix is read twice (projection, final
        combination), everything else is ``O(K^3)``."""
        n = self.K
        if not isinstance(R, Tensor) or R.dim() != 2 or R.shape[0] != n:
            raise DecodeError(
                f"CyclicCode.decode: expected a ({n}, d) tensor of received messages, got "
                f"{tuple(R.shape) if isinstance(R, Tensor) else type(R).__name__}"
            )
        if not R.is_complex():
            raise DecodeError(f"CyclicCode.decode: messages must be complex, got {R.dtype}")
        d = R.shape[1]
        # phi ~ N(1, 1), fresh each call; drawn in float32 (only its genericity matters, and it
        # halves the drawing cost), applied in the messages' complex precision
        phi = torch.randn(d, generator=generator, dtype=torch.float32, device=R.device)
        phi += 1.0
        u = (R @ phi.to(R.dtype)).to(torch.complex128).cpu().numpy()
        flagged, lam_abs = self.locate(u)
        keep = np.setdiff1d(np.arange(n), flagged)
        v = self.combination(keep)
        # consistency: u[U] should lie in the span of C_1[U, :] (honest rows are codewords)
        uk = np.where(np.isfinite(u), u, 0.0)[keep]
        coef = np.linalg.lstsq(self.C1[keep, :], uk, rcond=None)[0]
        scale = max(float(np.linalg.norm(uk)), np.finfo(np.float64).tiny)
        residual = float(np.linalg.norm(self.C1[keep, :] @ coef - uk)) / scale
        vt = torch.from_numpy(v).to(device=R.device, dtype=R.dtype)
        if np.isfinite(u).all():
            vfull = torch.zeros(n, dtype=R.dtype, device=R.device)
            vfull[torch.from_numpy(keep).to(R.device)] = vt
            total = (vfull @ R).real
        else:  # a flagged row holds NaN/Inf: 0 * Inf = NaN, so leave those rows out entirely
            total = (vt @ R.index_select(0, torch.from_numpy(keep).to(R.device))).real
        return CyclicDecodeResult(total.to(out_dtype), tuple(int(j) for j in flagged), lam_abs,
                                  residual)
