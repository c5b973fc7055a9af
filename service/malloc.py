"""glibc malloc settings for processes that analyse photo after photo.

An analysis allocates and frees hundreds of megabytes of image arrays (a 12 MP RGB decode is
36 MB, the canonical frame's float maps up to 30 MB). With glibc's defaults a long-lived process
keeps handing that memory back to the kernel and faulting fresh zero-filled pages in for the next
photo, and a threaded server makes it worse (one arena per request thread, each trimmed on its
own). Measured:

* Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which also switches off the
  dynamic mmap threshold: 190,000 page faults and 1.0 s of system time per photo, against 2,500
  and 0.01 s with these settings (0.2 s with glibc's defaults), for the same 1.4 s of user time.
* bench/load.py, gunicorn with 32 threads per worker: a third of the server's CPU was system
  time and an upload cost 1.6x the analysis alone; with these settings 13 % and 1.1x.

So: arrays up to 32 MB (glibc's largest mmap threshold) come from the heap, freed memory up to
128 MB at the heap's top stays for the next photo, and request threads share two arenas.
``mallopt`` acts on the running process, so this works after a fork (gunicorn's ``post_fork``, a
Dask worker's first task), where ``MALLOC_*`` environment variables would be read too late.
"""
from __future__ import annotations

import sys

# mallopt parameters, from glibc's malloc.h
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8

SETTINGS = {
    M_MMAP_THRESHOLD: 32 * 2**20,
    M_TRIM_THRESHOLD: 128 * 2**20,
    M_ARENA_MAX: 2,
}


def keep_freed_memory() -> bool:
    """Apply :data:`SETTINGS` to this process. Returns False where there is no glibc
    ``mallopt`` (macOS, musl) or glibc refused a value."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return all(mallopt(param, value) == 1 for param, value in SETTINGS.items())
