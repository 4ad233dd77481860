"""`RemotePipeline`: a pipeline served by a Conveyor service, used as a stage of a local one."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx

from conveyor_core import StreamItemError, StreamTask
from conveyor_core._client import ConveyorClient, Mode, raise_for_event

__all__ = ["RemotePipeline"]


class RemotePipeline(StreamTask):
    """A stage that runs the service's pipeline `name` on the items that reach it.

    `fetch | RemotePipeline("http://svc:8000", "rag") | enrich`: items are uploaded as NDJSON
    as they arrive and results stream back meanwhile, each with the positions (in this stage's
    input) it came from. The remote run uses the local run's mode unless `mode` is given. Items
    the remote skipped yield nothing; a failed remote run raises `RemoteRunError`.
    """

    def __init__(
        self,
        base_url: str,
        name: str,
        api_key: str | None = None,
        *,
        mode: Mode | None = None,
        timeout: float | httpx.Timeout = 30.0,
    ) -> None:
        super().__init__(name=f"remote:{name}")
        self.base_url = base_url
        self.pipeline = name
        self.mode = mode
        self._api_key = api_key
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"RemotePipeline({self.base_url!r}, {self.pipeline!r})"

    async def process_stream(
        self, items: AsyncIterator[Any], mode: str
    ) -> AsyncIterator[tuple[Any, list[int]] | StreamItemError]:
        run_mode: Any = self.mode or mode
        async with ConveyorClient(self.base_url, self._api_key, timeout=self._timeout) as client:
            events = client.events(self.pipeline, items, run_mode)
            async with contextlib.aclosing(events):
                async for event in events:
                    if event["type"] == "result":
                        yield event["value"], list(event["sources"])
                    elif event["type"] == "item_error":
                        yield StreamItemError(
                            list(event["sources"]),
                            event["error"],
                            event["action"],
                            stage=f"{self.name}/{event['stage']}",
                        )
                    else:
                        raise_for_event(event, self.pipeline)
