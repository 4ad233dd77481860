"""Every code block of the seed README runs unchanged through `from conveyor import ...`.

The blocks are programs that call `asyncio.run` and simulate work with `asyncio.sleep`: the
tests marked `virtual_clock` run them on looptime's virtual clock, so their sleeps take no real
time. The fragments that consume in completion order stay on the real clock: what they print is
what a real clock gives calls of equal duration (they end in the order they started), whereas on
a virtual clock such calls end at the same instant, in no order the README promises.
"""

from __future__ import annotations

import ast
import asyncio
import random
import re
from pathlib import Path
from typing import Any

import looptime
import pytest


@pytest.fixture
def virtual_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """`asyncio.run` on an event loop whose clock is virtual (looptime's)."""

    def run(main: Any, *, debug: bool | None = None) -> Any:
        with asyncio.Runner(debug=debug, loop_factory=looptime.new_event_loop) as runner:
            return runner.run(main)

    monkeypatch.setattr(asyncio, "run", run)


SEED = Path(__file__).resolve().parents[2] / "docs" / "seed-README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", SEED.read_text(), flags=re.S)


def block(marker: str) -> str:
    """The one python block of the seed README that contains `marker`."""
    found = [b for b in BLOCKS if marker in b]
    assert len(found) == 1, f"{len(found)} blocks contain {marker!r}"
    return found[0]


def run_program(source: str, **namespace: Any) -> dict[str, Any]:
    """Execute a block as a script (`__name__ == "__main__"`), as the README's reader would."""
    ns: dict[str, Any] = {"__name__": "__main__", **namespace}
    exec(compile(source, "<seed README>", "exec"), ns)
    return ns


def run_fragment(source: str, namespace: dict[str, Any]) -> None:
    """Run a fragment with top-level `await` / `async for` in the quick start's namespace."""
    code = compile(source, "<seed README>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    result = eval(code, namespace)
    if asyncio.iscoroutine(result):
        asyncio.run(result)


MARKERS = [
    "# Define some tasks",
    "Got a result in original order",
    "Got a completed result (fastest first)",
    'with_execution_mode("as_completed")',
    "# Wait for all results to be processed",
    "wait_for_other_source(secondary_stream) |",
    "wait_for_other_source.with_inputs(secondary_stream)",
    "filter_multiples_of_three",
    "initial_batch_summarizer",
    "class BusinessErrorHandler",
]


def test_every_python_block_is_covered() -> None:
    # The one block not listed is the quoted diagram of "The fundamental challenge" (prose
    # lines starting with "> ", not code).
    uncovered = [b for b in BLOCKS if not any(marker in b for marker in MARKERS)]
    assert len(uncovered) == 1 and uncovered[0].startswith("> # This pattern is everywhere")
    assert all(block(marker) for marker in MARKERS)


@pytest.mark.usefixtures("virtual_clock")
def test_quick_start(capsys: pytest.CaptureFixture[str]) -> None:
    run_program(block("# Define some tasks"))
    out = capsys.readouterr().out
    assert "Collected results: [22, 40, 24]" in out
    streamed = re.findall(r"Streamed item: (\d+)", out)
    assert streamed == ["22", "40", "24"]


@pytest.fixture
def quickstart() -> dict[str, Any]:
    ns = run_program(block("# Define some tasks"), __name__="quickstart")
    ns["pipeline"] = ns["multiply_by_two"] | ns["sum_batch"] | ns["add_ten"]
    ns["data_source"] = [1, 2, 3, 4, 5, 6, 7]
    return ns


@pytest.mark.parametrize(
    ("marker", "expected"),
    [
        ("Got a result in original order", [22, 40, 24]),
        ("Got a completed result (fastest first)", [22, 40, 24]),
        ('with_execution_mode("as_completed")', [22, 40, 24]),
    ],
)
def test_streaming_fragments(
    marker: str, expected: list[int], quickstart: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    run_fragment(block(marker), quickstart)
    values = [int(v) for v in re.findall(r": (\d+)$", capsys.readouterr().out, flags=re.M)]
    assert sorted(values) == sorted(expected)
    if "original order" in marker:
        assert values == expected


def test_collect_fragment(quickstart: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    run_fragment(block("# Wait for all results to be processed"), quickstart)
    out = capsys.readouterr().out
    assert "All results are ready: [22, 40, 24]" in out
    completed = re.search(r"completion order: (\[.*\])", out)
    assert completed is not None and sorted(ast.literal_eval(completed.group(1))) == [22, 24, 40]


@pytest.mark.usefixtures("virtual_clock")
def test_side_input_by_calling_the_task(capsys: pytest.CaptureFixture[str]) -> None:
    ns = run_program(block("wait_for_other_source(secondary_stream) |"))
    asyncio.run(ns["main_multiple_sources"]())
    out = capsys.readouterr().out
    assert "Results: [24, 48, 72]" in out


@pytest.mark.usefixtures("virtual_clock")
def test_side_input_with_inputs(capsys: pytest.CaptureFixture[str]) -> None:
    ns = run_program(block("wait_for_other_source(secondary_stream) |"))
    ns = run_program(block("wait_for_other_source.with_inputs(secondary_stream)"), **ns)
    asyncio.run(ns["main_multiple_sources"]())
    out = capsys.readouterr().out
    assert "Results: [24, 48, 72]" in out


@pytest.mark.usefixtures("virtual_clock")
def test_filtering(capsys: pytest.CaptureFixture[str]) -> None:
    run_program(block("filter_multiples_of_three"))
    assert "Filtering Pipeline Results: ['Result: 90']" in capsys.readouterr().out


@pytest.mark.usefixtures("virtual_clock")
def test_multiple_batching_stages(capsys: pytest.CaptureFixture[str]) -> None:
    run_program(block("initial_batch_summarizer"))
    assert "Multi-Batch Pipeline Results: [7.0, 7.0]" in capsys.readouterr().out


@pytest.mark.usefixtures("virtual_clock")
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_error_handling(seed: int, capsys: pytest.CaptureFixture[str]) -> None:
    random.seed(seed)
    run_program(block("class BusinessErrorHandler"))
    out = capsys.readouterr().out
    results = [ast.literal_eval(r) for r in re.findall(r"^Results: (\[.*\])$", out, flags=re.M)]
    assert len(results) == 3
    skipped_items, retried, handled = results
    # 1: doubled items that survived, summed in batches of 3 without a negative number
    assert all(isinstance(v, int) and v >= 0 for v in skipped_items)
    # 2: each item either succeeded within 3 attempts (x + 100) or was skipped
    assert set(retried) <= {101, 102, 103} and retried == sorted(retried)
    # 3: the custom handler turns multiples of 7 into -1
    assert handled == [5, 10, -1, -1, -1]
    assert "Business rule violation in business_task" in out
