"""What this machine's processor can do fast, so bf16 is used only where it pays."""

from __future__ import annotations

import functools
import platform


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The processor's feature flags (Linux ``/proc/cpuinfo``; empty elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_bf16() -> bool:
    """True when bf16 matrix products run natively (AVX512-BF16 or AMX), not emulated.

    Without these, bf16 on a CPU is emulated and slower than fp32. Apple silicon is left out:
    its bf16 support in torch's CPU kernels is partial.
    """
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})
