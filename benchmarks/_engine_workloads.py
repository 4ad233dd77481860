"""One benchmark workload, run in a fresh process; prints a single JSON line with its figures.

    python -I _engine_workloads.py --lib ours --workload cpu --repo-root /path/to/repo
    python -I _engine_workloads.py --lib old --workload cpu

`ours` imports `conveyor_core` from the given repo root (this checkout, or an exported earlier
revision for the baseline); `old` imports `conveyor` from the interpreter's site-packages
(conveyor-streaming 1.2.1 in benchmarks/.venv-old); `aiostream` builds the same pipeline from
aiostream's operators (`map | chunks | map or concatmap | map`, ordered, as in its docs);
`floor` makes the same calls with no library at all: a plain loop for the trivial workloads, 4,096
plain worker tasks for the sleeping one. Run with `-I` so neither the script's directory nor
PYTHONPATH leaks onto `sys.path`. This file imports nothing from the repo, so the old library's
interpreter can run it as it is.

Input: cpu, list and io get a list. mem and scale get a lazy source: a plain generator for our
engine, an async generator for the old library, and endless gets an async generator for both. 1.2.1
iterates only lists and async iterables that are also `Iterable`: it passes any other iterable
(`range(...)`, a generator) to the first stage as ONE item, and a bare async generator to the first
stage as a side argument (the run then yields nothing). So for 1.2.1 the async generator is wrapped
in an object that has `__aiter__` and a never-called `__iter__`. `--input async` gives our engine
the (unwrapped) async generator for mem and scale too.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import resource
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Iterator
from pathlib import Path
from typing import Any

Figures = dict[str, Any]
Workload = Callable[[Any, str], Coroutine[Any, Any, Figures]]

CPU_ITEMS = 100_000
IO_ITEMS = 2_000
IO_SLEEP = 0.05
MEM_ITEMS = 100_000
MEM_SLEEP = 0.001
SCALE_ITEMS = 1_000_000
ENDLESS_PERIOD = 0.01
ENDLESS_RESULTS = 20
BATCH_SIZE = 16
WARMUP_ITEMS = 200
FLOOR_WORKERS = 4_096
OLD_LAZY = "async generator (wrapped)"


def _rss_kib() -> int | None:
    """Current resident set size in KiB, from /proc (None where there is no /proc)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _maxrss_kib() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # bytes on macOS, KiB on Linux


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (Linux >= 4.0), so import-time peaks do not count."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


class _Memory:
    """Peak RSS growth: ru_maxrss after the run minus the RSS just before it."""

    def __init__(self) -> None:
        self.peak_reset = _reset_peak_rss()
        self.before = _rss_kib() or _maxrss_kib()

    def growth_mb(self) -> float:
        return round(max(0, _maxrss_kib() - self.before) / 1024, 2)


def _load(lib: str, repo_root: str | None) -> tuple[Any, Figures]:
    if lib == "floor":
        return None, {"module": "none (plain asyncio)", "python": sys.version.split()[0]}
    if lib == "aiostream":
        from importlib.metadata import version

        module = importlib.import_module("aiostream")
        info = {"module": "aiostream", "file": str(module.__file__)}
        info |= {"version": version("aiostream"), "python": sys.version.split()[0]}
        return module, info
    if lib == "ours":
        if repo_root is None:
            raise SystemExit("--repo-root is required for --lib ours")
        sys.path.insert(0, repo_root)
        module = importlib.import_module("conveyor_core")
        info = {"module": "conveyor_core", "file": str(module.__file__)}
    else:
        module = importlib.import_module("conveyor")
        from importlib.metadata import version

        info = {
            "module": "conveyor",
            "file": str(module.__file__),
            "version": version("conveyor-streaming"),
        }
    info["python"] = sys.version.split()[0]
    return module, info


def _checksum(n: int, per_item: int, batches: int = 0) -> int:
    """Sum of the results when each item gets `per_item` added and each batch sums to one + 1."""
    return n * (n - 1) // 2 + per_item * n + batches


class _OldLibSource:
    """An async iterable that 1.2.1's `Pipeline.__call__` accepts: it checks `Iterable` first."""

    def __init__(self, source: AsyncIterator[int]) -> None:
        self._source = source

    def __aiter__(self) -> AsyncIterator[int]:
        return self._source

    def __iter__(self) -> Iterator[int]:
        raise TypeError("iterate asynchronously")


