"""Per-crystal work of the data layer (parsing CIFs, applying a model's transform) in worker processes.

Workers are forked where the platform allows it: a fresh interpreter spends 5-8 s of CPU importing torch,
torch_geometric and pymatgen before its first crystal, more than a whole split of cheap transforms takes. Each
worker limits torch to one thread first, as torch's own DataLoader workers do, so that a forked child never
re-enters the parent's OpenMP pool. A forked worker reads its chunk from the memory it inherited (pickling a
pymatgen Structure costs four times more than making its full-cell tensors). Elsewhere (macOS, Windows) workers
are spawned and receive their chunks pickled.

Results come back pickled with every tensor as a NumPy array: torch would otherwise send each returned tensor
through shared memory with one file descriptor (slow, and it runs out of descriptors on large splits), and plain
pickling of a tensor runs a whole ``torch.save`` per tensor (ten times slower than the work itself for small cells).
"""

from __future__ import annotations

import multiprocessing
import pickle
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from crystalgen.resources import one_thread_per_worker, usable_cores
from crystalgen.worker_start import starting_workers

#: Default ceiling on worker processes (beyond this, reading the results back dominates).
MAX_DEFAULT_WORKERS = 8
#: A worker must get at least this many crystals to be worth starting.
MIN_ITEMS_PER_WORKER = 64


def worker_count(workers: int | None, n_items: int) -> int:
    """``workers`` (None: min(usable cores, 8); 0 or 1: in this process), lowered so that each worker gets enough
    crystals."""
    wanted = min(usable_cores(), MAX_DEFAULT_WORKERS) if workers is None else int(workers)
    return max(1, min(wanted, n_items // MIN_ITEMS_PER_WORKER))


def chunk_size(n_items: int, workers: int) -> int:
    """About eight chunks per worker (a smooth progress bar, balanced load), 16 to 512 items each."""
    return max(16, min(512, -(-n_items // max(1, workers * 8))))


def _context() -> multiprocessing.context.BaseContext:
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    return multiprocessing.get_context(method)


class _Array:
    """A tensor in transit: its NumPy view (same dtype and shape)."""

    __slots__ = ("array",)

    def __init__(self, array: Any) -> None:
        self.array = array

    def __getstate__(self) -> Any:
        return self.array

    def __setstate__(self, state: Any) -> None:
        self.array = state


def _to_wire(obj: Any) -> Any:
    import torch

    if isinstance(obj, torch.Tensor):
        return _Array(obj.detach().cpu().numpy())
    if isinstance(obj, dict):
        return {k: _to_wire(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_to_wire(v) for v in obj)
    return obj


def _from_wire(obj: Any) -> Any:
    import torch

    if isinstance(obj, _Array):
        return torch.from_numpy(obj.array)
    if isinstance(obj, dict):
        return {k: _from_wire(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_from_wire(v) for v in obj)
    return obj


def _pickled(fn: Callable[[Sequence[Any]], list[Any]], chunk: Sequence[Any]) -> bytes:
    return pickle.dumps(_to_wire(fn(chunk)), protocol=pickle.HIGHEST_PROTOCOL)


#: The items of the running map, inherited by forked workers.
_inherited: Sequence[Any] = ()


def _pickled_range(fn: Callable[[Sequence[Any]], list[Any]], start: int, stop: int) -> bytes:
    return _pickled(fn, _inherited[start:stop])


def ordered_map(fn: Callable[[Sequence[Any]], list[Any]], items: Sequence[Any], *, workers: int | None, desc: str,
                progress: bool) -> list[Any]:
    """``fn`` (module-level, or a partial of one: chunk -> one result per item) over ``items``; results in item order.

    ``fn`` reports per-item failures in its results; an exception it raises (a bug) propagates.
    """
    from tqdm.auto import tqdm

    n = worker_count(workers, len(items))
    size = chunk_size(len(items), n)
    results: list[Any] = []
    with tqdm(total=len(items), desc=desc, disable=not progress or not items, file=sys.stderr, leave=False) as bar:
        if n == 1:
            for i in range(0, len(items), size):
                results += fn(items[i:i + size])
                bar.update(len(items[i:i + size]))
            return results
        global _inherited
        context = _context()
        forked = context.get_start_method() == "fork"
        _inherited = items if forked else ()
        pool = ProcessPoolExecutor(max_workers=n, mp_context=context, initializer=one_thread_per_worker)
        try:
            with starting_workers():  # the first submit starts the workers
                futures = [
                    pool.submit(_pickled_range, fn, i, i + size) if forked else pool.submit(_pickled, fn, items[i:i + size])
                    for i in range(0, len(items), size)
                ]
            for future in futures:
                # Our own workers' output, unpickled by the process that started them (never bytes read from disk).
                chunk_results = _from_wire(pickle.loads(future.result()))
                results += chunk_results
                bar.update(len(chunk_results))
        except BaseException:
            # Interrupted (a signal ended the workers, a chunk raised): do not wait for the pool's manager thread,
            # which can block for ever on the pipe of a worker that was killed.
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        else:
            pool.shutdown(wait=True)
        finally:
            _inherited = ()
    return results

