"""`BaseTask`, the base of every task in conveyor-streaming 1.2.1, and how a user's own
subclass (one that implements `async def process(self, items)`) runs as a stage.

Such a subclass sees the whole stream of its stage's items, like a `StreamTask`: a run adapts
it onto that protocol (`ProcessStage`). Each result it yields gets as `sources` the input
positions of the items its `process` took from its input since the previous result; a result
yielded before it took any new item (a fan-out) gets those of the last item taken.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any, ClassVar

from ._context import PipelineContext, get_current_context
from ._policy import ErrorHandler, RetryConfig
from ._stage import In, Out, Stage, StreamTask

if TYPE_CHECKING:
    from ._pipeline import AsyncStream

__all__ = ["BaseTask", "ProcessStage"]


class BaseTask(Stage[In, Out]):
    """The base of every task. Subclass it and implement `async def process(self, items)`,
    which gets the stage's items as an `AsyncStream` and returns (or is) an async iterable of
    results, to write a stage of your own: it composes with `|`, `Pipeline.add`, and runs with
    `task(data)`. `on_error`, `retry_config` and `error_handler` are kept for your `process` to
    use; the engine applies them to single and batch tasks only.
    """

    kind: ClassVar[str] = "stream"

    def __init__(
        self,
        on_error: str = "fail",
        retry_config: RetryConfig | None = None,
        error_handler: ErrorHandler | None = None,
        task_name: str | None = None,
    ) -> None:
        self.on_error = on_error
        self.retry_config = retry_config or RetryConfig(max_attempts=1)
        self.error_handler = error_handler
        self.task_name = task_name or type(self).__name__
        self._side_args: list[Any] = []
        self._side_kwargs: dict[str, Any] = {}

    @property
    def name(self) -> str:
        return getattr(self, "task_name", None) or type(self).__name__

    @name.setter
    def name(self, value: str) -> None:
        self.task_name = value

    async def process(self, items: AsyncStream[Any]) -> AsyncIterable[Out]:
        """The results of this stage on `items`."""
        raise NotImplementedError(f"{type(self).__name__} must implement process(self, items)")

    def get_context(self) -> PipelineContext | None:
        """The context of the run in progress (see `get_current_context`)."""
        return get_current_context()

    @property
    def description(self) -> str | None:
        doc = type(self).__doc__  # the subclass's own, not BaseTask's
        return inspect.cleandoc(doc).split("\n\n")[0].strip() if doc else None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


class ProcessStage(StreamTask):
    """A user's `BaseTask` as a stage of one run (see the module's docstring for `sources`)."""

    def __init__(self, task: BaseTask[Any, Any]) -> None:
        super().__init__(task.name)
        self.task = task

    async def process_stream(
        self, items: AsyncIterator[Any], mode: str
    ) -> AsyncIterator[tuple[Any, list[int]]]:
        from ._pipeline import AsyncStream

        taken = 0

        async def counted() -> AsyncIterator[Any]:
            nonlocal taken
            async for item in items:
                taken += 1
                yield item

        source = counted()
        results: Any = self.task.process(AsyncStream(source))
        try:
            if inspect.isawaitable(results):
                results = await results
            attributed, positions = 0, []
            async for value in _iterate(results, self.name):
                if taken > attributed:
                    positions = list(range(attributed, taken))
                    attributed = taken
                elif len(positions) > 1:
                    positions = positions[-1:]
                yield value, positions
        finally:
            close = getattr(results, "aclose", None)
            if close is not None:
                await close()
            await source.aclose()  # type: ignore[attr-defined]


async def _iterate(results: Any, name: str) -> AsyncIterator[Any]:
    if isinstance(results, AsyncIterable):
        async for value in results:
            yield value
    elif isinstance(results, Iterable) and not isinstance(results, (str, bytes)):
        for value in results:
            yield value
    else:
        raise TypeError(
            f"{name}.process() must return an async iterable of results, "
            f"got {type(results).__name__}"
        )
