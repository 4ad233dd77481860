"""Heavy stages elsewhere: a local fetch, embeddings on Ray actors, scores in a process pool,
a Ray task per item, and a local enrich. Needs the `ray` extra.

    pip install -e ".[ray]"
    python examples/ray_pipeline.py                  # starts a local Ray for the script
    RAY_ADDRESS=ray://head:10001 python examples/ray_pipeline.py     # or joins a cluster

    # served: the same pipeline as a service's pipeline (module examples.ray_pipeline)
    CONVEYOR_PIPELINES=examples.ray_pipeline conveyor serve
    curl -d '{"items":["a cat","a dog","a car","a cart"]}' http://127.0.0.1:8000/pipelines/ray_embed/invoke
"""

from __future__ import annotations

import asyncio
import hashlib
import math

from conveyor_core import Pipeline, batch_task, single_task
from conveyor_core.ray import RayActors, RayTasks


@single_task
async def fetch(text: str) -> str:
    """Embeds texts on Ray actors, scores them in processes, enriches them locally."""
    await asyncio.sleep(0.01)  # any I/O, in the event loop
    return text.strip().lower()


@batch_task(max_size=8, max_wait=0.02, executor=RayActors(replicas=2, num_cpus=0.5))
class Embed:
    """Constructed once per actor: a real one would load its model here."""

    def __init__(self) -> None:
        self.dimensions = 8

    def __call__(self, texts: list[str]) -> list[dict]:
        return [{"text": text, "vector": self.embed(text)} for text in texts]

    def embed(self, text: str) -> list[float]:
        digest = hashlib.sha256(text.encode()).digest()
        vector = [byte / 255 for byte in digest[: self.dimensions]]
        norm = math.sqrt(sum(v * v for v in vector)) or 1.0
        return [round(v / norm, 4) for v in vector]


@batch_task(max_size=4, executor="process")
def score(docs: list[dict]) -> list[dict]:
    """Pure-Python CPU work: in a process pool, out of the event loop and the GIL."""
    return [{**doc, "score": weigh(doc["vector"])} for doc in docs]


def weigh(vector: list[float]) -> float:
    return round(sum(value * (index + 1) for index, value in enumerate(vector)) / 10, 4)


@single_task(executor=RayTasks(num_cpus=0.5), retry_attempts=2)
def crunch(doc: dict) -> dict:
    return {**doc, "rank": int(doc["score"] * 1000) % 7}


@single_task
async def enrich(doc: dict) -> dict:
    return {"text": doc["text"], "score": doc["score"], "rank": doc["rank"]}


pipeline = Pipeline(fetch, Embed, score, crunch, enrich)
PIPELINES = {"ray_embed": pipeline}
EXAMPLES = {"ray_embed": ["a cat", "a dog", "a car", "a cart"]}


async def main() -> None:
    texts = ["A cat", "a dog", "A car", "a cart", "a card", "a carp"]
    try:
        async for doc in pipeline(texts):  # input order; sources tell which text it came from
            print(doc)
    finally:
        for stage in pipeline.stages:  # release the actors and the process pool
            executor = getattr(stage, "executor", None)
            if executor is not None:
                await executor.aclose()


if __name__ == "__main__":  # a process pool's workers import this module again
    asyncio.run(main())
