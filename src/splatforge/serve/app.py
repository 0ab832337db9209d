"""The HTTP API: RunPod's serverless endpoint operations under `/v2/{endpoint_id}/`, so that the
official client works against it with only its base URL changed::

    import runpod
    runpod.api_key = "KEY"
    runpod.endpoint_url_base = "http://127.0.0.1:8000/v2"
    output = runpod.Endpoint("splat").run_sync({"image": base64_png})

Operations: POST run, runsync[?wait=ms]; GET/POST status/{id}; POST cancel/{id}, retry/{id},
purge-queue; GET health; and GET results/{id}/scene.<ext> for the raw result file (what the
`<format>_url` of a result over the inline limit points to, under `ServeConfig.public_url`).
"""

from __future__ import annotations

import hmac
import logging
from contextlib import asynccontextmanager
from typing import Optional

from fastapi import Depends, FastAPI, Path as PathParam, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from splatforge.errors import SplatforgeError
from splatforge.serve.jobs import QueueFull
from splatforge.serve.schemas import ErrorBody, Health, JobAccepted, JobState, PurgeResult, RunRequest
from splatforge.serve.service import SceneService, ServeConfig

log = logging.getLogger("splatforge.serve")

RUN_BODY_LIMIT = 10 << 20  # RunPod's limits: 10 MB for /run
RUNSYNC_BODY_LIMIT = 20 << 20  # and 20 MB for /runsync
OTHER_BODY_LIMIT = 64 << 10

