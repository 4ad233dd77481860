"""The service over a Redis that freezes (SIGSTOP: connections stay open, nothing answers) or
goes away: every call a request waits on has a deadline (CONVEYOR_STORE_TIMEOUT_S), so job
routes answer 503 quickly; a follower cut by a long outage is closed cleanly, without `end`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.app.conftest import ClientFactory, LogCapture
from tests.app.redis_server import RedisServer

pytestmark = pytest.mark.redis


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.close()


async def _timed(request: asyncio.Future[httpx.Response] | object) -> tuple[int, float]:
    started = time.monotonic()
    response = await request  # type: ignore[misc]
    return response.status_code, time.monotonic() - started


async def test_a_frozen_redis_is_503_within_the_deadline(
    make_client: ClientFactory, private_redis: RedisServer
) -> None:
    """Before: 30 s for job routes (three 10 s socket timeouts), 90 s for DELETE."""
    async with make_client(redis_url=private_redis.url, store_timeout_s=0.5) as client:
        job = (await client.post("/pipelines/sleepy/jobs", json={"items": [0.01]})).json()
        await client.get(job["events_url"])
        private_redis.freeze()
        try:
            calls = {
                "status": client.get(job["status_url"]),
                "results": client.get(job["results_url"]),
                "events": client.get(job["events_url"]),
                "delete": client.delete(job["status_url"]),
                "create": client.post("/pipelines/sleepy/jobs", json={"items": [1]}),
                "readyz": client.get("/readyz"),
            }
            for name, call in calls.items():
                status, seconds = await asyncio.wait_for(_timed(call), 20)
                assert status == 503, name
                assert seconds < 5, name  # the deadline is 0.5 s: a generous margin
        finally:
            private_redis.thaw()
        assert (await client.get(job["status_url"])).status_code == 200


async def test_a_follower_cut_by_a_long_outage_is_closed_cleanly(
    make_client: ClientFactory, private_redis: RedisServer, captured: LogCapture
) -> None:
    async with make_client(redis_url=private_redis.url) as client:
        client_app = client._transport.app  # type: ignore[attr-defined]
        client_app.state.services.store.retry_s = 0.5  # a short ride through outages
        job = (await client.post("/pipelines/sleepy/jobs", json={"items": [0.01, 60]})).json()

        async def follow() -> httpx.Response:
            return await client.get(job["events_url"])

        follower = asyncio.create_task(follow())
        await asyncio.sleep(0.5)  # the first result is out; the follower waits for more
        private_redis.stop()
        response = await asyncio.wait_for(follower, 30)
    assert response.status_code == 200
    lines = [line for line in response.text.splitlines() if line]
    assert lines and '"type":"end"' not in response.text  # no end: the client resumes later
    warnings = [str(line["message"]) for line in captured.lines if line["level"] == "warning"]
    assert any("the job store stayed unavailable" in message for message in warnings)
    assert not any(line.get("exc_info") and "stream" in str(line) for line in captured.lines)