async def _count_up(n: int) -> AsyncIterator[int]:
    for i in range(n):
        yield i


def _source(n: int, kind: str) -> Iterable[int] | AsyncIterator[int] | _OldLibSource:
    if kind == "list":
        return list(range(n))
    if kind == "generator":
        return (i for i in range(n))
    return _wrap(_count_up(n), kind)


def _wrap(source: AsyncIterator[int], kind: str) -> AsyncIterator[int] | _OldLibSource:
    return _OldLibSource(source) if kind == OLD_LAZY else source


async def _consume(stream: Any) -> tuple[int, int]:
    """Count and sum the results with `async for`, keeping none of them."""
    count = total = 0
    async for value in stream:
        count += 1
        total += value
    return count, total


def _trivial_stages(lib: Any, singles: int) -> Any:
    add_one = lib.single_task(_add_one)
    pipeline = add_one
    for _ in range(singles - 1):
        pipeline = pipeline | add_one
    return pipeline


def _result(
    n: int, wall: float, memory: _Memory, count: int, total: int, want: tuple[int, int]
) -> Figures:
    ok = (count, total) == want
    figures: Figures = {
        "items": n,
        "wall_s": round(wall, 4),
        "items_per_s": round(n / wall, 1),
        "rss_growth_mb": memory.growth_mb(),
        "peak_reset": memory.peak_reset,
        "ok": ok,
    }
    if not ok:
        figures["check"] = f"got {count} results summing to {total}, want {want[0]} and {want[1]}"
    return figures


async def _warm_up(pipeline: Any, kind: str) -> None:
    await _consume(pipeline(_source(WARMUP_ITEMS, kind)))


async def _add_one(x: int) -> int:
    return x + 1


async def _sum_batch(batch: list[int]) -> int:
    return sum(batch)


async def _add_one_each(batch: list[int]) -> list[int]:
    return [x + 1 for x in batch]


def _batch_want(n: int, fans_out: bool) -> tuple[int, int]:
    """(results, their sum) of add_one | sum_batch or add_one_each | add_one over range(n)."""
    if fans_out:
        return n, _checksum(n, 3)
    batches = n // BATCH_SIZE
    return batches, _checksum(n, 1, batches)


async def _measure_batch(
    run: Callable[[list[int]], Coroutine[Any, Any, list[int]]], fans_out: bool
) -> Figures:
    """Warm up on a few items, then time one run over CPU_ITEMS items from a list."""
    await run(list(range(WARMUP_ITEMS)))
    data = _source(CPU_ITEMS, "list")
    assert isinstance(data, list)
    memory = _Memory()
    start = time.perf_counter()
    results = await run(data)
    wall = time.perf_counter() - start
    want = _batch_want(CPU_ITEMS, fans_out)
    return _result(CPU_ITEMS, wall, memory, len(results), sum(results), want) | {"input": "list"}


def _conveyor_batch(fans_out: bool) -> Workload:
    """single | batch(16) | single in conveyor (ours or 1.2.1), trivial async functions."""

    async def workload(lib: Any, lazy_kind: str) -> Figures:
        single = lib.single_task(_add_one)
        batch = lib.batch_task(max_size=BATCH_SIZE)(_add_one_each if fans_out else _sum_batch)
        pipeline = single | batch | single

        async def run(data: list[int]) -> list[int]:
            results: list[int] = await pipeline(data).collect()
            return results

        return await _measure_batch(run, fans_out)

    return workload


def _aiostream_batch(fans_out: bool) -> Workload:
    """The same in aiostream: map | chunks(16) | map (or concatmap) | map, ordered."""

    async def workload(aiostream: Any, lazy_kind: str) -> Figures:
        pipe = aiostream.pipe

        async def each(batch: list[int]) -> AsyncIterator[int]:
            for value in await _add_one_each(batch):
                yield value

        middle = pipe.concatmap(each) if fans_out else pipe.map(_sum_batch)

        async def run(data: list[int]) -> list[int]:
            xs = (
                aiostream.stream.iterate(data)
                | pipe.map(_add_one)
                | pipe.chunks(BATCH_SIZE)
                | middle
                | pipe.map(_add_one)
            )
            results: list[int] = await aiostream.stream.list(xs)
            return results

        return await _measure_batch(run, fans_out)

    return workload


