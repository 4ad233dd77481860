"""conveyor-streaming 1.2.1's `conveyor.decorators`."""

from conveyor_core import batch_task, single_task

__all__ = ["batch_task", "single_task"]
