"""The pipelines every service ships with: the seed's examples, so each behaviour can be tried.

- `quickstart`: multiply_by_two | sum_batch(max_size=3) | add_ten; [1..7] gives [22, 40, 24].
- `filtering`: a task returning None drops the item.
- `multi_batch`: two batch stages with a single stage between them.
- `error_handling`: retries that succeed, a skipped item, a skipped batch, a custom handler.
- `timeline`: each item is a delay in seconds; compare ordered and as_completed.
- `rag`: a simulated fetch, a batch re-rank, an enrichment, with realistic latencies.

The same input gives the same results, in the same order, and the same item errors. Only where
`item_error` events fall in the stream varies: each is sent when its error happens, so two that
happen at about the same time (in `error_handling`, the skipped batch and the handled items;
13's last retry and 4's last retry, whose backoffs are the same) come in either order.
"""

from __future__ import annotations

import asyncio
import zlib
from typing import Annotated, Any

from pydantic import BaseModel, Field

from conveyor_core import ErrorHandler, as_pipeline, batch_task, single_task

from .registry import PipelineEntry

__all__ = ["builtin_entries"]


# -- quickstart -------------------------------------------------------------------------------


@single_task
async def multiply_by_two(x: int) -> int:
    """Doubles each number, sums them in batches of three, adds ten: the seed's quick start."""
    await asyncio.sleep(0.01)
    return x * 2


@batch_task(max_size=3)
async def sum_batch(batch: list[int]) -> int:
    await asyncio.sleep(0.05)
    return sum(batch)


@single_task
async def add_ten(x: int) -> int:
    await asyncio.sleep(0.01)
    return x + 10


# -- filtering --------------------------------------------------------------------------------


@single_task
async def initial_processor(x: int) -> int:
    await asyncio.sleep(0.01)
    return x * 10


@single_task
async def filter_multiples_of_three(x: int) -> int | None:
    await asyncio.sleep(0.01)
    return x if x % 3 == 0 else None


@batch_task(max_size=2)
async def batch_adder(batch: list[int]) -> int:
    await asyncio.sleep(0.02)
    return sum(batch)


@single_task
async def final_touch(x: int) -> str:
    await asyncio.sleep(0.01)
    return f"Result: {x}"


# -- multi_batch ------------------------------------------------------------------------------


@batch_task(max_size=3, min_size=1)
async def initial_batch_summarizer(batch: list[int]) -> tuple[int, int]:
    await asyncio.sleep(0.02)
    return (sum(batch), len(batch))


@single_task
async def process_summary(summary: tuple[int, int]) -> float:
    await asyncio.sleep(0.01)
    total, count = summary
    return total / count if count > 0 else 0


@batch_task(max_size=2, min_size=1)
async def final_batch_aggregator(averages: list[float]) -> float:
    await asyncio.sleep(0.02)
    return sum(averages)


# -- error_handling ---------------------------------------------------------------------------


class Attempted(BaseModel):
    """An item on its way through `error_handling`, counting the calls it took."""

    n: int
    attempts: int = 0


class Checked(BaseModel):
    n: int
    attempts: int
    flagged: bool = False


class BatchSum(BaseModel):
    items: list[int]
    total: int
    attempts: list[int]  # calls of flaky_call per item
    flagged: list[int]


@single_task
async def receive(n: int) -> Attempted:
    """Shows the error policy: retries that succeed, skipped items and batches, a handler.

    Multiples of 4 fail twice with a transient error and succeed on the third attempt; 13
    always fails and is skipped after three attempts; multiples of 7 break a business rule
    that a custom handler turns into a flagged item; a batch holding a negative number is
    skipped whole.
    """
    return Attempted(n=n)


@single_task(retry_attempts=3, retry_delay=0.02, on_error="skip_item")
async def flaky_call(item: Attempted) -> Attempted:
    item.attempts += 1
    await asyncio.sleep(0.005)
    if item.n == 13:
        raise ValueError("13 is unlucky")
    if item.n % 4 == 0 and item.attempts < 3:
        raise ConnectionError(f"transient failure on attempt {item.attempts}")
    return item


class BusinessRuleHandler(ErrorHandler):
    """Turns a business-rule violation into a flagged item; other errors are re-raised."""

    async def handle_error(
        self, error: Exception, item: Any, task_name: str, attempt: int
    ) -> tuple[bool, Any]:
        if isinstance(error, ValueError) and "business rule" in str(error):
            return True, Checked(n=item.n, attempts=item.attempts, flagged=True)
        return False, None


@single_task(error_handler=BusinessRuleHandler())
async def business_rule(item: Attempted) -> Checked:
    if item.n != 0 and item.n % 7 == 0:
        raise ValueError(f"business rule: multiples of 7 are not allowed ({item.n})")
    return Checked(n=item.n, attempts=item.attempts)


