"""The pipelines the service serves: the built-in ones and those of CONVEYOR_PIPELINES modules."""

from .registry import PipelineEntry, Registry

__all__ = ["PipelineEntry", "Registry"]
