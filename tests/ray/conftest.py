"""A real local Ray, started once for the tests that ask for it (`ray_cluster`) and shut down
at the end of the session: 4 logical CPUs (on however many cores), no dashboard."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[None]:
    import ray

    from conveyor_core.ray import connect

    os.environ.pop("RAY_ADDRESS", None)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    connect(num_cpus=4, log_to_driver=False)
    yield
    ray.shutdown()