@batch_task(max_size=3, on_error="skip_batch")
async def strict_batch(batch: list[Checked]) -> BatchSum:
    if any(item.n < 0 for item in batch):
        raise ValueError("negative numbers are not allowed in a batch")
    await asyncio.sleep(0.01)
    return BatchSum(
        items=[item.n for item in batch],
        total=sum(item.n for item in batch),
        attempts=[item.attempts for item in batch],
        flagged=[item.n for item in batch if item.flagged],
    )


# -- timeline ---------------------------------------------------------------------------------


MAX_DELAY_S = 60.0
Delay = Annotated[float, Field(ge=0, le=MAX_DELAY_S, description="seconds to wait, 0 to 60")]


@single_task
async def wait(delay: Delay) -> float:
    """Waits each item's number of seconds, then yields it: compare ordered and as_completed.

    With [0.1, 0.2, 0.3, 0.4, 0.5, 2.0, 0.7, 0.8], ordered mode yields the first five at once
    and 6, 7, 8 together at 2 s; as_completed yields each item as its wait ends.
    """
    await asyncio.sleep(delay)
    return delay


# -- rag --------------------------------------------------------------------------------------


class Document(BaseModel):
    query: str
    doc_id: str
    title: str
    retrieval_score: float


class RankedDocument(Document):
    rank: int
    rerank_score: float


class Answer(RankedDocument):
    summary: str
    url: str


def _unit(*parts: object) -> float:
    """A stable number in [0, 1) from its arguments."""
    return (zlib.crc32("\x1f".join(map(str, parts)).encode()) % 10_000) / 10_000


Query = Annotated[str, Field(min_length=1, max_length=1000, description="a search query")]


@single_task
async def fetch(query: Query) -> list[Document]:
    """Retrieves documents for each query, re-ranks them in batches, enriches the best ones.

    A simulated retrieval-augmented generation front end: fetch (50-250 ms per query, three
    documents each) | rerank_batch (batches of up to 4 documents, 120 ms, keeps the top two of
    each batch) | enrich (20-60 ms per document).
    """
    await asyncio.sleep(0.05 + 0.2 * _unit("fetch", query))
    return [
        Document(
            query=query,
            doc_id=f"doc-{zlib.crc32(f'{query}/{i}'.encode()) % 100_000:05d}",
            title=f"{query.capitalize()}, part {i + 1}",
            retrieval_score=round(0.5 + 0.5 * _unit("score", query, i), 4),
        )
        for i in range(3)
    ]


@batch_task(max_size=4)
async def rerank_batch(batch: list[Document]) -> list[RankedDocument]:
    await asyncio.sleep(0.12)
    scored = sorted(
        batch,
        key=lambda d: d.retrieval_score * (0.7 + 0.3 * _unit("rerank", d.doc_id)),
        reverse=True,
    )
    return [
        RankedDocument(
            **doc.model_dump(),
            rank=rank,
            rerank_score=round(doc.retrieval_score * (0.7 + 0.3 * _unit("rerank", doc.doc_id)), 4),
        )
        for rank, doc in enumerate(scored[:2], start=1)
    ]


@single_task
async def enrich(doc: RankedDocument) -> Answer:
    await asyncio.sleep(0.02 + 0.04 * _unit("enrich", doc.doc_id))
    return Answer(
        **doc.model_dump(),
        summary=f"{doc.title}: the passage that best answers {doc.query!r}.",
        url=f"https://docs.example.org/{doc.doc_id}",
    )


def builtin_entries() -> list[PipelineEntry]:
    """The built-in pipelines, each with an example input."""
    return [
        PipelineEntry.build(
            "quickstart",
            multiply_by_two | sum_batch | add_ten,
            example=[1, 2, 3, 4, 5, 6, 7],
        ),
        PipelineEntry.build(
            "filtering",
            initial_processor | filter_multiples_of_three | batch_adder | final_touch,
            description="Keeps multiples of three (a task returning None drops the item), "
            "adds them in pairs.",
            example=[1, 2, 3, 4, 5, 6],
        ),
        PipelineEntry.build(
            "multi_batch",
            initial_batch_summarizer | process_summary | final_batch_aggregator,
            description="Two batch stages: averages of batches of three, summed in pairs.",
            example=[1, 2, 3, 4, 5, 6, 7],
        ),
        PipelineEntry.build(
            "error_handling",
            receive | flaky_call | business_rule | strict_batch,
            example=[1, 2, -1, 3, 4, 5, 6, 7, 8, 13, 14, 15],
        ),
        PipelineEntry.build(
            "timeline",
            as_pipeline(wait),
            example=[0.1, 0.2, 0.3, 0.4, 0.5, 2.0, 0.7, 0.8],
        ),
        PipelineEntry.build(
            "rag",
            fetch | rerank_batch | enrich,
            example=["streaming pipelines", "batch re-ranking", "server-sent events"],
        ),
    ]
