"""Deterministic, stateless randomness: one generator per (seed, stream, step).

Deriving every step's generators from ``(seed, stream, step)`` instead of advancing a shared
generator makes a run reproducible bit for bit and makes ``--resume`` exact: a resumed run draws
the same numbers at step t as an uninterrupted one, with no generator state to save.

Every stream (``data``, ``placement``, ``delay``, ...) is mixed with SplitMix64
(:func:`derive_seed`) except one named stream that keeps an older derivation:

``files``
    :class:`byzantium.training.split.FileSampler`'s own per-step generator, used when
    ``sample(step)`` is given no generator. Its seed is, as it was before this module existed,
    the first 8 bytes (little-endian) of ``sha256(b"byzantium.files:<seed>:<step>")`` with the top
    bit cleared, so batches drawn without an explicit generator stay bit-identical to those of
    earlier versions.
"""

from __future__ import annotations

import hashlib
import zlib

import torch

__all__ = ["derive_seed", "generator"]


_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    """One round of the SplitMix64 finaliser (Steele, Lea, Flood 2014): a bijective 64-bit mix."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


_SHA256_STREAMS = {"files": "byzantium.files"}
"""Streams whose seed is a SHA-256 of ``"<tag>:<seed>:<step>"`` (their historical derivation)."""


def derive_seed(seed: int, stream: str, step: int = 0) -> int:
    """A 63-bit seed mixed from the run seed, a stream name and a step.

    SplitMix64 applied to each component in turn: distinct ``(seed, stream, step)`` give unrelated
    seeds, in a couple of microseconds (the simulator derives several generators per step). The
    ``files`` stream keeps its SHA-256 derivation (see the module docstring).
    """
    tag = _SHA256_STREAMS.get(stream)
    if tag is not None:
        digest = hashlib.sha256(f"{tag}:{seed}:{step}".encode()).digest()
        return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)
    h = _splitmix64(int(seed) & _MASK64)
    h = _splitmix64(h ^ zlib.crc32(stream.encode()))
    h = _splitmix64(h ^ (int(step) & _MASK64))
    return h & ((1 << 63) - 1)


def generator(seed: int, stream: str, step: int = 0, device: str | torch.device = "cpu") -> torch.Generator:
    """A fresh ``torch.Generator`` for ``(seed, stream, step)``."""
    g = torch.Generator(device=device)
    g.manual_seed(derive_seed(seed, stream, step))
    return g
