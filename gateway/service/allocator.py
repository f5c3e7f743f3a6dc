"""glibc's allocator, set for a box with little memory and many threads that mostly wait.

By default glibc gives each thread that allocates an arena of its own (up to eight per core) and
keeps what those arenas free; and after a large block is freed it raises the size served by mmap,
so blocks of that size stay in the arenas afterwards. On the box, the ingest, the uplink, the page's
threads and the loop's workers each grew an arena: 3.5 MB more resident after three minutes of
100 riders at 4 Hz (``tools/bench daemon``), and still growing. Two arenas, a fixed mmap threshold
and trimming at 128 KB keep it to what is in use. Elsewhere than glibc this does nothing.
"""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1  # mallopt(3) parameters, from glibc's malloc.h
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
SETTINGS = ((M_ARENA_MAX, 2), (M_MMAP_THRESHOLD, 128 * 1024), (M_TRIM_THRESHOLD, 128 * 1024))


def tune() -> bool:
    """Apply ``SETTINGS``; True when glibc took them (call it before the threads start)."""
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False  # not glibc
    taken = all(mallopt(param, value) == 1 for param, value in SETTINGS)
    if not taken:
        log.debug("the allocator kept some of its defaults (mallopt refused)")
    return taken
