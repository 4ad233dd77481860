"""`conveyor_core.client` against real uvicorn processes serving the app."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import pytest

import conveyor_core.client as client_module
from conveyor_core import single_task
from conveyor_core.client import (
    ConveyorClient,
    InvalidInputError,
    NotFoundError,
    PayloadTooLargeError,
    RemotePipeline,
    RemoteRunError,
    ServiceConnectionError,
    ServiceError,
    TooManyJobsError,
    UnauthorizedError,
)

QUICKSTART = [1, 2, 3, 4, 5, 6, 7]


def _port(url: str) -> int:
    return urlsplit(url).port or 80


def test_all_lists_what_the_module_exports() -> None:
    assert sorted(client_module.__all__) == client_module.__all__
    for name in client_module.__all__:
        assert getattr(client_module, name) is not None
    assert issubclass(UnauthorizedError, ServiceError)


def test_the_engine_package_does_not_import_the_client() -> None:
    import subprocess
    import sys

    code = "import sys, conveyor_core; print('httpx' in sys.modules, 'h11' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"


# ---- every method ---------------------------------------------------------------------------


async def test_pipelines_lists_the_registry(service_url: str) -> None:
    async with ConveyorClient(service_url) as client:
        entries = await client.pipelines()
        names = {entry["name"] for entry in entries}
        assert {"quickstart", "timeline", "error_handling"} <= names
        quickstart = await client.pipeline("quickstart")
    assert [stage["kind"] for stage in quickstart["stages"]] == ["single", "batch", "single"]


async def test_invoke_stream_and_events_agree(service_url: str) -> None:
    async with ConveyorClient(service_url) as client:
        assert await client.invoke("quickstart", QUICKSTART) == [22, 40, 24]
        assert [v async for v in client.stream("quickstart", QUICKSTART)] == [22, 40, 24]
        events = [e async for e in client.events("quickstart", QUICKSTART)]
    assert [e["type"] for e in events] == ["result", "result", "result", "end"]
    assert [e["seq"] for e in events] == [0, 1, 2, 3]
    assert [e["sources"] for e in events[:3]] == [[0, 1, 2], [3, 4, 5], [6]]
    assert events[-1]["status"] == "succeeded"
    assert events[-1]["stats"]["inputs"] == 7 and events[-1]["stats"]["results"] == 3


async def test_modes_order_results_differently(service_url: str) -> None:
    delays = [0.9, 0.1, 0.5]
    async with ConveyorClient(service_url) as client:
        ordered = [e async for e in client.events("timeline", delays)]
        done = [e async for e in client.events("timeline", delays, mode="as_completed")]
    sources = [e["sources"] for e in ordered if e["type"] == "result"]
    assert sources == [[0], [1], [2]]
    sources = [e["sources"] for e in done if e["type"] == "result"]
    assert sources == [[1], [2], [0]]


async def test_item_errors_are_events_and_the_run_goes_on(service_url: str) -> None:
    async with ConveyorClient(service_url) as client:
        events = [e async for e in client.events("skips_three", [1, 2, 3, 4])]
        values = [v async for v in client.stream("skips_three", [1, 2, 3, 4])]
    errors = [e for e in events if e["type"] == "item_error"]
    assert len(errors) == 1 and errors[0]["sources"] == [2]
    assert errors[0]["action"] == "skip_item" and "three is skipped" in errors[0]["error"]
    assert values == [2, 4, 8]


async def test_a_failed_run_raises_remote_run_error(service_url: str) -> None:
    async with ConveyorClient(service_url) as client:
        with pytest.raises(RemoteRunError) as caught:
            [v async for v in client.stream("fails_on_three", [1, 2, 3, 4])]
        assert caught.value.stage == "fail_on_three"
        assert caught.value.error.startswith("ValueError") and "three" in caught.value.error
        with pytest.raises(RemoteRunError):
            await client.invoke("fails_on_three", [1, 2, 3, 4])
        events = [e async for e in client.events("fails_on_three", [1, 2, 3, 4])]
    assert [e["type"] for e in events][-2:] == ["error", "end"]
    assert events[-1]["status"] == "failed"


async def test_stream_uploads_an_async_source_as_it_is_produced(service_url: str) -> None:
    source_done = asyncio.Event()

    async def slow_source() -> AsyncIterator[int]:
        for item in QUICKSTART:
            yield item
            await asyncio.sleep(0.25)
        source_done.set()

    seen: list[tuple[int, bool]] = []
    async with ConveyorClient(service_url) as client:
        async for value in client.stream("quickstart", slow_source()):
            seen.append((value, source_done.is_set()))
    assert [value for value, _ in seen] == [22, 40, 24]
    assert seen[0][1] is False, "the first result came only after the upload ended"


async def test_service_errors_are_typed(service_url: str) -> None:
    async with ConveyorClient(service_url) as client:
        with pytest.raises(NotFoundError) as missing:
            await client.invoke("no_such_pipeline", [1])
        assert missing.value.status == 404
        with pytest.raises(NotFoundError):
            [e async for e in client.events("no_such_pipeline", [1])]
        with pytest.raises(NotFoundError):
            await client.job("no-such-job").status()
        with pytest.raises(InvalidInputError) as invalid:
            await client.invoke("quickstart", [1, "two", 3])
        assert invalid.value.status == 422 and "1" in invalid.value.message


async def test_an_unreachable_service_raises_a_connection_error() -> None:
    import socket

    with socket.socket() as sock:  # bound but not listening: connections are refused
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        async with ConveyorClient(url, retries=1, backoff=0.01) as c:
            with pytest.raises(ServiceConnectionError):
                await c.pipelines()
            with pytest.raises(ServiceConnectionError):
                [v async for v in c.stream("quickstart", [1])]
            with pytest.raises(ServiceConnectionError):
                [e async for e in c.job("any").events()]


# ---- jobs -----------------------------------------------------------------------------------


async def test_job_lifecycle(service_url: str) -> None:
    async with ConveyorClient(service_url) as client:
        job = await client.submit("quickstart", QUICKSTART)
        events = [e async for e in job.events()]
        assert [e["seq"] for e in events] == list(range(len(events)))
        assert [e["value"] for e in events if e["type"] == "result"] == [22, 40, 24]
        assert events[-1] == {**events[-1], "type": "end", "status": "succeeded"}
        status = await job.status()
        assert status["job_id"] == job.id and status["status"] == "succeeded"
        assert status["pipeline"] == "quickstart"
        assert await job.results() == [22, 40, 24]
        assert [e["seq"] async for e in job.events(after=1)] == [2, 3]
        assert (await job.wait())["status"] == "succeeded"


async def test_jobs_lists_newest_first_a_page_at_a_time(service_url: str) -> None:
    async with ConveyorClient(service_url) as client:
        submitted = [await client.submit("quickstart", [n]) for n in range(3)]
        for job in submitted:
            await job.wait()
        page = await client.jobs(pipeline="quickstart", limit=2)
        assert [job["job_id"] for job in page.jobs] == [submitted[2].id, submitted[1].id]
        assert page.jobs[0]["status"] == "succeeded" and page.next_cursor is not None
        more = await client.jobs(pipeline="quickstart", limit=2, cursor=page.next_cursor)
        assert more.jobs[0]["job_id"] == submitted[0].id
        assert (await client.jobs(status="running", pipeline="quickstart")).jobs == []


async def test_job_cancel(service_url: str) -> None:
    async with ConveyorClient(service_url) as client:
        job = await client.submit("timeline", [30.0, 30.0], mode="as_completed")
        await job.cancel()
        end = await asyncio.wait_for(job.wait(), 10)
        assert end["status"] == "cancelled"
        assert (await job.status())["status"] == "cancelled"


class CuttingProxy:
    """A TCP proxy to `port` that cuts its n-th connection after `budgets[n]` response bytes."""

    def __init__(self, port: int, budgets: list[int], *, stall: bool = False) -> None:
        self.port = port
        self.budgets = budgets
        self.stall = stall  # past its budget, a connection goes silent instead of closing
        self.requests: list[bytes] = []  # the first bytes each connection sent
        self.cuts = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> CuttingProxy:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.server.wait_closed()

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(self._serve(reader, writer, len(self.requests)))
        self.requests.append(b"")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int
    ) -> None:
        budget = self.budgets[index] if index < len(self.budgets) else None
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)

        async def upstream() -> None:
            while data := await reader.read(65536):
                if len(self.requests[index]) < 4096:
                    self.requests[index] += data
                up_writer.write(data)
                await up_writer.drain()

        async def downstream() -> None:
            left = budget
            while data := await up_reader.read(65536):
                if left is not None and len(data) >= left:
                    writer.write(data[:left])
                    await writer.drain()
                    self.cuts += 1
                    if self.stall:
                        await asyncio.Event().wait()  # until the proxy closes
                    return
                if left is not None:
                    left -= len(data)
                writer.write(data)
                await writer.drain()

        pumps = [asyncio.create_task(upstream()), asyncio.create_task(downstream())]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            writer.transport.abort()
            up_writer.transport.abort()


async def test_job_events_resume_after_cut_connections(service_url: str) -> None:
    delays = [round(0.05 * (i + 1), 2) for i in range(12)]
    async with ConveyorClient(service_url) as client:
        job = await client.submit("timeline", delays)
        # the first two connections break in the middle of the stream (mid-event, even)
        async with (
            CuttingProxy(_port(service_url), budgets=[700, 650]) as proxy,
            ConveyorClient(proxy.url, backoff=0.05) as via_proxy,
        ):
            events = [e async for e in via_proxy.job(job.id).events()]
        assert proxy.cuts == 2 and len(proxy.requests) >= 3
        assert b"last-event-id" not in proxy.requests[0].lower()
        assert b"last-event-id: " in proxy.requests[1].lower()
        assert [e["seq"] for e in events] == list(range(len(events)))
        assert [e["value"] for e in events if e["type"] == "result"] == delays
        assert events[-1]["type"] == "end" and events[-1]["status"] == "succeeded"
        # the same, replaying the finished job, from a given seq
        async with (
            CuttingProxy(_port(service_url), budgets=[400]) as proxy,
            ConveyorClient(proxy.url, backoff=0.05) as via_proxy,
        ):
            tail = [e async for e in via_proxy.job(job.id).events(after=4)]
        assert tail == events[5:]


async def test_job_events_resume_after_a_silent_connection(service_url: str) -> None:
    async with ConveyorClient(service_url) as client:
        job = await client.submit("quickstart", QUICKSTART)
        expected = [e async for e in job.events()]
    async with (
        CuttingProxy(_port(service_url), budgets=[400], stall=True) as proxy,
        ConveyorClient(proxy.url, idle_timeout=0.5, backoff=0.01) as via_proxy,
    ):
        events = await asyncio.wait_for(_collect(via_proxy.job(job.id).events()), 20)
    assert proxy.cuts == 1 and len(proxy.requests) == 2
    assert events == expected


async def _collect(events: AsyncIterator[dict[str, Any]]) -> list[dict[str, Any]]:
    return [event async for event in events]


async def test_job_events_give_up_after_the_retries(service_url: str) -> None:
    async with ConveyorClient(service_url) as client:
        job = await client.submit("quickstart", QUICKSTART)
        await job.wait()
    async with (
        CuttingProxy(_port(service_url), budgets=[300] * 10) as proxy,
        ConveyorClient(proxy.url, retries=2, backoff=0.01) as via_proxy,
    ):
        seen: list[dict[str, Any]] = []
        with pytest.raises(ServiceConnectionError, match="gave up after 3 attempts"):
            async for event in via_proxy.job(job.id).events():
                seen.append(event)
    assert len(proxy.requests) == 3
    assert [e["seq"] for e in seen] == list(range(len(seen)))


# ---- API keys -------------------------------------------------------------------------------


async def test_every_method_works_with_an_api_key(
    keyed_service_url: str, api_keys: tuple[str, str]
) -> None:
    async with ConveyorClient(keyed_service_url, api_keys[1]) as client:
        assert "quickstart" in {p["name"] for p in await client.pipelines()}
        assert (await client.pipeline("timeline"))["name"] == "timeline"
        assert await client.invoke("quickstart", QUICKSTART) == [22, 40, 24]
        assert [v async for v in client.stream("quickstart", QUICKSTART)] == [22, 40, 24]
        events = [e async for e in client.events("quickstart", QUICKSTART, mode="as_completed")]
        assert events[-1]["status"] == "succeeded"

        async def source() -> AsyncIterator[int]:
            for item in QUICKSTART:
                yield item

        assert [v async for v in client.stream("quickstart", source())] == [22, 40, 24]
        job = await client.submit("quickstart", QUICKSTART)
        assert [e["type"] async for e in job.events()][-1] == "end"
        assert (await job.status())["status"] == "succeeded"
        assert await job.results() == [22, 40, 24]
        slow = await client.submit("timeline", [30.0])
        await slow.cancel()
        assert (await slow.wait())["status"] == "cancelled"

    remote = RemotePipeline(keyed_service_url, "quickstart", api_key=api_keys[0])
    assert await (double | remote)(QUICKSTART).collect() == [
        sum(2 * 2 * x for x in QUICKSTART[0:3]) + 10,
        sum(2 * 2 * x for x in QUICKSTART[3:6]) + 10,
        2 * 2 * 7 + 10,
    ]


@pytest.mark.parametrize("key", [None, "wrong-key"])
async def test_a_missing_or_wrong_key_raises_unauthorized(
    keyed_service_url: str, key: str | None
) -> None:
    async with ConveyorClient(keyed_service_url, key) as client:
        calls: list[Any] = [
            client.pipelines(),
            client.pipeline("quickstart"),
            client.invoke("quickstart", [1]),
            client.submit("quickstart", [1]),
            client.job("some-id").status(),
            client.job("some-id").results(),
            client.job("some-id").cancel(),
        ]
        for call in calls:
            with pytest.raises(UnauthorizedError) as caught:
                await call
            assert caught.value.status == 401
        with pytest.raises(UnauthorizedError):
            [v async for v in client.stream("quickstart", [1])]
        with pytest.raises(UnauthorizedError):
            [e async for e in client.job("some-id").events()]

        async def source() -> AsyncIterator[int]:
            yield 1

        with pytest.raises(UnauthorizedError):
            [v async for v in client.stream("quickstart", source())]
    with pytest.raises(UnauthorizedError):
        await (double | RemotePipeline(keyed_service_url, "quickstart", key))([1]).collect()


async def test_limits_raise_413_and_429(keyed_service_url: str, api_keys: tuple[str, str]) -> None:
    async with ConveyorClient(keyed_service_url, api_keys[0]) as client:
        with pytest.raises(PayloadTooLargeError) as too_large:
            await client.invoke("quickstart", list(range(51)))
        assert too_large.value.status == 413
        jobs = [await client.submit("timeline", [30.0]) for _ in range(2)]
        try:
            with pytest.raises(TooManyJobsError) as too_many:
                await client.submit("timeline", [0.1])
            assert too_many.value.status == 429
            assert too_many.value.retry_after is not None and too_many.value.retry_after >= 0
        finally:
            for job in jobs:
                await job.cancel()
            for job in jobs:
                await asyncio.wait_for(job.wait(), 10)


# ---- RemotePipeline -------------------------------------------------------------------------


@single_task
async def double(x: int) -> int:
    return x * 2


@single_task
async def plus_one(x: int) -> int:
    return x + 1


@single_task
async def times_hundred(x: int) -> int:
    return x * 100


async def test_remote_pipeline_as_a_middle_stage(service_url: str) -> None:
    pipeline = plus_one | RemotePipeline(service_url, "quickstart") | times_hundred
    events = [e async for e in pipeline.events(list(range(7)))]
    results = [(e.value, e.sources) for e in events if e.type == "result"]
    # [1..7] -> quickstart -> [22, 40, 24] -> x100
    assert results == [(2200, [0, 1, 2]), (4000, [3, 4, 5]), (2400, [6])]
    assert events[-1].type == "end" and events[-1].status == "succeeded"
    as_completed = await pipeline.as_completed(list(range(7))).collect()
    assert sorted(as_completed) == [2200, 2400, 4000]


async def test_remote_pipeline_maps_sources_around_skipped_items(service_url: str) -> None:
    pipeline = plus_one | RemotePipeline(service_url, "skips_three") | times_hundred
    events = [e async for e in pipeline.events([0, 1, 2, 3, 4])]
    results = [(e.value, e.sources) for e in events if e.type == "result"]
    # [1, 2, 3, 4, 5]: 3 is skipped remotely, and reported locally with its local source
    assert results == [(200, [0]), (400, [1]), (800, [3]), (1000, [4])]
    errors = [e for e in events if e.type == "item_error"]
    assert [(e.sources, e.action) for e in errors] == [([2], "skip_item")]
    assert errors[0].stage.startswith("remote:skips_three/")
    assert events[-1].type == "end" and events[-1].stats.skipped == 1


async def test_remote_pipeline_streams_before_the_upload_ends(service_url: str) -> None:
    source_done = asyncio.Event()

    async def slow_source() -> AsyncIterator[int]:
        for item in range(9):
            yield item
            await asyncio.sleep(0.3)
        source_done.set()

    pipeline = plus_one | RemotePipeline(service_url, "quickstart") | times_hundred
    seen: list[tuple[int, bool]] = []
    async for value in pipeline(slow_source()):
        seen.append((value, source_done.is_set()))
    assert [value for value, _ in seen] == [2200, 4000, 5800]
    assert seen[0][1] is False, "the first result came only after the upload ended"


async def test_remote_run_failure_fails_the_local_run(service_url: str) -> None:
    pipeline = plus_one | RemotePipeline(service_url, "fails_on_three")
    with pytest.raises(RemoteRunError) as caught:
        await pipeline([0, 1, 2, 3]).collect()
    assert caught.value.stage == "fail_on_three" and caught.value.pipeline == "fails_on_three"


async def test_a_local_failure_upstream_reaches_the_caller_as_itself(service_url: str) -> None:
    @single_task
    async def explode_on_two(x: int) -> int:
        if x == 2:
            raise KeyError("two")
        await asyncio.sleep(0.05)
        return x

    before = len(asyncio.all_tasks())
    pipeline = explode_on_two | RemotePipeline(service_url, "quickstart")
    with pytest.raises(KeyError):
        await pipeline([0, 1, 2, 3]).collect()
    await asyncio.sleep(0.05)
    assert len(asyncio.all_tasks()) == before


async def test_breaking_out_of_a_remote_stage_closes_its_connection(service_url: str) -> None:
    pipeline = RemotePipeline(service_url, "timeline", mode="as_completed") | times_hundred
    before = len(asyncio.all_tasks())
    stream = pipeline([0.05, 5.0, 5.0])
    async with contextlib.aclosing(stream):  # type: ignore[type-var]
        async for value in stream:
            assert value == 5
            break
    await asyncio.sleep(0.05)
    assert len(asyncio.all_tasks()) == before


async def test_remote_pipeline_unknown_name_raises_not_found(service_url: str) -> None:
    with pytest.raises(NotFoundError):
        await (double | RemotePipeline(service_url, "nope"))([1]).collect()


async def test_leaving_an_upload_stream_keeps_the_callers_own_cancellation(
    service_url: str,
) -> None:
    async def items() -> AsyncIterator[float]:
        try:
            while True:
                yield 0.01
                await asyncio.sleep(0.05)
        finally:
            await asyncio.sleep(0.3)  # a source whose cleanup takes a while

    loop = asyncio.get_running_loop()
    started = loop.time()
    async with ConveyorClient(service_url) as client:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):
                events = client.events("timeline", items())
                async for _ in events:
                    if loop.time() - started > 0.4:
                        break
                await events.aclose()  # the upload's cleanup runs past the timeout
                await asyncio.sleep(5)  # must not be reached: the timeout fired meanwhile
    assert loop.time() - started < 4
