"""Assignment constructions: baseline, fractional repetition (DRACO/DETOX), MOLS and Ramanujan
bigraphs (ByzShield). Index conventions follow spec ``papers/redundancy.md`` §1.2-§1.3 so that the
test vectors of §1.10 hold (0-based workers: MPI rank = worker + 1).
"""

from __future__ import annotations

import itertools

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
    syms = _sym_group_gens(K)
    return Assignment(K, K, tuple((w,) for w in range(K)), "baseline", (("K", K),), syms)


def _sym_group_gens(n: int, offset: int = 0, K: int | None = None) -> tuple[tuple[int, ...], ...]:
    """Generators (transposition, n-cycle) of the symmetric group on ``offset .. offset+n-1``."""
    K = n if K is None else K
    if n < 2:
        return ()
    t = list(range(K)); t[offset], t[offset + 1] = offset + 1, offset
    c = list(range(K))
    for x in range(n):
        c[offset + x] = offset + (x + 1) % n
    return (tuple(t), tuple(c))


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
    g = K // r
    syms = list(_sym_group_gens(r, 0, K))  # permute the members of group 0
    if g >= 2:  # permute whole groups: swap groups 0 and 1, cycle all groups
        swap = [(w + r) % (2 * r) if w < 2 * r else w for w in range(K)]
        cyc = [(w + r) % K for w in range(K)]
        syms += [tuple(swap), tuple(cyc)]
    return Assignment(K, g, tuple((w // r,) for w in range(K)), "repetition",
                      (("K", K), ("r", r)), tuple(syms))


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
    return Assignment(r * l, l * l, tuple(files_of), "mols", (("l", l), ("r", r)),
                      _mols_symmetries(l, r))


def _mols_symmetries(l: int, r: int) -> tuple[tuple[int, ...], ...]:
    """Automorphisms of the MOLS net: affine maps ``x -> M x + t`` of the plane GF(l)^2 whose
    linear part ``M`` permutes the ``r`` parallel classes in use.

    Worker ``(k, s)`` is the line ``k i + j = s`` with direction ``(1, -k)``. A translation by
    ``(a, b)`` sends it to ``(k, s + k a + b)``. ``M = [[a, b], [c, d]]`` sends direction
    ``(1, -k)`` to ``(a - b k, c - d k)``, i.e. to class ``k' = -(c - d k) / (a - b k)`` (must be
    one of ``1..r``), and the line's point ``(0, s)`` to ``(b s, d s)``, so ``s' = k' b s + d s``.
    Returned as generators (translations along the basis) plus every admissible ``M``.
    """
    F = gf(l)
    add, mul = F.add, F.mul
    neg = [F.neg(x) for x in range(l)]
    inv = [0] + [F.inv(x) for x in range(1, l)]
    syms = []
    for t in range(F.k):  # translations: the additive group of GF(p^k) is generated by p^t
        e = F.p ** t
        for a, b in ((e, 0), (0, e)):
            syms.append(tuple((k - 1) * l + int(add[add[s, mul[k, a]], b])
                              for k in range(1, r + 1) for s in range(l)))
    classes = set(range(1, r + 1))
    # every invertible M for small l (l^4 candidates); only the dilations c*I above that
    mats = (itertools.product(range(l), repeat=4) if l <= 32 else
            ((c, 0, 0, c) for c in range(2, l)))
    for a, b, c, d in mats:
        if add[mul[a, d], neg[mul[b, c]]] == 0:
            continue
        kmap = {}
        for k in classes:
            vi = add[a, mul[b, neg[k]]]
            vj = add[c, mul[d, neg[k]]]
            if vi == 0 or neg[mul[vj, inv[vi]]] not in classes:
                break
            kmap[k] = int(neg[mul[vj, inv[vi]]])
        else:
            g = [0] * (r * l)
            for k in classes:
                k2 = kmap[k]
                for s in range(l):
                    g[(k - 1) * l + s] = (k2 - 1) * l + int(add[mul[mul[k2, b], s], mul[d, s]])
            if g != list(range(r * l)):
                syms.append(tuple(g))
    return tuple(syms)


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
        # file maps (i, a) -> (i, a + 1) and (i, a) -> (i + 1, a) move worker (j, b) to
        # (j, b + 1) and (j, b - j)
        syms = (tuple(j * s + (b + 1) % s for j in range(m) for b in range(s)),
                tuple(j * s + (b - j) % s for j in range(m) for b in range(s)))
        return Assignment(m * s, s * s, tuple(files_of), "ramanujan",
                          (("m", m), ("s", s), ("case", 1)), syms)
    files_of = []
    for i in range(s):
        for a in range(s):
            files_of.append(tuple(sorted(j * s + (a - i * j) % s for j in range(m))))
    # file maps (j, b) -> (j, b + 1) and (j, b) -> (j, b - j) move worker (i, a) to (i, a + 1)
    # and (i + 1, a); when s | m, (j, b) -> (j + 1 mod m, b) moves it to (i, a + i)
    syms = [tuple(i * s + (a + 1) % s for i in range(s) for a in range(s)),
            tuple(((i + 1) % s) * s + a for i in range(s) for a in range(s))]
    if m % s == 0:
        syms.append(tuple(i * s + (a + i) % s for i in range(s) for a in range(s)))
    return Assignment(s * s, m * s, tuple(files_of), "ramanujan",
                      (("m", m), ("s", s), ("case", 2)), tuple(syms))
