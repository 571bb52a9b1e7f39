"""Give the C heap's idle memory back to the operating system after a burst (glibc only; elsewhere a no-op).

Why: request bodies are buffered in many chunks of up to a few hundred KB, which glibc's malloc serves from
its heap. Once a burst of large bodies is freed (300 stalled 1.9 MB uploads: ~570 MB), the free space sits
between live objects, so the heap cannot shrink from its top, and the server's RSS stayed ~100 MB above its
start for good. ``malloc_trim(0)`` returns every free page of every arena (glibc >= 2.8); ``mallinfo2``
(glibc >= 2.33) says how much is free, so we trim only when that is worth it.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util


class _MallInfo2(ctypes.Structure):
    # struct mallinfo2 (glibc >= 2.33): ten size_t fields; fordblks is the free bytes held by malloc.
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(None)  # the C library this process already uses
    except OSError:
        return None
    if not (hasattr(libc, "mallinfo2") and hasattr(libc, "malloc_trim")):
        return None  # not glibc (musl, macOS) or a glibc before 2.33
    libc.mallinfo2.restype = _MallInfo2
    libc.malloc_trim.argtypes = [ctypes.c_size_t]
    return libc


_LIBC = _glibc()
AVAILABLE = _LIBC is not None  # False: the functions below do nothing


def free_heap_bytes() -> int:
    """Bytes that malloc holds but does not use (0 where this cannot be known)."""
    return int(_LIBC.mallinfo2().fordblks) if _LIBC is not None else 0


def release_free_heap() -> None:
    """Return malloc's free pages to the operating system (glibc's ``malloc_trim(0)``)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


async def reclaim_forever(period: float = 1.0, threshold: int = 32 * 1024 * 1024) -> None:
    """Every ``period`` seconds, trim the heap if its free bytes grew by more than ``threshold``. Cancel to stop.

    Growth, not size: a trim releases the free pages but leaves them counted as free in malloc's bins, so
    the free size alone would trim again every period. The reference is the lowest free size seen since the
    last trim (memory that is reused lowers it).
    """
    loop = asyncio.get_running_loop()
    reference = free_heap_bytes()
    while True:
        await asyncio.sleep(period)
        free = free_heap_bytes()
        reference = min(reference, free)
        if free > reference + threshold:
            # In asyncio's default executor: trimming a large heap takes milliseconds, which the event loop
            # should not wait for (anyio's request thread pool is not involved).
            await loop.run_in_executor(None, release_free_heap)
            reference = free
