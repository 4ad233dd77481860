"""conveyor-streaming 1.2.1's `conveyor.pipeline`."""

from conveyor_core import Pipeline

__all__ = ["Pipeline"]
