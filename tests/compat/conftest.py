"""The compat suite shares the engine suite's checks: no task of a run outlives its test."""

from __future__ import annotations

from tests.core.conftest import VirtualSleep, no_task_left, retry_clock

__all__ = ["VirtualSleep", "no_task_left", "retry_clock"]
