"""The `conveyor-streaming` API under its original name: `from conveyor import single_task, ...`."""

from conveyor_core import *  # noqa: F403
from conveyor_core import __all__ as __all__
