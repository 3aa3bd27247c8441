"""Keep freed tensor memory in the process instead of handing it back to the kernel.

glibc serves every allocation above its mmap threshold (at most 32 MiB, and 128 KiB until
the first large free) with a fresh ``mmap`` and returns it with ``munmap`` when the tensor
dies; the next batch then page-faults the same memory back in, one 4 KiB page at a time,
each zeroed by the kernel. For an LRP pass over a batch of 224² images that is about a million
page faults per 64 images, a third of the wall time on a CPU (see BENCHMARKS.md). Raising
the mmap and trim thresholds makes freed tensors go back to malloc's free lists, so the
next batch reuses them without faults. The peak memory is unchanged; the memory stays
mapped until the process ends (what a long batch run wants anyway).

This changes a process-wide setting, so the library never does it on import: the ``lrp``
command calls :func:`tune_allocator` at start, the benchmarks call it for every method
alike, and a program using the API may call it once. ``LRPCLI_MALLOC=default`` in the
environment turns it off.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import platform

__all__ = ["ENV_VAR", "tune_allocator"]

ENV_VAR = "LRPCLI_MALLOC"
# mallopt(3) parameter numbers (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
_INT_MAX = 2**31 - 1
_FALLBACK_MMAP_THRESHOLD = 32 << 20  # the largest value every glibc accepts
_TOP_PAD = 64 << 20

@functools.cache
def tune_allocator() -> str:
    """Raise glibc's mmap/trim thresholds once per process; returns what was done.

    ``"tuned"`` (thresholds raised), ``"tuned (mmap threshold 32 MiB)"`` (an older glibc that
    caps it), ``"default (LRPCLI_MALLOC=default)"`` or ``"default (not glibc)"``. Safe to call
    more than once.
    """
    if os.environ.get(ENV_VAR, "").strip().lower() == "default":
        return f"default ({ENV_VAR}=default)"
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return "default (not glibc)"
    return _mallopt_all()


def _mallopt_all() -> str:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return "default (mallopt not found)"
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    result = "tuned"
    if not mallopt(_M_MMAP_THRESHOLD, _INT_MAX):
        if not mallopt(_M_MMAP_THRESHOLD, _FALLBACK_MMAP_THRESHOLD):
            return "default (mallopt refused the mmap threshold)"
        result = "tuned (mmap threshold 32 MiB)"
    mallopt(_M_TRIM_THRESHOLD, _INT_MAX)
    mallopt(_M_TOP_PAD, _TOP_PAD)
    return result
