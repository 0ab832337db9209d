"""Request and response bodies of the RunPod serverless API, as pydantic models.

The same `SceneJobInput` model validates job input in the HTTP service and in the RunPod worker,
so both reject the same inputs with the same messages.
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from splatforge.errors import SplatforgeError

JobStatus = Literal["IN_QUEUE", "IN_PROGRESS", "COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"]
TERMINAL_STATUSES = ("COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT")
OutputFormat = Literal["ply", "splat", "spz", "sog"]


class SceneJobInput(BaseModel):
    """One image to turn into 3D Gaussians: exactly one of `image` (base64) or `image_url`."""

    model_config = ConfigDict(extra="forbid")

    image: Optional[str] = Field(None, description="the encoded image (PNG, JPEG, ...) as standard base64; "
                                                   "a data: URL prefix is accepted")
    image_url: Optional[str] = Field(None, max_length=4096, description="an http(s) URL of the image")
    focal_length_px: Optional[float] = Field(None, gt=0, lt=1e7, allow_inf_nan=False,
                                             description="focal length in pixels; default: estimated from "
                                                         "EXIF, else a 30 mm equivalent")
    output_format: OutputFormat = Field("ply", description="scene file format of the result")

    @model_validator(mode="after")
    def _one_image(self) -> "SceneJobInput":
        if self.image is None and self.image_url is None:
            raise ValueError("give the image as 'image' (base64) or 'image_url'; the input has neither")
        if self.image is not None and self.image_url is not None:
            raise ValueError("give only one of 'image' and 'image_url', not both")
        return self


class Policy(BaseModel):
    """RunPod's per-job policy; times in milliseconds."""

    model_config = ConfigDict(extra="ignore")

    executionTimeout: Optional[int] = Field(None, ge=1000, le=7 * 24 * 3600 * 1000,
                                            description="ms a job may run before it ends as TIMED_OUT")
    ttl: Optional[int] = Field(None, ge=1000, le=7 * 24 * 3600 * 1000,
                               description="ms from submission after which the job (queued, running or "
                                           "finished) and its result are removed")


class RunRequest(BaseModel):
    """The body of /run and /runsync."""

    model_config = ConfigDict(extra="ignore")

    input: SceneJobInput
    webhook: Optional[str] = Field(None, max_length=4096,
                                   description="http(s) URL that receives the final status body by POST")
    policy: Optional[Policy] = None


class JobAccepted(BaseModel):
    id: str
    status: JobStatus


class JobState(BaseModel):
    """The status body of RunPod: `output` when COMPLETED, `error` when FAILED or TIMED_OUT."""

    id: str
    status: JobStatus
    delayTime: Optional[int] = Field(None, description="ms from submission to start")
    executionTime: Optional[int] = Field(None, description="ms from start to end")
    workerId: Optional[str] = None
    output: Optional[dict] = None
    error: Optional[str] = None


class PurgeResult(BaseModel):
    removed: int
    status: str


class HealthJobs(BaseModel):
    completed: int
    failed: int
    inProgress: int
    inQueue: int
    retried: int


class HealthWorkers(BaseModel):
    idle: int
    initializing: int
    running: int
    unhealthy: int


class WorkerState(BaseModel):
    id: str
    state: Literal["initializing", "idle", "running", "unhealthy"]
    error: Optional[str] = Field(None, description="why the worker's model did not load (while unhealthy)")
    loadFailures: int = Field(0, description="failed model loads in a row")


class Health(BaseModel):
    status: Literal["healthy", "degraded", "unhealthy"] = Field(
        description="degraded: some workers are unhealthy; unhealthy: none can run jobs (HTTP 503)")
    jobs: HealthJobs
    workers: HealthWorkers
    workerStates: list[WorkerState]


class ErrorBody(BaseModel):
    error: str


def validation_message(err: ValidationError, prefix: str = "") -> str:
    """One readable line per problem, e.g. "input.image: give only one of ...", no pydantic URLs."""
    parts = []
    for item in err.errors(include_url=False, include_input=False):
        where = ".".join(str(p) for p in (prefix, *item.get("loc", ())) if p != "")
        message = str(item.get("msg", "invalid value")).removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts) or "invalid request"


def parse_job_input(raw: object) -> SceneJobInput:
    """Validate a job's `input` (a dict from JSON) or raise SplatforgeError with a clear message."""
    if raw is None:
        raise SplatforgeError("the job has no 'input'; send {\"input\": {\"image\": <base64>}}")
    if not isinstance(raw, dict):
        raise SplatforgeError(f"the job's 'input' must be a JSON object, got {type(raw).__name__}")
    try:
        return SceneJobInput.model_validate(raw)
    except ValidationError as err:
        raise SplatforgeError(validation_message(err, "input")) from None
