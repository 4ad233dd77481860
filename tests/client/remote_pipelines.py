"""Pipelines the client tests add to the service with CONVEYOR_PIPELINES=remote_pipelines."""

from __future__ import annotations

import asyncio

from conveyor_core import single_task


@single_task
async def fail_on_three(x: int) -> int:
    """Doubles numbers, and fails the run on 3."""
    await asyncio.sleep(0.01)
    if x == 3:
        raise ValueError("three is not allowed")
    return x * 2


@single_task(on_error="skip_item")
async def skip_three(x: int) -> int:
    """Doubles numbers, and skips 3."""
    await asyncio.sleep(0.01 * (x % 4))
    if x == 3:
        raise ValueError("three is skipped")
    return x * 2


PIPELINES = {"fails_on_three": fail_on_three, "skips_three": skip_three}
