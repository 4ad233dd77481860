"""The playground page in a real browser: headless Chromium (Debian's) driven by Playwright.

Needs `/usr/bin/chromium` (`apt-get install -y chromium`); Playwright's own browser downloads
are never used. Leaves a screenshot in tests/artifacts/playground.png.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Locator, Page, async_playwright, expect

from tests.app.conftest import run_server

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "tests" / "artifacts"
KEY = "playground-key"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def playground_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real service (uvicorn in a subprocess) with an API key configured."""
    with run_server(tmp_path_factory.mktemp("playground"), CONVEYOR_API_KEYS=KEY) as url:
        yield url


@pytest.fixture(scope="module")
def chromium() -> Path:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests need Debian's Chromium "
            "(apt-get update && apt-get install -y chromium)"
        )
    return CHROMIUM


@pytest.fixture
async def browser(chromium: Path) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(chromium), args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            await launched.close()


async def _open(browser: Browser, url: str) -> tuple[Page, list[str]]:
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    await page.goto(f"{url}/")
    return page, errors


async def _sign_in(page: Page) -> None:
    await page.fill("#api-key", KEY)
    await page.click("#api-key-apply")
    await expect(page.locator(".pipeline-item").first).to_be_visible()


async def _run(page: Page, run_id: int, mode: str, status: str = "succeeded") -> Locator:
    await page.click(f'label[for="mode-{mode}"]')
    await page.click("#run")
    run = page.locator(f'.run[data-run-id="{run_id}"]')
    await expect(run).to_have_attribute("data-status", status, timeout=30_000)
    await expect(run).to_have_attribute("data-mode", mode)
    return run


async def _rows(run: Locator) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = await run.locator(".event").evaluate_all(
        """rows => rows.map(row => ({
            type: row.dataset.type,
            seq: Number(row.dataset.seq),
            t: Number(row.dataset.tMs),
            sources: JSON.parse(row.dataset.sources),
        }))"""
    )
    return rows


async def _summary(run: Locator) -> dict[str, str]:
    fields: dict[str, str] = await run.locator(".summary-field").evaluate_all(
        "boxes => Object.fromEntries("
        "boxes.map(b => [b.dataset.field, b.querySelector('dd').textContent]))"
    )
    return fields


async def test_timeline_in_both_modes(browser: Browser, playground_url: str) -> None:
    page, errors = await _open(browser, playground_url)
    # the service has API keys: without one the page says so, with one it lists the pipelines
    await expect(page.locator("#pipelines-status")).to_contain_text("401")
    await _sign_in(page)
    # a stage shows where its calls run, when not in the service's event loop
    await page.click('.pipeline-item[data-pipeline="offloaded"]')
    executors = page.locator("#pipeline-stages .stage-executor")
    await expect(executors).to_have_text(["thread", "process"])
    await page.click('.pipeline-item[data-pipeline="timeline"]')
    await expect(page.locator("#pipeline-name")).to_have_text("timeline")
    await expect(page.locator("#pipeline-stages .stage-executor")).to_have_count(0)
    await expect(page.locator("#pipeline-description")).not_to_be_empty()
    assert "number" in await page.locator("#input-schema").text_content()  # type: ignore[operator]
    example = json.loads(await page.input_value("#items"))
    assert isinstance(example, list) and example

    await page.fill("#items", "[0.9, 0.1, 0.5]")
    ordered = await _run(page, 1, "ordered")
    as_completed = await _run(page, 2, "as_completed")

    # the newest run above the previous one
    runs = page.locator(".run")
    assert await runs.count() == 2
    assert await runs.nth(0).get_attribute("data-run-id") == "2"
    assert await runs.nth(1).get_attribute("data-position") == "previous"

    ordered_rows = await _rows(ordered)
    done_rows = await _rows(as_completed)
    assert [row["sources"] for row in ordered_rows] == [[0], [1], [2]]
    assert [row["sources"] for row in done_rows] == [[1], [2], [0]]
    for rows in (ordered_rows, done_rows):
        assert [row["type"] for row in rows] == ["result"] * 3
        seqs = [row["seq"] for row in rows]  # stage events (traced) take seqs between
        assert seqs == sorted(set(seqs)) and len(seqs) == 3
        times = [row["t"] for row in rows]
        assert times == sorted(times) and times[-1] >= 800  # the 0.9 s item ends both runs
    # ordered waits for the slow first item; as_completed does not
    assert done_rows[0]["t"] < ordered_rows[0]["t"]
    assert done_rows[0]["t"] < done_rows[-1]["t"]

    for run in (ordered, as_completed):
        summary = await _summary(run)
        assert summary["status"] == "succeeded"
        assert summary["inputs"] == "3" and summary["results"] == "3"
        assert summary["skipped"] == "0"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "playground.png"), full_page=True)
    assert errors == []


async def test_item_errors_rejections_and_stop(browser: Browser, playground_url: str) -> None:
    page, errors = await _open(browser, playground_url)
    await _sign_in(page)

    await page.click('.pipeline-item[data-pipeline="error_handling"]')
    await expect(page.locator("#pipeline-name")).to_have_text("error_handling")
    run = await _run(page, 1, "ordered")  # its example skips items and a batch
    assert {row["type"] for row in await _rows(run)} == {"result", "item_error"}
    await expect(run.locator('.event[data-action="skip_item"]').first).to_be_visible()
    summary = await _summary(run)
    assert int(summary["skipped"]) > 0 and int(summary["item-errors"]) > 0

    # bad input is refused with the service's message, and nothing runs
    await page.click('.pipeline-item[data-pipeline="quickstart"]')
    await page.fill("#items", '[1, "two", 3]')
    await _run(page, 2, "ordered", status="rejected")
    await expect(page.locator("#request-error")).to_contain_text("422")

    # not JSON: the page says so and sends nothing
    await page.fill("#items", "[1, 2")
    await expect(page.locator("#items-error")).to_contain_text("JSON")

    # Stop ends a long run from the page
    await page.click('.pipeline-item[data-pipeline="timeline"]')
    await page.fill("#items", "[0.05, 30]")
    await page.click('label[for="mode-as_completed"]')
    await page.click("#run")
    running = page.locator('.run[data-run-id="3"]')
    await expect(running.locator(".event")).to_have_count(1, timeout=10_000)
    await page.click("#stop")
    await expect(running).to_have_attribute("data-status", "stopped")
    await expect(page.locator("#run")).to_be_enabled()
    assert errors == []
