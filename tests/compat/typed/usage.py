"""Typed use of the conveyor API, checked by mypy in tests/compat/test_typing.py.

A line commented "R: <type>" must reveal that type; one commented "E: <code>" must be reported
with that error code. Every other line must pass.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import reveal_type

from conveyor import AsyncStream, Pipeline, batch_task, single_task


@single_task
async def parse(text: str) -> int:
    return int(text)


@single_task
def halve(x: int) -> float | None:
    return x / 2 if x % 2 == 0 else None


@single_task
async def words(text: str) -> list[str]:
    return text.split()


@single_task
async def ticks(x: float) -> AsyncIterator[bytes]:
    yield b"x" * int(x)


@single_task
def letters(text: str, upper: bool = False) -> Iterator[str]:
    yield from text.upper() if upper else text


@single_task(on_error="skip_item", retry_attempts=3)
async def checked(x: int) -> str:
    return str(x)


@batch_task(max_size=3)
async def total(xs: list[int]) -> int:
    return sum(xs)


@batch_task(2, 5)
def spread(xs: list[int]) -> list[str]:
    return [str(x) for x in xs]


@batch_task
async def lengths(xs: list[bytes]) -> AsyncIterator[int]:
    for x in xs:
        yield len(x)


reveal_type(parse)  # R: SingleTask[str, int]
reveal_type(halve)  # R: SingleTask[int, float]
reveal_type(words)  # R: SingleTask[str, str]
reveal_type(ticks)  # R: SingleTask[float, bytes]
reveal_type(letters)  # R: SingleTask[str, str]
reveal_type(checked)  # R: SingleTask[int, str]
reveal_type(total)  # R: BatchTask[int, int]
reveal_type(spread)  # R: BatchTask[int, str]
reveal_type(lengths)  # R: BatchTask[bytes, int]

numbers = parse | total | spread
reveal_type(numbers)  # R: Pipeline[str, str]
reveal_type(numbers(["1", "2"]))  # R: AsyncStream[str]
reveal_type(numbers.as_completed(["1"]))  # R: AsyncStream[str]
reveal_type(halve | ticks | lengths)  # R: Pipeline[int, int]
reveal_type(parse | (halve | ticks))  # R: Pipeline[str, bytes]
reveal_type(numbers.with_context(tag=1))  # R: Pipeline[str, str]
reveal_type(AsyncStream(ticks.as_completed([1.0])))  # R: AsyncStream[bytes]


async def consume(stream: AsyncStream[str]) -> None:
    reveal_type(await stream.collect())  # R: list[str]
    async for value in stream:
        reveal_type(value)  # R: str
    reveal_type(await anext(stream))  # R: str


numbers("12")  # one str is one item: fine
parse | words  # E: operator
numbers([1, 2])  # E: list-item
total | parse  # E: operator
Pipeline() | parse