def _floor_batch(fans_out: bool) -> Workload:
    """The same calls awaited one after another in a plain loop: no scheduling at all."""

    async def workload(_: Any, lazy_kind: str) -> Figures:
        async def run(data: list[int]) -> list[int]:
            results = []
            for i in range(0, len(data), BATCH_SIZE):
                batch = [await _add_one(x) for x in data[i : i + BATCH_SIZE]]
                if fans_out:
                    for value in await _add_one_each(batch):
                        results.append(await _add_one(value))
                else:
                    results.append(await _add_one(await _sum_batch(batch)))
            return results

        return await _measure_batch(run, fans_out)

    return workload


async def io(lib: Any, lazy_kind: str) -> Figures:
    """single | batch(16) | single where every call sleeps 50 ms, 2,000 items from a list."""

    @lib.single_task
    async def slow_add_one(x: int) -> int:
        await asyncio.sleep(IO_SLEEP)
        return x + 1

    @lib.batch_task(max_size=BATCH_SIZE)
    async def slow_sum(batch: list[int]) -> int:
        await asyncio.sleep(IO_SLEEP)
        return sum(batch)

    pipeline = slow_add_one | slow_sum | slow_add_one
    data = _source(IO_ITEMS, "list")
    memory = _Memory()
    start = time.perf_counter()
    results = await pipeline(data).collect()
    wall = time.perf_counter() - start
    batches = IO_ITEMS // BATCH_SIZE
    want = (batches, _checksum(IO_ITEMS, 1, batches))
    figures = _result(IO_ITEMS, wall, memory, len(results), sum(results), want)
    figures["x_ideal"] = round(wall / (3 * IO_SLEEP), 2)
    figures["input"] = "list"
    return figures


async def mem(lib: Any, lazy_kind: str) -> Figures:
    """single | single, each sleeping 1 ms, 100,000 items from a lazy source, `async for`."""

    @lib.single_task
    async def nap_add_one(x: int) -> int:
        await asyncio.sleep(MEM_SLEEP)
        return x + 1

    pipeline = nap_add_one | nap_add_one
    await _warm_up(pipeline, lazy_kind)
    data = _source(MEM_ITEMS, lazy_kind)
    memory = _Memory()
    start = time.perf_counter()
    count, total = await _consume(pipeline(data))
    wall = time.perf_counter() - start
    return _result(MEM_ITEMS, wall, memory, count, total, (MEM_ITEMS, _checksum(MEM_ITEMS, 2)))


async def mem_floor(_: Any, lazy_kind: str) -> Figures:
    """The mem workload's calls made by 4,096 plain worker tasks sharing one lazy source."""

    async def nap_add_one(x: int) -> int:
        await asyncio.sleep(MEM_SLEEP)
        return x + 1

    count = total = 0

    async def worker(items: Iterator[int]) -> None:
        nonlocal count, total
        for x in items:  # next() is synchronous: the workers share the iterator safely
            value = await nap_add_one(await nap_add_one(x))
            count += 1
            total += value

    async def run(n: int) -> None:
        items = iter(range(n))
        await asyncio.gather(*(worker(items) for _ in range(FLOOR_WORKERS)))

    await run(WARMUP_ITEMS)
    count = total = 0
    memory = _Memory()
    start = time.perf_counter()
    await run(MEM_ITEMS)
    wall = time.perf_counter() - start
    want = (MEM_ITEMS, _checksum(MEM_ITEMS, 2))
    return _result(MEM_ITEMS, wall, memory, count, total, want) | {"input": "range iterator"}


async def scale_floor(_: Any, lazy_kind: str) -> Figures:
    """The scale workload's calls (three per item) in a plain loop over a lazy source."""
    count = total = 0
    memory = _Memory()
    start = time.perf_counter()
    for x in range(SCALE_ITEMS):
        count += 1
        total += await _add_one(await _add_one(await _add_one(x)))
    wall = time.perf_counter() - start
    want = (SCALE_ITEMS, _checksum(SCALE_ITEMS, 3))
    return _result(SCALE_ITEMS, wall, memory, count, total, want) | {"input": "range"}


