"""Run per-crystal work in worker processes, in order, with a progress bar.

Workers start from a fresh interpreter (forkserver where available, else spawn), never by forking a parent that
may hold torch threads, and each keeps one torch thread (the workers share the cores). A ``WorkerPool`` keeps its workers for several calls (one evaluation: generated crystals,
reference, training set), so each worker imports pymatgen/matminer and builds the featurisers once. Small jobs run
in the calling process, where starting workers would cost more than it saves.
"""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from typing import Any

from crystalgen.resources import one_thread_per_worker, usable_cores
from crystalgen.worker_start import starting_workers

# Below this many items per worker, the seconds a worker needs to import pymatgen/matminer are not worth paying.
MIN_ITEMS_PER_WORKER = 8


def resolve_workers(workers: int | None) -> int:
    """None -> every core this process may use (affinity and cgroup quota); at least 1."""
    return max(1, usable_cores() if workers is None else int(workers))


class WorkerPool:
    """Up to ``workers`` processes, started on first use and kept until ``close()`` (or the ``with`` block ends)."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = resolve_workers(workers)
        self._executor: ProcessPoolExecutor | None = None

    def executor(self) -> Executor:
        if self._executor is None:
            method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
            self._executor = ProcessPoolExecutor(max_workers=self.workers, mp_context=multiprocessing.get_context(method),
                                                 initializer=one_thread_per_worker)
        return self._executor

    @property
    def started(self) -> bool:
        """True once the workers run (their start-up cost is paid: using them is free)."""
        return self._executor is not None

    def close(self, wait: bool = True) -> None:
        """End the workers; ``wait=False`` after an interruption, when a killed worker's pipe could block the wait."""
        if self._executor is not None:
            self._executor.shutdown(wait=wait, cancel_futures=True)
            self._executor = None

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self.close(wait=exc_type is None)


def map_chunks(
    fn: Callable[[Sequence[Any]], list[Any]],
    items: Sequence[Any],
    *,
    workers: int | None = None,
    pool: WorkerPool | None = None,
    chunk_size: int = 16,
    desc: str = "",
    progress: bool = True,
    min_items_per_worker: int = MIN_ITEMS_PER_WORKER,
) -> list[Any]:
    """``fn`` applied to consecutive chunks of ``items`` (fn: chunk -> one result per item); results in item order.

    ``fn`` must be a module-level function (pickled by name) and must not raise for a bad item: per-item failures
    are part of its results. Uses ``pool`` when given, else a pool of ``workers`` processes for this call only.
    Runs in this process when there are fewer than ``2 * min_items_per_worker`` items, unless ``pool`` has
    already started its workers.
    """
    from tqdm.auto import tqdm

    n_workers = pool.workers if pool is not None else resolve_workers(workers)
    parallel = n_workers > 1 and (len(items) >= 2 * min_items_per_worker or (pool is not None and pool.started))
    chunks = [items[i:i + chunk_size] for i in range(0, len(items), chunk_size)]
    results: list[list[Any]] = [[] for _ in chunks]
    bar = tqdm(total=len(items), desc=desc, disable=not progress or not items, file=sys.stderr, leave=False)
    own_pool = None
    try:
        if not parallel:
            for i, chunk in enumerate(chunks):
                results[i] = fn(chunk)
                bar.update(len(chunk))
        else:
            if pool is None:
                pool = own_pool = WorkerPool(n_workers)
            with starting_workers():  # submits start the workers
                futures = {pool.executor().submit(fn, chunk): i for i, chunk in enumerate(chunks)}
            for future in as_completed(futures):
                i = futures[future]
                results[i] = future.result()
                bar.update(len(chunks[i]))
    finally:
        bar.close()
        if own_pool is not None:
            own_pool.close()
    return [result for chunk_results in results for result in chunk_results]
