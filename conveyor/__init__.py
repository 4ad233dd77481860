"""The conveyor-streaming 1.2.1 API under its own name: `from conveyor import single_task, ...`.

The same engine as `conveyor_core` (every name it exports), with the earlier library's modules
as thin submodules: `conveyor.stream`, `.tasks`, `.pipeline`, `.decorators`, `.context`,
`.error_handling`.
"""

from conveyor_core import *  # noqa: F403
from conveyor_core import __all__ as __all__
