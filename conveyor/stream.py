"""conveyor-streaming 1.2.1's `conveyor.stream`."""

from conveyor_core import AsyncStream

__all__ = ["AsyncStream"]
