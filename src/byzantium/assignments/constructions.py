"""Assignment constructions: baseline, fractional repetition (DRACO/DETOX), MOLS and Ramanujan
bigraphs (ByzShield). Index conventions follow spec ``papers/redundancy.md`` §1.2-§1.3 so that the
test vectors of §1.10 hold (0-based workers: MPI rank = worker + 1).
"""

from __future__ import annotations

import numpy as np

from .galois import gf, is_prime, prime_power
from .graph import Assignment, AssignmentError

__all__ = ["baseline", "repetition", "mols", "latin_squares", "ramanujan"]


def _check_int(fn: str, name: str, v: object, lo: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise AssignmentError(f"{fn}: {name} must be an integer, got {name}={v!r}")
    if v < lo:
        raise AssignmentError(f"{fn}: {name} must be >= {lo}, got {name}={v}")
    return int(v)


def baseline(K: int) -> Assignment:
    """No redundancy: worker ``w`` computes file ``w`` only (``num_files = K``, ``l = r = 1``)."""
    K = _check_int("baseline", "K", K, 1)
    return Assignment(K, K, tuple((w,) for w in range(K)), "baseline", (("K", K),))


def repetition(K: int, r: int) -> Assignment:
    """Fractional repetition groups of DRACO (§3.2) and DETOX (§2.1).

    ``K / r`` disjoint groups of ``r`` consecutive workers; group ``t`` = workers
    ``t*r .. t*r + r - 1``, all of which compute file ``t``. ``num_files = K / r``, ``l = 1``.
    Requires ``r | K`` (the authors' code silently enlarges the last group instead).
    """
    K = _check_int("repetition", "K", K, 1)
    r = _check_int("repetition", "r", r, 1)
    if K % r:
        raise AssignmentError(f"repetition: r must divide K, got K={K}, r={r}")
    return Assignment(K, K // r, tuple((w // r,) for w in range(K)), "repetition",
                      (("K", K), ("r", r)))


def latin_squares(l: int) -> np.ndarray:
    """The ``l - 1`` mutually orthogonal Latin squares of order ``l`` (a prime power).

    ``L[k - 1, i, j] = k*i + j`` computed in GF(l), for the nonzero field elements ``k = 1..l-1``
    (integer codes of :mod:`~byzantium.assignments.galois`). For prime ``l`` this is
    ``(k*i + j) mod l`` (ByzShield spec §1.2). Returns an ``(l - 1, l, l)`` int array.
    """
    l = _check_int("latin_squares", "l", l, 2)
    if prime_power(l) is None:
        raise AssignmentError(f"latin_squares: l must be a prime power, got l={l}")
    F = gf(l)
    k = np.arange(1, l)
    i = np.arange(l)
    return F.add[F.mul[k[:, None, None], i[None, :, None]], i[None, None, :]]


def mols(l: int, r: int) -> Assignment:
    """ByzShield's MOLS assignment from ``r`` mutually orthogonal Latin squares of order ``l``.

    ``K = r*l`` workers, ``num_files = l**2`` files, load ``l``, replication ``r``; requires ``l`` a
    prime power and ``1 <= r <= l - 1``. File ``(i, j)`` has index ``i*l + j``; worker ``(k, s)``
    (square ``k = 1..r``, symbol ``s``) has index ``(k-1)*l + s`` and computes every cell whose
    symbol in square ``k`` is ``s`` -- one cell per row, so each square is a parallel class and two
    workers of different squares share exactly one file (spec §1.2).
    """
    l = _check_int("mols", "l", l, 2)
    r = _check_int("mols", "r", r, 1)
    if prime_power(l) is None:
        raise AssignmentError(f"mols: l must be a prime power, got l={l}")
    if r > l - 1:
        raise AssignmentError(f"mols: r must satisfy 1 <= r <= l-1, got l={l}, r={r}")
    L = latin_squares(l)[:r]  # (r, l, l)
    cells = np.arange(l * l).reshape(l, l)
    files_of = []
    for k in range(r):
        for s in range(l):
            files_of.append(tuple(int(c) for c in np.sort(cells[L[k] == s])))
    return Assignment(r * l, l * l, tuple(files_of), "mols", (("l", l), ("r", r)))


def ramanujan(m: int, s: int) -> Assignment:
    """ByzShield's Ramanujan bigraph (spec §1.3), built from the ``s x s`` cyclic shift ``P``.

    ``B`` is the ``s^2 x (m*s)`` block matrix with block ``(i, j) = P^(i*j)``, i.e.
    ``B[(i,a), (j,b)] = 1`` iff ``b = a - i*j (mod s)``; ``s`` must be prime.

    * **Case 1** (``m < s``): workers x files = ``B^T``. ``K = m*s``, ``num_files = s^2``,
      ``l = s``, ``r = m``; worker ``j*s + b`` computes file ``i*s + a`` iff ``a = b + i*j (mod s)``.
    * **Case 2** (``m >= s``): workers x files = ``B``. ``K = s^2``, ``num_files = m*s``,
      ``l = m``, ``r = s``; worker ``i*s + a`` computes file ``j*s + b`` iff ``b = a - i*j (mod s)``.
      The authors' training code also asks ``s | m`` (then files ``j`` and ``j + s`` have the same
      workers); like their ``simulations.py`` we accept any ``m >= s``, which is still biregular
      and Ramanujan (checked in the tests).
    """
    m = _check_int("ramanujan", "m", m, 1)
    s = _check_int("ramanujan", "s", s, 2)
    if not is_prime(s):
        raise AssignmentError(f"ramanujan: s must be prime, got s={s}")
    if m < s:  # Case 1
        files_of = []
        for j in range(m):
            for b in range(s):
                files_of.append(tuple(sorted(i * s + (b + i * j) % s for i in range(s))))
        return Assignment(m * s, s * s, tuple(files_of), "ramanujan",
                          (("m", m), ("s", s), ("case", 1)))
    files_of = []
    for i in range(s):
        for a in range(s):
            files_of.append(tuple(sorted(j * s + (a - i * j) % s for j in range(m))))
    return Assignment(s * s, m * s, tuple(files_of), "ramanujan", (("m", m), ("s", s), ("case", 2)))
