"""conveyor-streaming 1.2.1's `conveyor.tasks`."""

from conveyor_core import BaseTask, BatchTask, SingleTask

__all__ = ["BaseTask", "BatchTask", "SingleTask"]
