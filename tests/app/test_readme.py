"""The service section of README.md says what the service does: its curl walk-through runs as
pasted (against a real server), and its errors table lists the fields each error body has."""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any

import httpx
import pytest

from tests.app.conftest import ROOT, ClientFactory

README = (ROOT / "README.md").read_text()


def _block_after(heading: str) -> str:
    """The first ```bash block after `heading`."""
    rest = README[README.index(heading) :]
    match = re.search(r"```bash\n(.*?)```", rest, re.S)
    assert match, heading
    return match.group(1)


def test_the_curl_walk_through_runs_as_pasted(server: str) -> None:
    """Every command of "Consume results, every way", with only the URL changed: no `<id>`
    to fill in, no error answered."""
    block = _block_after("### Consume results, every way")
    assert "<" not in re.sub(r"#.*", "", block)  # no placeholder outside the comments
    script = block.replace("U=http://127.0.0.1:8000", f"U={server}", 1)
    assert script != block
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert '"detail"' not in out, out  # no command got an error
    assert 'data: {"seq":0,"value":22,"sources":[0,1,2]}' in out
    assert '{"type":"result","seq":0,"value":0.1,"sources":[3]}' in out
    assert '"results":[22,40,24]' in out
    assert "HTTP/1.1 202 Accepted" in out
    assert '{"status":"succeeded","results":[0.5,0.2,0.3,0.1,0.4,1.0]}' in out
    assert out.count("event: end") >= 3  # the stream, the job's events, and its resumption


def _documented_fields(status: int) -> tuple[set[str], set[str]]:
    """(the fields in the row's `{...}`, every quoted name in its body cell) of the errors table."""
    row = next(line for line in README.splitlines() if line.startswith(f"| {status} |"))
    body = row.split(" | ")[2]
    braces = re.search(r"\{([^}]*)\}", body)
    assert braces, row
    return set(re.findall(r'"(\w+)"', braces.group(1))), set(re.findall(r'"(\w+)"', body))


async def _error(make_client: ClientFactory, status: int) -> httpx.Response:
    settings: dict[str, Any] = {"max_items": 2, "max_running_jobs": 1}
    if status == 401:
        settings["api_keys"] = ["k"]
    async with make_client(**settings) as client:
        if status == 401:
            return await client.get("/pipelines")
        if status == 404:
            return await client.post("/pipelines/nope/invoke", json={"items": []})
        if status == 413:
            return await client.post("/pipelines/quickstart/invoke", json={"items": [1, 2, 3]})
        if status == 422:
            return await client.post("/pipelines/quickstart/invoke", json={"items": [1, "x"]})
        running = await client.post("/pipelines/timeline/jobs", json={"items": [30]})
        assert running.status_code == 202
        refused = await client.post("/pipelines/timeline/jobs", json={"items": [30]})
        await client.delete(running.json()["status_url"])
        return refused


@pytest.mark.parametrize("status", [401, 404, 413, 422, 429])
async def test_the_errors_table_lists_the_body_sent(
    make_client: ClientFactory, status: int
) -> None:
    answer = await _error(make_client, status)
    assert answer.status_code == status
    required, mentioned = _documented_fields(status)
    fields = set(json.loads(answer.content))
    assert required <= fields, (status, fields)
    assert fields <= mentioned, (status, fields)
    if status == 429:
        assert answer.headers["retry-after"] == "2"
        assert answer.json()["limit"] == 1
