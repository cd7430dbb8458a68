"""Server-side decoding of redundant messages: majority vote per file (ByzShield, DETOX, DRACO
repetition). DRACO's cyclic-code decoder lives with its encoder in
:class:`byzantium.assignments.CyclicCode` and is re-exported here."""

from ..assignments.cyclic import CyclicCode, CyclicDecodeResult, DecodeError
from .vote import (
    NoMajorityError,
    VoteError,
    VoteResult,
    gather_copies,
    majority_vote,
    vote_messages,
    vote_rows,
)

__all__ = [
    "CyclicCode",
    "CyclicDecodeResult",
    "DecodeError",
    "NoMajorityError",
    "VoteError",
    "VoteResult",
    "gather_copies",
    "majority_vote",
    "vote_messages",
    "vote_rows",
]
