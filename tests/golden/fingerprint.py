"""The machine and CPU-dispatch settings a golden table was recorded under.

Bit-for-bit equality of floating-point results holds only for the same kernels: the same CPU
(model and instruction set), the same torch build, and the same dispatch choices (torch's
``ATEN_CPU_CAPABILITY``, MKL's ``MKL_CBWR`` and ``MKL_ENABLE_INSTRUCTIONS``).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

DISPATCH_VARS = ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS")


def _cpuinfo_field(name: str) -> str | None:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == name:
            return value.strip()
    return None


def machine_fingerprint() -> dict[str, str | None]:
    """CPU model and a short hash of its feature flags (/proc/cpuinfo), torch's version and the
    CPU capability it dispatches to, and the dispatch environment variables (None: unset)."""
    flags = _cpuinfo_field("flags")
    return {
        "cpu_model": _cpuinfo_field("model name"),
        "cpu_flags_sha1": hashlib.sha1(flags.encode()).hexdigest()[:12] if flags else None,
        "torch": torch.__version__,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        **{v: os.environ.get(v) for v in DISPATCH_VARS},
    }
