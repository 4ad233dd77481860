"""Request and response bodies, as OpenAPI shows them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ErrorBody",
    "InvokeResponse",
    "JobAccepted",
    "JobCancel",
    "JobInfo",
    "JobResults",
    "Mode",
    "PipelineInfo",
    "RunRequest",
]

Mode = Literal["ordered", "as_completed"]


class RunRequest(BaseModel):
    """The input of a run: items, validated against the pipeline's input schema."""

    model_config = ConfigDict(extra="forbid")

    items: list[Any] = Field(description="input items, each matching the pipeline's input_schema")
    mode: Mode | None = Field(
        default=None, description="ordered (input order; default) or as_completed; or ?mode="
    )


class StageInfo(BaseModel):
    name: str
    kind: str = Field(description="single, batch or stream")
    executor: str | None = Field(
        default=None,
        description='where its calls run: "thread", "process", "ray-actors x2", "ray-tasks", ...; '
        "absent: in the service's event loop",
    )
    max_size: int | None = None
    min_size: int | None = None
    max_wait: float | None = None


class PipelineInfo(BaseModel):
    name: str
    description: str | None
    stages: list[StageInfo]
    input_schema: dict[str, Any] = Field(description="JSON schema of one input item")
    output_schema: dict[str, Any] = Field(description="JSON schema of one result value")
    example: list[Any] | None = Field(description="an example list of input items")


class Stats(BaseModel):
    inputs: int
    results: int
    skipped: int
    dropped: int
    elapsed_s: float


class InvokeResponse(BaseModel):
    status: Literal["succeeded", "failed"]
    results: list[Any] = Field(description="result values in the mode's order")
    stats: Stats
    item_errors: list[dict[str, Any]] = Field(description="item_error events, without type")
    error: dict[str, Any] | None = Field(description="the error event of a failed run")


class JobAccepted(BaseModel):
    job_id: str
    status: str
    events_url: str
    status_url: str
    results_url: str


class JobInfo(BaseModel):
    job_id: str
    pipeline: str
    status: Literal["running", "succeeded", "failed", "cancelled"]
    created_at: str
    stats: Stats | None = Field(description="the end event's stats, once the job has ended")
    mode: str
    items: int
    finished_at: str | None
    cancel_requested: bool


class JobResults(BaseModel):
    status: str
    results: list[Any]


class JobCancel(BaseModel):
    job_id: str
    status: str
    cancel_requested: bool


class ErrorBody(BaseModel):
    detail: str
    positions: list[int] | None = Field(
        default=None, description="422: 0-based positions of the items that fail the schema"
    )
    errors: list[dict[str, Any]] | None = None
    limit: int | None = Field(default=None, description="413, 429: the limit that was reached")
