"""Finite fields GF(p^k) as lookup tables, for the MOLS construction over prime powers.

An element is the integer ``e = sum_t c_t p^t`` whose base-``p`` digits ``c_t`` are the coefficients
of the polynomial ``sum_t c_t x^t`` over GF(p). Arithmetic is polynomial arithmetic modulo a monic
irreducible polynomial of degree ``k``: the first one in the order of its integer code
(``x^k + sum_t m_t x^t`` has code ``sum_t m_t p^t``), found by trying candidates and keeping the
first whose multiplication table has no zero divisors (a quotient ring GF(p)[x]/(m) is a field iff
``m`` is irreducible). For a prime ``p`` (``k = 1``) the element ``e`` is the residue ``e mod p``
and the tables are ordinary modular arithmetic, so prime orders reproduce the authors' ``mod l``
construction exactly (ByzShield, spec §1.2).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

__all__ = ["GF", "gf", "prime_power", "is_prime"]

_MAX_ORDER = 4096  # tables are order x order; plenty for Latin squares of practical order


def is_prime(n: int) -> bool:
    if n < 2:
        return False
    if n % 2 == 0:
        return n == 2
    f = 3
    while f * f <= n:
        if n % f == 0:
            return False
        f += 2
    return True


def prime_power(n: int) -> tuple[int, int] | None:
    """``(p, k)`` with ``n == p**k`` and ``p`` prime, or ``None`` if ``n`` is not a prime power."""
    if n < 2:
        return None
    p = 2
    while p * p <= n and n % p:
        p += 1
    if n % p:
        p = n  # n itself is prime
    k, m = 0, n
    while m % p == 0:
        m //= p
        k += 1
    return (p, k) if m == 1 else None


@dataclass(frozen=True, eq=False)
class GF:
    """The field GF(p^k) as ``order x order`` addition and multiplication tables."""

    p: int
    k: int
    modulus: tuple[int, ...]  # coefficients m_0..m_{k-1} of x^k + sum m_t x^t (monic, low first)
    add: np.ndarray
    mul: np.ndarray

    @property
    def order(self) -> int:
        return self.p ** self.k

    def neg(self, a: int) -> int:
        return int(np.flatnonzero(self.add[a] == 0)[0])

    def inv(self, a: int) -> int:
        if a == 0:
            raise ZeroDivisionError("GF.inv: 0 has no inverse")
        return int(np.flatnonzero(self.mul[a] == 1)[0])


def _digits(p: int, k: int) -> np.ndarray:
    q = p ** k
    e = np.arange(q)
    return np.stack([(e // p ** t) % p for t in range(k)], axis=1)  # (q, k), low degree first


def _encode(d: np.ndarray, p: int) -> np.ndarray:
    k = d.shape[-1]
    return (d * (p ** np.arange(k))).sum(axis=-1)


def _tables(p: int, k: int, modulus: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    dig = _digits(p, k)
    add = _encode((dig[:, None, :] + dig[None, :, :]) % p, p)
    prod = np.zeros((len(dig), len(dig), 2 * k - 1), dtype=np.int64)
    for s in range(k):
        for t in range(k):
            prod[:, :, s + t] += dig[:, None, s] * dig[None, :, t]
    prod %= p
    for deg in range(2 * k - 2, k - 1, -1):  # x^deg = x^(deg-k) * x^k = -x^(deg-k) * sum m_t x^t
        c = prod[:, :, deg].copy()
        prod[:, :, deg] = 0
        prod[:, :, deg - k:deg] = (prod[:, :, deg - k:deg] - c[:, :, None] * modulus) % p
    mul = _encode(prod[:, :, :k], p)
    return add.astype(np.int64), mul.astype(np.int64)


@lru_cache(maxsize=None)
def gf(order: int) -> GF:
    """The finite field with ``order`` elements (``order`` must be a prime power)."""
    pk = prime_power(order) if isinstance(order, int) else None
    if pk is None:
        raise ValueError(f"gf: the order of a finite field must be a prime power, got {order!r}")
    if order > _MAX_ORDER:
        raise ValueError(f"gf: order must be <= {_MAX_ORDER} (lookup tables), got {order}")
    p, k = pk
    if k == 1:
        e = np.arange(p)
        return GF(p, 1, (0,), (e[:, None] + e[None, :]) % p, (e[:, None] * e[None, :]) % p)
    nz = np.arange(1, order)
    for code in range(p ** k):
        m = _digits(p, k)[code]
        if m[0] == 0:  # divisible by x
            continue
        add, mul = _tables(p, k, m)
        if (mul[np.ix_(nz, nz)] != 0).all():  # no zero divisors: m is irreducible
            return GF(p, k, tuple(int(c) for c in m), add, mul)
    raise AssertionError(f"gf: no irreducible polynomial of degree {k} over GF({p})")
