"""Pipelines with Ray stages for the service's tests: tests.ray.svc_ray_pipelines."""

from __future__ import annotations

from conveyor_core import SingleTask, single_task
from conveyor_core.ray import RayActors
from tests.core import executor_tasks as et

PIPELINES = {
    "ray_fragile": SingleTask(et.raise_value_error, executor=RayActors(1, num_cpus=0.25)),
    "ray_ticking": SingleTask(et.ticking_pair, executor=RayActors(2, num_cpus=0.25)),
    "ray_square": single_task(executor=RayActors(2, num_cpus=0.25))(et.square)
    | single_task(et.square),
}