_ERRORS = {400: {"model": ErrorBody}, 401: {"model": ErrorBody}, 404: {"model": ErrorBody},
           413: {"model": ErrorBody}, 429: {"model": ErrorBody}}


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def _error(status: int, message: str, headers: Optional[dict] = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class BodyLimit:
    """ASGI middleware: refuse request bodies over the route's limit (413), by Content-Length
    when given and by counting otherwise, before the application reads any of it."""

    def __init__(self, app):
        self.app = app

    @staticmethod
    def limit_for(path: str) -> int:
        if path.endswith("/runsync"):
            return RUNSYNC_BODY_LIMIT
        if path.endswith("/run"):
            return RUN_BODY_LIMIT
        return OTHER_BODY_LIMIT

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.limit_for(scope.get("path", ""))
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                if not value.isdigit() or int(value) > limit:
                    return await _error(413, f"the request body is over the limit of {limit:,} bytes")(
                        scope, receive, send)
        # Read the body here, counting, so an oversized chunked body is refused before the app
        # (or a JSON parser) sees any of it; then hand the app the same messages.
        messages, received = [], 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            received += len(message.get("body", b""))
            if received > limit:
                return await _error(413, f"the request body is over the limit of {limit:,} bytes")(
                    scope, receive, send)
            if not message.get("more_body", False):
                break
        replay = iter(messages)

        async def replay_receive():
            return next(replay, None) or await receive()

        await self.app(scope, replay_receive, send)


def create_app(config: ServeConfig, service: Optional[SceneService] = None) -> FastAPI:
    """The FastAPI application; starting it (lifespan) starts the worker processes."""
    service = service or SceneService(config)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await run_in_threadpool(service.start)
        try:
            yield
        finally:
            await run_in_threadpool(service.stop)

    app = FastAPI(title="splatforge serve", version="1", lifespan=lifespan,
                  description="Image to 3D Gaussians, speaking the RunPod serverless API.")
    app.state.service = service

    def authorize(request: Request) -> None:
        if not config.api_key:
            return
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header[:7].lower() == "bearer " else header.strip()
        if not hmac.compare_digest(token.encode(), config.api_key.encode()):
            raise ApiError(401, "missing or wrong API key; send 'Authorization: Bearer <key>'")

    def endpoint(endpoint_id: str = PathParam(..., max_length=128, pattern=r"^[A-Za-z0-9_.-]+$")) -> str:
        if config.endpoint_id is not None and endpoint_id != config.endpoint_id:
            raise ApiError(404, f"no endpoint {endpoint_id!r} here")
        return endpoint_id

    job_id_param = PathParam(..., max_length=64)
    prefix = "/v2/{endpoint_id}"
    deps = [Depends(authorize)]

    def links_base(request: Request, endpoint_id: str) -> str:
        return service.links_base(str(request.base_url), endpoint_id)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, err: ApiError):
        return _error(err.status, err.message)

    @app.exception_handler(QueueFull)
    async def _queue_full(request: Request, err: QueueFull):
        return _error(429, str(err), headers={"Retry-After": "5"})

    @app.exception_handler(SplatforgeError)
    async def _user_error(request: Request, err: SplatforgeError):
        return _error(400, str(err))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, err: RequestValidationError):
        return _error(400, _validation_text(err))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, err: StarletteHTTPException):
        return _error(err.status_code, str(err.detail))

    @app.exception_handler(Exception)
    async def _bug(request: Request, err: Exception):
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return _error(500, "internal server error; see the server log")

    def lookup(job_id: str):
        job = service.get(job_id)
        if job is None:
            raise ApiError(404, f"no job {job_id!r}: it never existed here or its result has expired")
        return job

    @app.post(prefix + "/run", response_model=JobAccepted, dependencies=deps, responses=_ERRORS)
    def run(request: Request, body: RunRequest, endpoint_id: str = Depends(endpoint)):
        """Queue a job; poll /status/{id} for its result."""
        return {"id": service.submit(body, sync=False, links_base=links_base(request, endpoint_id)),
                "status": "IN_QUEUE"}

    @app.post(prefix + "/runsync", response_model=JobState, response_model_exclude_none=True,
              dependencies=deps, responses=_ERRORS)
    async def runsync(request: Request, body: RunRequest, endpoint_id: str = Depends(endpoint),
                      wait: int = Query(90000, ge=0, le=300000, description="ms to wait for the result")):
        """Queue a job and wait up to `wait` ms for it; the status body either way."""
        job_id = await run_in_threadpool(service.submit, body, sync=True,
                                         links_base=links_base(request, endpoint_id))
        await service.wait_terminal(job_id, wait / 1000)
        job = await run_in_threadpool(service.get, job_id)
        if job is None:
            raise ApiError(404, f"job {job_id} expired")
        if not job.terminal:
            return {"id": job.id, "status": job.status}
        return await run_in_threadpool(service.status_body, job, links_base(request, endpoint_id))

    def status(request: Request, job_id: str = job_id_param, endpoint_id: str = Depends(endpoint)):
        """The job's status; `output` when COMPLETED, `error` when FAILED or TIMED_OUT."""
        return service.status_body(lookup(job_id), links_base(request, endpoint_id))

    for method in ("GET", "POST"):
        app.add_api_route(prefix + "/status/{job_id}", status, methods=[method], response_model=JobState,
                          response_model_exclude_none=True, dependencies=deps, responses=_ERRORS,
                          name=f"status_{method.lower()}")

    @app.post(prefix + "/cancel/{job_id}", response_model=JobAccepted, dependencies=deps, responses=_ERRORS)
    def cancel(job_id: str = job_id_param, endpoint_id: str = Depends(endpoint)):
        """Cancel a queued or running job (a finished job keeps its status)."""
        lookup(job_id)
        return {"id": job_id, "status": service.cancel(job_id)}

    @app.post(prefix + "/retry/{job_id}", response_model=JobAccepted, dependencies=deps, responses=_ERRORS)
    def retry(job_id: str = job_id_param, endpoint_id: str = Depends(endpoint)):
        """Queue a FAILED or TIMED_OUT job again, with the same input."""
        lookup(job_id)
        return {"id": job_id, "status": service.retry(job_id)}

    @app.post(prefix + "/purge-queue", response_model=PurgeResult, dependencies=deps, responses=_ERRORS)
    def purge_queue(endpoint_id: str = Depends(endpoint)):
        """Cancel every queued job (running jobs go on)."""
        return {"removed": service.purge_queue(), "status": "completed"}

    @app.get(prefix + "/health", response_model=Health, dependencies=deps,
             responses={**_ERRORS, 503: {"model": Health, "description": "no worker can run jobs"}})
    def health(response: Response, endpoint_id: str = Depends(endpoint)):
        """Job counts (within the result retention) and worker states; HTTP 503 when no worker can
        run jobs (every worker's model failed to load: see `workerStates[].error`)."""
        body = service.health()
        if body["status"] == "unhealthy":
            response.status_code = 503
        return body

    @app.get(prefix + "/results/{job_id}/{filename}", dependencies=deps, responses=_ERRORS,
             response_class=FileResponse)
    def result_file(job_id: str = job_id_param, filename: str = PathParam(..., max_length=32),
                    endpoint_id: str = Depends(endpoint)):
        """The raw scene file of a COMPLETED job (scene.ply, scene.spz, ...)."""
        lookup(job_id)
        try:
            path = service.result_path(job_id, filename)
        except KeyError:
            raise ApiError(404, f"job {job_id} has no file {filename!r}") from None
        return FileResponse(path, media_type="application/octet-stream", filename=filename)

    app.add_middleware(BodyLimit)
    return app


def _validation_text(err: RequestValidationError) -> str:
    parts = []
    for item in err.errors():
        loc = [str(p) for p in item.get("loc", ()) if p != "body"]
        kind = item.get("type", "")
        if kind == "json_invalid":
            parts.append("the request body is not valid JSON")
            continue
        message = str(item.get("msg", "invalid value")).removeprefix("Value error, ")
        if kind == "missing" and loc == ["input"]:
            message = "the request has no 'input'; send {\"input\": {\"image\": <base64>}}"
        elif kind == "missing" and not loc:
            message = "the request has no JSON body; send {\"input\": {\"image\": <base64>}}"
        parts.append(f"{'.'.join(loc)}: {message}" if loc else message)
    return "; ".join(dict.fromkeys(parts)) or "invalid request"

