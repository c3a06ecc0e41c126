"""Fresh memory without transparent huge pages while a session is read or written.

numpy asks the kernel for transparent huge pages (``madvise(MADV_HUGEPAGE)``) on every large
array. Where the kernel's THP ``defrag`` setting is ``madvise`` (a common default, and this
project's CI), each first touch of such memory may compact RAM synchronously to find a free
2 MB page. An ingest touches ~1 GB of fresh arrays once and streams through them, so it pays
that cost and gains nothing: reading the 240 MB idtracker.ai benchmark session took 1.37 s with
huge pages and 0.69 s without (benchmarks/bench_idtrackerai.py, same machine, same run).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

try:  # numpy >= 2
    from numpy._core import multiarray as _ma
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray as _ma

_setter = getattr(_ma, "_set_madvise_hugepage", None)


@contextmanager
def small_pages() -> Iterator[None]:
    """Turn off numpy's huge-page advice inside the block (restored after; a no-op where numpy lacks it)."""
    if _setter is None:  # pragma: no cover
        yield
        return
    old = _setter(False)
    try:
        yield
    finally:
        _setter(old)


def huge_pages_enabled() -> bool | None:
    """numpy's current huge-page advice (None where numpy has no such switch)."""
    getter = getattr(_ma, "_get_madvise_hugepage", None)
    return None if getter is None else bool(getter())


def _find_malloc_trim():
    try:
        import ctypes

        return ctypes.CDLL(None).malloc_trim  # glibc; absent on musl, macOS and Windows
    except (AttributeError, OSError, TypeError):
        return None


_malloc_trim = _find_malloc_trim()


def trim_heap() -> None:
    """Hand the C heap's free pages back to the kernel (glibc ``malloc_trim``; a no-op elsewhere).

    glibc raises its mmap threshold each time a large block is freed, so the columns a reader
    builds come from the heap, and when they are freed their pages stay resident as holes the next
    step may never reuse (DuckDB allocates from its own jemalloc). An ingest calls this between its
    steps: ~0.1 ms, and 20-35 MB less resident for a 36 MB OrganoidTracker file (design notes).
    """
    if _malloc_trim is not None:
        _malloc_trim(0)
