"""Executors: a CPU-bound batch stage in the event loop, in a process pool and on Ray actors.

    python benchmarks/executors.py [--repeat 3] [--batches 40] [--batch-ms 50] [--json out.json]

1. Throughput: a pure-Python CPU-bound batch stage (`--batches` batches of 8 items, each batch
   about `--batch-ms` of work on one core: the work is calibrated once, as a number of loop
   iterations, so a slower or busier machine shows as a lower rate, not as the same time) run
   in the loop (no executor), with `executor="process"` (one worker per CPU) and with
   `RayActors(replicas=2)`; each rate against the in-loop rate (target: at least 1.7x on 2 cores).
   Pools and actors are warmed up first: their start is reported apart.
2. Per-call overhead: a trivial batch (sum of 8 ints), one call at a time, on the process pool,
   Ray actors and Ray tasks, minus the same call in the loop (target: under 2 ms on Ray).
3. Cancellation: runs of two long calls that tick (a file every 10 ms of CPU work), cancelled
   with `aclose()`: how long `aclose()` took and when the last remote tick was, after it.

A local Ray is started for the script (`num_cpus` = the machine's CPUs, no dashboard). Each figure
is given as the range over `--repeat` runs. On a machine shared with other work the figures are
indicative only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conveyor_core import BatchTask, Executor, ProcessExecutor, SingleTask  # noqa: E402

ITEMS_PER_BATCH = 8


# -- the work (module level: process workers import it, Ray pickles it) ---------------------


def burn(loops: int) -> int:
    n = 0
    for i in range(loops):
        n += i & 7
    return n


def spin(batch: list[int], loops: int = 0) -> int:
    """A batch of pure-Python CPU work (the GIL held throughout)."""
    burn(loops)
    return sum(batch)


def ticking_work(x: float, where: str) -> float:
    """CPU work for `x` seconds, touching a tick file every 10 ms or so."""
    tick = Path(where, f"tick-{os.getpid()}-{time.monotonic_ns()}")
    end = time.monotonic() + x
    while time.monotonic() < end:
        burn(20_000)
        tick.with_suffix(".new").write_text(str(time.time()))
        os.replace(tick.with_suffix(".new"), tick)  # whole, even when killed mid-write
    return x


def calibrate(batch_ms: float) -> int:
    """Loops of `burn` that take `batch_ms` on one core here (best of 5)."""
    probe = 200_000
    best = min(_timed(lambda: burn(probe)) for _ in range(5))
    return max(1, int(probe * batch_ms / 1000 / best))


def _timed(work: Callable[[], Any]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


# -- measures ---------------------------------------------------------------------------------


async def batch_rate(executor: str | Executor | None, batches: int, loops: int) -> float:
    task = BatchTask(spin, max_size=ITEMS_PER_BATCH, executor=executor).with_inputs(loops)
    items = range(batches * ITEMS_PER_BATCH)
    start = time.perf_counter()
    results = await task(items).collect()
    elapsed = time.perf_counter() - start
    assert len(results) == batches
    return batches / elapsed


async def per_call_ms(executor: Executor | None, calls: int) -> float:
    """A trivial batch, one call at a time (the same stage function as `batch_rate`, so that
    Ray actors are the same ones: each task gets actors of its own)."""
    task = BatchTask(spin, max_size=ITEMS_PER_BATCH, executor=executor, concurrency_limit=1)
    items = range(calls * ITEMS_PER_BATCH)
    start = time.perf_counter()
    assert len(await task(items).collect()) == calls
    return (time.perf_counter() - start) / calls * 1000


async def cancel_figures(executor: Executor) -> tuple[float, float]:
    """(seconds aclose() took, seconds from the cancel to the last remote tick)."""
    with tempfile.TemporaryDirectory() as where:
        task = SingleTask(ticking_work, executor=executor).with_inputs(where)
        stream = task([60.0, 60.0])
        consumer = asyncio.ensure_future(stream.collect())
        while len(ticks(where)) < 2:  # noqa: ASYNC110 - the calls run elsewhere
            await asyncio.sleep(0.01)
        cancelled = time.time()
        await stream.aclose()
        closed = time.time()
        consumer.cancel()
        try:
            await consumer
        except (asyncio.CancelledError, Exception):
            pass
        await asyncio.sleep(2.5)
        return closed - cancelled, max(ticks(where)) - cancelled


def ticks(where: str) -> list[float]:
    return [float(path.read_text()) for path in Path(where).glob("tick-*") if not path.suffix]


async def warm(executor: Executor, loops: int) -> float:
    """Seconds until the batch stage's calls run on every worker (Ray: its own actors)."""
    workers = executor.max_in_flight or 1
    start = time.perf_counter()
    await batch_rate(executor, workers * 2, loops // 50)
    return time.perf_counter() - start


def note(message: str) -> None:
    print(f"[executors] {message}", file=sys.stderr, flush=True)


def span(values: list[float], digits: int = 2) -> str:
    low, high = min(values), max(values)
    if round(low, digits) == round(high, digits):
        return f"{low:.{digits}f}"
    return f"{low:.{digits}f}-{high:.{digits}f}"


# -- the run ------------------------------------------------------------------------------------


async def main(args: argparse.Namespace) -> dict[str, Any]:
    import ray

    from conveyor_core.ray import RayActors, RayTasks, connect

    loops = calibrate(args.batch_ms)
    cpus = os.cpu_count() or 1
    note("starting a local Ray")
    connect(log_to_driver=False)
    note("warming up the process pool and the actors")
    process = ProcessExecutor()
    actors = RayActors(replicas=2)
    report: dict[str, Any] = {
        "machine": f"{platform.machine()}, {cpus} CPUs, Python {platform.python_version()}",
        "ray": ray.__version__,
        "batch": f"{ITEMS_PER_BATCH} items, ~{args.batch_ms:g} ms of work ({loops} loops)",
        "warm_s": {
            "process": await warm(process, loops),
            "ray-actors x2": await warm(actors, loops),
        },
    }
    rates: dict[str, list[float]] = {"in the loop": [], "process": [], "ray-actors x2": []}
    calls: dict[str, list[float]] = {"in the loop": [], "process": [], "ray-actors x2": []}
    for run in range(args.repeat):
        note(f"throughput and per-call overhead, run {run + 1} of {args.repeat}")
        rates["in the loop"].append(await batch_rate(None, args.batches, loops))
        rates["process"].append(await batch_rate(process, args.batches, loops))
        rates["ray-actors x2"].append(await batch_rate(actors, args.batches, loops))
        calls["in the loop"].append(await per_call_ms(None, args.calls))
        calls["process"].append(await per_call_ms(process, args.calls))
        calls["ray-actors x2"].append(await per_call_ms(actors, args.calls))
    await actors.aclose()  # each task gets actors of its own, which hold their CPUs
    note("cancellation")
    ticking_actors = RayActors(replicas=2)
    cancels: dict[str, list[tuple[float, float]]] = {"process": [], "ray-actors x2": []}
    for _ in range(args.repeat):
        cancels["process"].append(await cancel_figures(process))
        cancels["ray-actors x2"].append(await cancel_figures(ticking_actors))
    await ticking_actors.aclose()
    note("Ray tasks")
    tasks = RayTasks()
    await warm(tasks, loops)
    calls["ray-tasks"] = [await per_call_ms(tasks, args.calls) for _ in range(args.repeat)]
    cancels["ray-tasks"] = [await cancel_figures(tasks) for _ in range(args.repeat)]
    await process.aclose()
    ray.shutdown()
    report["batches_per_s"] = rates
    report["speedup"] = {
        name: [rate / base for rate, base in zip(values, rates["in the loop"], strict=True)]
        for name, values in rates.items()
        if name != "in the loop"
    }
    local = statistics.median(calls["in the loop"])
    report["call_ms"] = calls
    report["overhead_ms"] = {
        name: [value - local for value in values]
        for name, values in calls.items()
        if name != "in the loop"
    }
    report["cancel"] = {
        name: {"aclose_s": [a for a, _ in pairs], "last_tick_after_s": [t for _, t in pairs]}
        for name, pairs in cancels.items()
    }
    return report


def show(report: dict[str, Any], args: argparse.Namespace) -> None:
    print(f"\n{report['machine']}; Ray {report['ray']}; runs: {args.repeat} (ranges)")
    print(f"batch stage: {args.batches} batches of {report['batch']}")
    warm_s = ", ".join(f"{k} {v:.2f} s" for k, v in report["warm_s"].items())
    print(f"warm-up (excluded): {warm_s}\n")
    print("throughput                 batches/s      vs in the loop   target")
    for name, values in report["batches_per_s"].items():
        ratio = report["speedup"].get(name)
        versus = f"{span(ratio)}x" if ratio else "1x"
        target = ">= 1.7x" if ratio else ""
        print(f"  {name:<24} {span(values, 1):<14} {versus:<16} {target}")
    print("\nper-call overhead, a trivial batch, one call at a time")
    print(f"  in the loop              {span(report['call_ms']['in the loop'], 3)} ms a call")
    for name, values in report["overhead_ms"].items():
        target = "< 2 ms" if name.startswith("ray") else ""
        print(f"  {name:<24} +{span(values)} ms a call   {target}")
    print("\ncancel (aclose) of 2 running calls of CPU work")
    for name, figures in report["cancel"].items():
        print(
            f"  {name:<24} aclose {span(figures['aclose_s'])} s, "
            f"last remote tick {span(figures['last_tick_after_s'])} s after the cancel"
        )
    print()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--batch-ms", type=float, default=50.0)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--json", type=Path)
    arguments = parser.parse_args()
    result = asyncio.run(main(arguments))
    show(result, arguments)
    if arguments.json:
        arguments.json.write_text(json.dumps(result, indent=2))
