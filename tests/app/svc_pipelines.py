"""Pipelines the service tests register with CONVEYOR_PIPELINES=tests.app.svc_pipelines.

The metrics registered here (in prometheus_client's default registry) let tests against a real
server see inside it through `/metrics`: how many task calls are in flight, how many ran.
"""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import Counter, Gauge
from pydantic import BaseModel

from conveyor_core import batch_task, single_task

IN_FLIGHT = Gauge("svc_fixture_calls_in_flight", "Calls of `sleepy` running now")
BLOBS = Counter("svc_fixture_blob_calls", "Calls of `blob`")


@single_task
async def echo(item: Any) -> Any:
    """Gives each item back as it is."""
    return item


@single_task
async def sleepy(seconds: float) -> float:
    """Sleeps each item's seconds; the in-flight gauge shows the calls going on."""
    IN_FLIGHT.inc()
    try:
        await asyncio.sleep(seconds)
    finally:
        IN_FLIGHT.dec()
    return seconds


@single_task
async def blob(size: int) -> str:
    """A string of `size` bytes per item (for backpressure tests)."""
    BLOBS.inc()
    return "x" * size


@single_task
async def fragile(x: int) -> int:
    """Fails the run on the item 3."""
    await asyncio.sleep(0.01)
    if x == 3:
        raise ValueError("three is not allowed")
    return x


@batch_task(max_size=2)
async def pair_sum(batch: list[int]) -> int:
    return sum(batch)


class Person(BaseModel):
    name: str
    age: int


class Greeting(BaseModel):
    text: str


@single_task
async def greet(person: Person) -> Greeting:
    """Greets people given as objects."""
    return Greeting(text=f"Hello {person.name} ({person.age})")


@single_task
async def weird(x: int) -> bytes:
    """Bytes that are not UTF-8 (the wire sends bytes as base64)."""
    return b"\xff\x00"


@single_task
async def surrogate(x: int) -> str:
    """The item as a string, but a lone surrogate (no JSON form) for the item 2."""
    return "\ud800" if x == 2 else str(x)


@single_task
async def power(n: int) -> int:
    """10 to the power of the item (at most 6000): integers of any number of digits."""
    return 10 ** max(0, min(n, 6000))


@single_task(executor="thread")
def in_thread(x: int) -> int:
    """Adds one in a worker thread, then sums pairs in a process pool."""
    return x + 1


@batch_task(max_size=2, executor="process")
def in_processes(batch: list[int]) -> int:
    if 13 in batch:
        raise ValueError("13 in a process")
    return sum(batch)


@single_task
async def span_probe(x: int) -> dict[str, str]:
    """The OpenTelemetry span current in the call (OpenTelemetry imported only here)."""
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    return {
        "trace_id": format(context.trace_id, "032x"),
        "span_id": format(context.span_id, "016x"),
    }


PIPELINES: dict[str, Any] = {
    "offloaded": in_thread | in_processes,
    "echo": echo,
    "weird": weird,
    "surrogate": surrogate,
    "power": power,
    "sleepy": sleepy,
    "blob": blob,
    "fragile": fragile | pair_sum,
    "greet": greet,
    "span_probe": span_probe,
}
EXAMPLES = {"greet": [{"name": "Ada", "age": 36}], "fragile": [1, 2, 3, 4]}
