"""The immutable worker x file assignment graph shared by every redundancy scheme.

An :class:`Assignment` is a biregular bipartite graph between ``K`` workers and ``num_files``
files (the paper's ``f``; renamed so it never clashes with a Byzantine count ``f``): worker ``w``
computes the gradient of every file in ``files_of[w]``, and every file is computed by the ``r``
workers in ``workers_of[i]``. ``K * l == num_files * r`` (ByzShield §1.1, spec
``papers/redundancy.md``). Workers and files are 0-based everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

__all__ = ["Assignment", "AssignmentError"]


class AssignmentError(ValueError):
    """An assignment (or a constructor's parameters) violates a structural constraint."""


def _as_index_tuple(where: str, seq: Iterable[Any]) -> tuple[int, ...]:
    out = []
    for v in seq:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            raise AssignmentError(f"{where}: indices must be integers, got {v!r}")
        out.append(int(v))
    return tuple(out)


@dataclass(frozen=True)
class Assignment:
    """Biregular bipartite graph: ``K`` workers, ``num_files`` files, load ``l``, replication ``r``.

    Build it with a constructor (:func:`~byzantium.assignments.mols`, ``ramanujan``,
    ``repetition``, ``baseline``, ``cyclic``) or directly from ``files_of`` /
    :meth:`from_biadjacency`. Construction validates that file lists are sorted, in range and
    duplicate-free, that every worker holds exactly ``l`` files and every file has exactly ``r``
    workers (uniform replication), and that no file is left without a worker.

    ``params`` records the constructor's parameters as ``(name, value)`` pairs, so the object stays
    hashable; :attr:`param_dict` returns them as a dict.

    ``symmetries`` (optional) lists worker permutations ``g`` (``g[w]`` = image of ``w``) that are
    automorphisms of the graph: the multiset of worker sets ``{g(workers_of[i])}`` equals
    ``{workers_of[i]}``. They generate a group the exact adversary search uses for symmetry
    breaking; each is verified here, so a wrong one is an error, never a wrong answer.
    """

    K: int
    num_files: int
    files_of: tuple[tuple[int, ...], ...]
    name: str = "custom"
    params: tuple[tuple[str, int], ...] = ()
    symmetries: tuple[tuple[int, ...], ...] = field(default=(), repr=False, compare=False)
    workers_of: tuple[tuple[int, ...], ...] = field(init=False, repr=False, compare=False)
    r: int = field(init=False, compare=False)
    l: int = field(init=False, compare=False)

    def __post_init__(self) -> None:
        K, F = self.K, self.num_files
        if not isinstance(K, (int, np.integer)) or K < 1:
            raise AssignmentError(f"Assignment: K must be a positive integer, got K={K!r}")
        if not isinstance(F, (int, np.integer)) or F < 1:
            raise AssignmentError(
                f"Assignment: num_files must be a positive integer, got num_files={F!r}"
            )
        files_of = tuple(_as_index_tuple(f"Assignment: files_of[{w}]", fs) for w, fs in
                         enumerate(self.files_of))
        if len(files_of) != K:
            raise AssignmentError(
                f"Assignment: files_of must have one entry per worker (K={K}), got {len(files_of)}"
            )
        for w, fs in enumerate(files_of):
            if any(b <= a for a, b in zip(fs, fs[1:])):
                raise AssignmentError(
                    f"Assignment: files_of[{w}] must be strictly increasing, got {fs}"
                )
            if fs and (fs[0] < 0 or fs[-1] >= F):
                raise AssignmentError(
                    f"Assignment: files_of[{w}] must lie in [0, {F}), got {fs}"
                )
        loads = {len(fs) for fs in files_of}
        if len(loads) != 1 or 0 in loads:
            raise AssignmentError(
                f"Assignment: every worker must hold the same positive number of files (load l), "
                f"got loads {sorted(loads)}"
            )
        workers: list[list[int]] = [[] for _ in range(F)]
        for w, fs in enumerate(files_of):
            for i in fs:
                workers[i].append(w)
        reps = {len(ws) for ws in workers}
        if 0 in reps:
            missing = [i for i, ws in enumerate(workers) if not ws]
            raise AssignmentError(f"Assignment: files {missing[:10]} have no worker")
        if len(reps) != 1:
            raise AssignmentError(
                f"Assignment: every file must have the same number of workers (replication r), "
                f"got replications {sorted(reps)}"
            )
        files_key = sorted(tuple(ws) for ws in workers)
        syms = tuple(_as_index_tuple("Assignment: symmetries", g) for g in self.symmetries)
        for g in syms:
            if sorted(g) != list(range(K)):
                raise AssignmentError(
                    f"Assignment: each symmetry must be a permutation of range(K={K}), got {g}"
                )
            if sorted(tuple(sorted(g[w] for w in ws)) for ws in workers) != files_key:
                raise AssignmentError(
                    f"Assignment: symmetry {g} is not an automorphism of the graph"
                )
        object.__setattr__(self, "symmetries", syms)
        object.__setattr__(self, "K", int(K))
        object.__setattr__(self, "num_files", int(F))
        object.__setattr__(self, "files_of", files_of)
        object.__setattr__(self, "params", tuple((str(k), v) for k, v in self.params))
        object.__setattr__(self, "workers_of", tuple(tuple(ws) for ws in workers))
        object.__setattr__(self, "l", loads.pop())
        object.__setattr__(self, "r", reps.pop())

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_biadjacency(
        cls, A: np.ndarray | Sequence[Sequence[int]], name: str = "custom",
        params: Sequence[tuple[str, int]] = (),
    ) -> "Assignment":
        """Build from a ``K x num_files`` 0/1 matrix (``A[w, i] = 1`` iff worker ``w`` computes
        file ``i``)."""
        A = np.asarray(A)
        if A.ndim != 2:
            raise AssignmentError(
                f"Assignment.from_biadjacency: expected a 2-D K x num_files matrix, "
                f"got shape {A.shape}"
            )
        if not np.isin(A, (0, 1)).all():
            raise AssignmentError("Assignment.from_biadjacency: entries must be 0 or 1")
        files_of = tuple(tuple(int(i) for i in np.flatnonzero(row)) for row in A)
        return cls(int(A.shape[0]), int(A.shape[1]), files_of, name, tuple(params))

    def symmetry_group(self, max_size: int = 4096) -> np.ndarray:
        """Worker permutations of the group generated by :attr:`symmetries` (identity first), as a
        ``(|G|, K)`` int array; closure stops at ``max_size`` elements. Any subset of the
        automorphism group is enough for the exact search's symmetry breaking."""
        ident = tuple(range(self.K))
        seen = {ident: None}
        frontier = [ident]
        gens = [g for g in self.symmetries if g != ident]
        while frontier and len(seen) < max_size:
            nxt = []
            for h in frontier:
                for g in gens:
                    gh = tuple(g[x] for x in h)
                    if gh not in seen:
                        seen[gh] = None
                        nxt.append(gh)
                        if len(seen) >= max_size:
                            break
                if len(seen) >= max_size:
                    break
            frontier = nxt
        return np.array(list(seen), dtype=np.int64)

    # ------------------------------------------------------------------ views
    @property
    def r_majority(self) -> int:
        """``r' = (r + 1) // 2``: copies a value needs to win a file's vote. For even ``r`` that
        is ``r / 2``: a tie counts as corrupted (the honest copies lose it), as in the authors'
        simulations."""
        return (self.r + 1) // 2

    @property
    def param_dict(self) -> dict[str, int]:
        return dict(self.params)

    def biadjacency(self) -> np.ndarray:
        """The ``K x num_files`` 0/1 matrix (``int8``; a fresh array each call)."""
        A = np.zeros((self.K, self.num_files), dtype=np.int8)
        for w, fs in enumerate(self.files_of):
            A[w, list(fs)] = 1
        return A

    def copy_slots(self) -> np.ndarray:
        """``(num_files, r)`` indices into the worker-major message stack.

        Worker ``w`` sends its ``l`` file gradients in ``files_of[w]`` order; stacking all workers
        gives ``K * l`` rows, row ``w * l + t`` holding file ``files_of[w][t]``. Entry ``[i, c]`` is
        the row of the copy of file ``i`` sent by its ``c``-th worker ``workers_of[i][c]``.
        """
        pos = {(w, i): w * self.l + t for w, fs in enumerate(self.files_of) for t, i in
               enumerate(fs)}
        return np.array([[pos[(w, i)] for w in ws] for i, ws in enumerate(self.workers_of)],
                        dtype=np.int64)

    def describe(self) -> str:
        ps = ", ".join(f"{k}={v}" for k, v in self.params)
        return (f"{self.name}({ps}): K={self.K} workers, {self.num_files} files, "
                f"load l={self.l}, replication r={self.r}")

    def __str__(self) -> str:
        return self.describe()
