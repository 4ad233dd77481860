"""An example of one's own pipelines, served by the image of examples/docker/Dockerfile."""

from __future__ import annotations

from conveyor_core import batch_task, single_task


@single_task
async def shout(word: str) -> str:
    """Shouts words, then counts them in pairs."""
    return word.upper() + "!"


@batch_task(max_size=2)
async def pairs(words: list[str]) -> str:
    return " ".join(words)


PIPELINES = {"shout": shout | pairs}
EXAMPLES = {"shout": ["hello", "conveyor", "streaming"]}
