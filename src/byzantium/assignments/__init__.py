"""Who computes what: worker x file assignments, the DRACO cyclic code, the omniscient adversary.

Constructors (each validates its parameters and returns an immutable :class:`Assignment`):
``baseline(K)``, ``repetition(K, r)``, ``mols(l, r)``, ``ramanujan(m, s)`` (Case 1 when ``m < s``,
Case 2 when ``m >= s``) and ``cyclic(K, s)``. :class:`CyclicCode` adds DRACO's encoding matrix,
worker encoder and decoder. ``worst_case(a, q)`` is the exact omniscient adversary; the bounds and
closed forms of ByzShield / DETOX live next to it. Spec: ``papers/redundancy.md``.
"""

from .adversary import (
    WorstCase,
    corrupted_files,
    corruption_counts,
    random_placement_fraction,
    repetition_worst_case,
    second_eigenvalue,
    spectral_bound,
    spectral_bound_closed_form,
    trivial_bound,
    worst_case,
)
from .constructions import baseline, latin_squares, mols, ramanujan, repetition
from .cyclic import CyclicCode, CyclicDecodeResult, DecodeError, cyclic
from .galois import GF, gf, is_prime, prime_power
from .graph import Assignment, AssignmentError

__all__ = [
    "Assignment",
    "AssignmentError",
    "CyclicCode",
    "CyclicDecodeResult",
    "DecodeError",
    "GF",
    "WorstCase",
    "baseline",
    "corrupted_files",
    "corruption_counts",
    "cyclic",
    "gf",
    "is_prime",
    "latin_squares",
    "mols",
    "prime_power",
    "ramanujan",
    "random_placement_fraction",
    "repetition",
    "repetition_worst_case",
    "second_eigenvalue",
    "spectral_bound",
    "spectral_bound_closed_form",
    "trivial_bound",
    "worst_case",
]
