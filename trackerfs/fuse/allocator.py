"""The C allocator of the mount daemon, tuned for a stream of large, short-lived buffers.

Content moves through the daemon in pieces of 128 KiB to 1 MiB (socket reads, blocks,
FUSE replies). glibc's malloc serves allocations that large with their own mmap() and
returns each with munmap() when it is freed; in a process with threads every munmap()
is a TLB shootdown on each core, and every fresh mapping is page-faulted and zeroed
again. Profiled on a cold sequential read, freeing those buffers cost the trio thread
about a fifth of its time. Raising the mmap threshold keeps them in the heap, where
freed memory is reused at once; the trim threshold bounds what the heap keeps unused,
and the arena count bounds how many heaps the worker threads spread over.

Only glibc has these knobs (mallopt(3)); elsewhere nothing changes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

# mallopt(3) parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8

#: Allocations below this come from the heap (glibc's own ceiling on 64-bit).
MMAP_THRESHOLD = 32 << 20
#: Free memory at the top of a heap beyond this goes back to the system: a block cache's
#: worth, so that a reader's churn does not give pages back only to fault them in again.
TRIM_THRESHOLD = 256 << 20
#: Heaps for the trio thread and the worker threads together: buffers received on a worker
#: and freed on the trio thread go back where the next receive finds them.
ARENA_MAX = 2


def tune() -> bool:
    """Apply the settings above; whether this C library took them."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    taken = all(
        mallopt(parameter, value) == 1
        for parameter, value in (
            (M_MMAP_THRESHOLD, MMAP_THRESHOLD),
            (M_TRIM_THRESHOLD, TRIM_THRESHOLD),
            (M_ARENA_MAX, ARENA_MAX),
        )
    )
    log.debug("allocator tuned for large buffers: %s", "yes" if taken else "not by this C library")
    return taken
