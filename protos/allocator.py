"""Keep freed memory in the process: one home for how edgecut's processes tune glibc's malloc.

A process that runs a model or carries tensors frees and allocates the same large buffers
again and again: activations every forward, message copies every request. glibc's malloc
by default gives such blocks back to the kernel. It serves an allocation above its mmap
threshold (128 KiB at start, then adapting to the allocation history) with a fresh mmap
and unmaps it on free, and it trims the top of the heap. The next use faults the same
memory in again, page by page. Raising both thresholds keeps the pages in the process.

Measured here (1 thread, 224x224, fresh processes; ``python benchmarks/allocator.py``):
- mobilenet_v2's forward paid 2,600 to 3,500 minor page faults and a quarter of its time
  in the kernel with the defaults, and none with the thresholds raised.
- On loopback, each copy of a 4 MB tensor message paid ~1,000 faults, which doubled the
  round trip (README, "Serving").

Which regime a process lands in depends on its history: the same model timed 12 ms in one
process and 17 to 20 ms in the next.

Called by the CLI before any command, and by the nodes as they start. A Python caller
embedding edgecut calls :func:`keep_freed_memory` once (``edgecut.keep_freed_memory``).
``EDGECUT_KEEP_FREED_MEMORY=0`` keeps the C library's defaults, e.g. under another
allocator. No grpc here: every layer may call it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

OPT_OUT = "EDGECUT_KEEP_FREED_MEMORY"
# mallopt(3) parameter numbers, from glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# glibc caps the mmap threshold at 32 MiB on 64-bit (4 MiB * sizeof(long)); setting it also
# stops it from adapting. Blocks above it are still mapped per use.
MMAP_THRESHOLD = 32 * 2**20
TRIM_THRESHOLD = 4 * MMAP_THRESHOLD  # free heap top kept: several such blocks

_applied = False


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds so freed blocks up to 32 MiB stay in the process
    for reuse. Idempotent.

    Returns True once applied. Returns False when the platform is not Linux with glibc, or
    when ``EDGECUT_KEEP_FREED_MEMORY=0`` is set.
    """
    global _applied
    if _applied:
        return True
    if not sys.platform.startswith("linux") or os.environ.get(OPT_OUT, "1").strip() == "0":
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (musl): its own policy stands
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _applied = (
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
        and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    )
    return _applied
