"""Keep freed heap memory in the process instead of handing it back to the kernel after every request.

glibc serves allocations above its mmap threshold (128 KiB at start) with fresh pages from the kernel and
trims the heap top above 128 KiB back to it: a service that parses a 220 kB night into numpy arrays of
tens of kilobytes each then pays a page fault per 4 KiB page touched, on every upload (~800 faults per
O2Ring night, 1.6 µs each on this VM). Raising both thresholds keeps the same pages for the next upload;
the cost is that up to `trim_mib` of freed memory stays in the process's resident set.
"""

import ctypes
import ctypes.util
import logging

log = logging.getLogger("respmon.core")

M_TRIM_THRESHOLD = -1  # glibc malloc.h
M_MMAP_THRESHOLD = -3


def keep_freed_memory(mmap_mib: int = 8, trim_mib: int = 32) -> bool:
    """Set glibc's mmap and trim thresholds (False where the C library is not glibc: nothing changed)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = getattr(libc, "mallopt", None) if libc is not None else None
    except OSError:
        mallopt = None
    if mallopt is None:
        return False
    done = bool(mallopt(M_MMAP_THRESHOLD, mmap_mib << 20)) and bool(mallopt(M_TRIM_THRESHOLD, trim_mib << 20))
    if not done:
        log.warning("malloc thresholds not set", extra={"mmap_mib": mmap_mib, "trim_mib": trim_mib})
    return done