async def scale(lib: Any, lazy_kind: str) -> Figures:
    """Three trivial single stages, 1,000,000 items from a lazy source, `async for`."""
    pipeline = _trivial_stages(lib, singles=3)
    await _warm_up(pipeline, lazy_kind)
    data = _source(SCALE_ITEMS, lazy_kind)
    memory = _Memory()
    start = time.perf_counter()
    count, total = await _consume(pipeline(data))
    wall = time.perf_counter() - start
    want = (SCALE_ITEMS, _checksum(SCALE_ITEMS, 3))
    return _result(SCALE_ITEMS, wall, memory, count, total, want)


async def endless(lib: Any, lazy_kind: str) -> Figures:
    """An endless async source (one item per 10 ms) through single | single; break after 20."""
    pulled = 0
    first_yield: float | None = None

    async def ticker() -> AsyncIterator[int]:
        nonlocal pulled, first_yield
        i = 0
        while True:
            if first_yield is None:
                first_yield = time.perf_counter()
            pulled += 1
            yield i
            i += 1
            await asyncio.sleep(ENDLESS_PERIOD)

    pipeline = _trivial_stages(lib, singles=2)
    results: list[int] = []
    arrivals: list[float] = []
    source = _wrap(ticker(), lazy_kind)
    async for value in pipeline(source):
        arrivals.append(time.perf_counter())
        results.append(value)
        if len(results) == ENDLESS_RESULTS:
            break
    pulled_at_break = pulled
    await asyncio.sleep(0.2)  # leave time for a background clean-up, then look
    current = asyncio.current_task()
    left = [task for task in asyncio.all_tasks() if task is not current and not task.done()]
    assert first_yield is not None
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
    ok = results == list(range(2, ENDLESS_RESULTS + 2))
    figures: Figures = {
        "first_result_ms": round((arrivals[0] - first_yield) * 1000, 3),
        "wall_s": round(arrivals[-1] - first_yield, 4),
        "mean_gap_ms": round(sum(gaps) / len(gaps) * 1000, 3),
        "tasks_left_after_break": len(left),
        "source_pulled_after_break": pulled - pulled_at_break,
        "ok": ok,
        "input": OLD_LAZY if lazy_kind == OLD_LAZY else "async generator",
    }
    if not ok:
        figures["check"] = f"got {results}"
    return figures


_conveyor_cpu = _conveyor_batch(fans_out=False)
_conveyor_list = _conveyor_batch(fans_out=True)
# workload -> library kind -> the workload written for it; "conveyor" serves ours and old
WORKLOADS: dict[str, dict[str, Workload]] = {
    "cpu": {
        "conveyor": _conveyor_cpu,
        "aiostream": _aiostream_batch(fans_out=False),
        "floor": _floor_batch(fans_out=False),
    },
    "list": {
        "conveyor": _conveyor_list,
        "aiostream": _aiostream_batch(fans_out=True),
        "floor": _floor_batch(fans_out=True),
    },
    "io": {"conveyor": io},
    "mem": {"conveyor": mem, "floor": mem_floor},
    "endless": {"conveyor": endless},
    "scale": {"conveyor": scale, "floor": scale_floor},
}
LIB_KINDS = {"ours": "conveyor", "old": "conveyor", "aiostream": "aiostream", "floor": "floor"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lib", choices=sorted(LIB_KINDS), required=True)
    parser.add_argument("--workload", choices=sorted(WORKLOADS), required=True)
    parser.add_argument("--repo-root", help="directory holding conveyor_core (for --lib ours)")
    parser.add_argument("--input", choices=["native", "async"], default="native")
    args = parser.parse_args(argv)

    lib, info = _load(args.lib, args.repo_root)
    alias = Path(args.repo_root or "/nonexistent", "conveyor").resolve()
    if args.lib == "old" and Path(info["file"]).resolve().parent == alias:
        raise SystemExit(f"imported the repo's alias package, not the old library: {info['file']}")
    if args.lib == "old":
        lazy_kind = OLD_LAZY
    else:
        lazy_kind = "generator" if args.input == "native" else "async generator"

    async def run() -> None:
        written = WORKLOADS[args.workload].get(LIB_KINDS[args.lib])
        if written is None:
            raise SystemExit(f"no {args.workload} workload for {args.lib}")
        figures = await written(lib, lazy_kind)
        figures.setdefault("input", lazy_kind)
        figures["lib"] = info
        # Print before asyncio.run's teardown, so a hang while shutting down keeps the figures.
        print(json.dumps(figures), flush=True)

    asyncio.run(run())


if __name__ == "__main__":
    main()
