"""A pipeline for benchmarks/redis_store.py: `CONVEYOR_PIPELINES=benchmarks.stamp_pipelines`.

`stamp` waits each item's number of seconds, then yields the wall-clock time it was made, so a
follower can tell how long each event took to reach it.
"""

from __future__ import annotations

import asyncio
import time

from conveyor_core import single_task

__all__ = ["PIPELINES"]


@single_task
async def stamp(delay: float) -> float:
    """Waits `delay` seconds, then yields `time.time()`: when the result was made."""
    await asyncio.sleep(delay)
    return time.time()


PIPELINES = {"stamp": stamp}
