"""Request and response bodies, as OpenAPI shows them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool

__all__ = [
    "ErrorBody",
    "InvokeResponse",
    "JobAccepted",
    "JobCancel",
    "JobInfo",
    "JobList",
    "JobResults",
    "Mode",
    "PipelineInfo",
    "RunRequest",
    "WireEvent",
]

Mode = Literal["ordered", "as_completed"]


class RunRequest(BaseModel):
    """The input of a run: items, validated against the pipeline's input schema."""

    model_config = ConfigDict(extra="forbid")

    items: list[Any] = Field(description="input items, each matching the pipeline's input_schema")
    mode: Mode | None = Field(
        default=None, description="ordered (input order; default) or as_completed; or ?mode="
    )
    trace: StrictBool | None = Field(
        default=None,
        description="true: a `stage` event for every call of every stage, in the same seq "
        "sequence as the other events (or ?trace=true)",
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


class JobList(BaseModel):
    jobs: list[JobInfo] = Field(description="newest first")
    next_cursor: str | None = Field(
        description="pass it as ?cursor= for the next page; null: no more jobs"
    )


class JobResults(BaseModel):
    status: str
    results: list[Any]


class JobCancel(BaseModel):
    job_id: str
    status: str
    cancel_requested: bool


class ResultWire(BaseModel):
    """A value the pipeline produced, with the input positions it came from."""

    type: Literal["result"]
    seq: int
    value: Any
    sources: list[int]


class ItemErrorWire(BaseModel):
    """An item or batch failed in a stage; the run went on."""

    type: Literal["item_error"]
    seq: int
    stage: str
    sources: list[int]
    error: str = Field(description='"ValueError: ..."')
    action: Literal["skip_item", "skip_batch", "handled"]


class ErrorWire(BaseModel):
    """The run failed (stage null: outside any stage); `end` follows."""

    type: Literal["error"]
    seq: int
    stage: str | None
    error: str


class EndWire(BaseModel):
    """The last event of every run."""

    type: Literal["end"]
    seq: int
    status: Literal["succeeded", "failed", "cancelled"]
    stats: Stats


class StageWire(BaseModel):
    """One call of one stage (only with trace): times in seconds since the run started."""

    type: Literal["stage"]
    seq: int
    stage: str
    kind: str = Field(description="single, batch or stream")
    sources: list[int]
    attempt: int = Field(description="1, then 2, ... for the retries of the same call")
    queued_s: float = Field(description="when the call's input was ready (a batch: released)")
    started_s: float
    ended_s: float
    outcome: Literal["ok", "retry", "error", "skipped", "cancelled"]


WireEvent = Annotated[
    ResultWire | ItemErrorWire | ErrorWire | EndWire | StageWire, Field(discriminator="type")
]
"""One event of a stream: an NDJSON line, or an SSE message's `data` plus `event:` its type."""


class ErrorBody(BaseModel):
    detail: str
    positions: list[int] | None = Field(
        default=None, description="422: 0-based positions of the items that fail the schema"
    )
    errors: list[dict[str, Any]] | None = None
    limit: int | None = Field(default=None, description="413, 429: the limit that was reached")
