"""`SceneService`: the job store, the worker pool, webhooks and result expiry, behind the
operations of the RunPod serverless API (run, status, cancel, retry, purge, health).

The HTTP layer (`app.py`) only translates requests into these calls.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import threading
from pathlib import Path
from typing import Optional

from splatforge.errors import SplatforgeError
from splatforge.serve.fetch import UrlRefused, check_url, post_json
from splatforge.serve.handler import check_image_header, check_output_format, decode_base64_image, \
    scene_output
from splatforge.serve.jobs import Job, JobStore, result_dir
from splatforge.serve.schemas import RunRequest
# ServeConfig and the settings it names live in `settings` (light, for the CLI); imported from here too.
from splatforge.serve.settings import ImageLimits, ModelSpec, ServeConfig, UrlPolicy, check_public_url  # noqa: F401
from splatforge.serve.workers import WorkerPool, WorkerSettings, scene_file_of

log = logging.getLogger("splatforge.serve")


class SceneService:
    def __init__(self, config: ServeConfig, store: Optional[JobStore] = None):
        self.config = config
        self.public_url = check_public_url(config.public_url)
        self.data_dir = Path(config.data_dir)
        self.results_root = self.data_dir / "results"
        self.results_root.mkdir(parents=True, exist_ok=True)
        self.store = store or JobStore(self.data_dir / "jobs.sqlite3")
        settings = WorkerSettings(model=config.model, limits=config.limits, url_policy=config.url_policy,
                                  default_execution_timeout_s=config.execution_timeout_s,
                                  max_attempts=config.max_attempts, max_load_attempts=config.worker_load_attempts,
                                  restart_backoff_s=config.worker_restart_backoff_s)
        self.pool = WorkerPool(self.store, self.results_root, settings, workers=config.workers,
                               on_terminal=self._on_terminal)
        self._waiters: dict[str, list[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}
        self._waiters_lock = threading.Lock()
        self._webhook_wake = threading.Event()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._started = False

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if self._started:
            raise RuntimeError("this SceneService was already started; create one per server")
        self._started = True
        requeued, failed = self.store.recover(self.config.max_attempts)
        if requeued or failed:
            log.warning("recovered after a restart: %d interrupted jobs queued again, %d failed", requeued, failed)
        known = set(self.store.status_of_all())
        for path in self.results_root.iterdir():
            if path.name not in known:
                shutil.rmtree(path, ignore_errors=True)
        self.pool.start()
        for target, name in ((self._sweep_loop, "serve-sweeper"), (self._webhook_loop, "serve-webhooks")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stopping.set()
        self._webhook_wake.set()
        self.pool.stop()
        for thread in self._threads:
            thread.join(10)
        self.store.close()

    # ------------------------------------------------------------------ operations

    def validate(self, request: RunRequest) -> None:
        """Checks cheap enough to answer at submission (400), so most bad input never queues."""
        job = request.input
        check_output_format(job.output_format)
        if job.image is not None:
            check_image_header(decode_base64_image(job.image, self.config.limits), self.config.limits)
        else:
            _check_scheme(job.image_url, "input.image_url")
        if request.webhook is not None:
            _check_scheme(request.webhook, "webhook")

    def links_base(self, request_base: str, endpoint_id: str) -> str:
        """The URL prefix of result links: the public URL if set, else the request's base URL."""
        return f"{self.public_url or request_base.rstrip('/')}/v2/{endpoint_id}"

    def submit(self, request: RunRequest, *, sync: bool, links_base: Optional[str] = None) -> str:
        """Queue a job. `links_base`: the prefix of the result links in its webhook body (see
        `links_base()`)."""
        self.validate(request)
        policy = request.policy
        job_id = self.store.submit(
            request.input.model_dump(exclude_none=True), webhook=request.webhook,
            execution_timeout_ms=policy.executionTimeout if policy else None,
            ttl_ms=policy.ttl if policy else None,
            retention_s=self.config.runsync_retention_s if sync else self.config.run_retention_s,
            max_queue=self.config.max_queue, sync=sync, links_base=links_base)
        self.pool.notify()
        return job_id

    def get(self, job_id: str) -> Optional[Job]:
        return self.store.get(job_id)

    def cancel(self, job_id: str) -> Optional[str]:
        """Cancel a queued or running job (a running one is stopped); its status afterwards."""
        outcome = self.store.cancel(job_id)
        if outcome is None:
            return None
        status, worker = outcome
        if worker is not None:
            self.pool.abort(job_id, "cancelled")
        if status == "CANCELLED":
            self._on_terminal(job_id)
        return status

    def retry(self, job_id: str) -> Optional[str]:
        job = self.store.get(job_id)
        if job is None:
            return None
        if job.status not in ("FAILED", "TIMED_OUT"):
            raise SplatforgeError(f"only FAILED or TIMED_OUT jobs can be retried; job {job_id} is {job.status}")
        shutil.rmtree(result_dir(self.results_root, job_id), ignore_errors=True)
        status = self.store.retry(job_id)
        self.pool.notify()
        return status

    def purge_queue(self) -> int:
        ids = self.store.purge_queue()
        for job_id in ids:
            self._on_terminal(job_id)
        return len(ids)

    def health(self) -> dict:
        """Job counts, worker counts and each worker's state (with the error of an unhealthy one).
        `status`: healthy, degraded (some workers unhealthy) or unhealthy (none can run jobs)."""
        workers = self.pool.counts()
        unhealthy = workers["unhealthy"]
        status = "healthy" if unhealthy == 0 else "unhealthy" if unhealthy == sum(workers.values()) else "degraded"
        return {"status": status, "jobs": self.store.counts(), "workers": workers,
                "workerStates": self.pool.worker_states()}

    def status_body(self, job: Job, links_base: Optional[str] = None) -> dict:
        """RunPod's status body for a job; a result over the inline limit is a link under
        `links_base` (default: the one stored when the job was submitted)."""
        body: dict = {"id": job.id, "status": job.status}
        if job.started_at is not None:
            body["delayTime"] = int(round((job.started_at - job.created_at) * 1000))
            body["workerId"] = job.worker_id
            if job.finished_at is not None:
                body["executionTime"] = int(round((job.finished_at - job.started_at) * 1000))
        if job.status == "COMPLETED":
            scene = scene_file_of(self.results_root, job)
            if scene is None:
                body["error"] = "the result file is gone (expired or deleted)"
            else:
                url = f"{links_base or self._stored_links_base(job)}/results/{job.id}/{scene.path.name}"
                body["output"] = scene_output(scene, inline_limit=self.config.inline_limit, url=url)
        elif job.status in ("FAILED", "TIMED_OUT"):
            body["error"] = job.error or job.status.lower()
        return body

    def _stored_links_base(self, job: Job) -> str:
        if job.links_base:
            return job.links_base
        # A job submitted through the library, or stored before links were kept: any endpoint id
        # reaches the results unless one is configured.
        return f"{self.public_url or ''}/v2/{self.config.endpoint_id or 'splatforge'}"

    def result_path(self, job_id: str, filename: str) -> Path:
        job = self.store.get(job_id)
        if job is None:
            raise KeyError(job_id)
        if job.status != "COMPLETED":
            raise SplatforgeError(f"job {job_id} is {job.status}, so it has no result file")
        scene = scene_file_of(self.results_root, job)
        if scene is None or scene.path.name != filename:
            raise KeyError(filename)
        return scene.path

    async def wait_terminal(self, job_id: str, timeout_s: float) -> None:
        """Return when the job reaches a terminal status or after `timeout_s`."""
        loop = asyncio.get_running_loop()
        event = asyncio.Event()
        entry = (loop, event)
        with self._waiters_lock:
            self._waiters.setdefault(job_id, []).append(entry)
        try:
            job = self.store.get(job_id)
            if job is None or job.terminal:
                return
            try:
                await asyncio.wait_for(event.wait(), timeout=max(0.0, timeout_s))
            except asyncio.TimeoutError:
                pass
        finally:
            with self._waiters_lock:
                waiters = self._waiters.get(job_id, [])
                if entry in waiters:
                    waiters.remove(entry)
                if not waiters:
                    self._waiters.pop(job_id, None)

    # ------------------------------------------------------------------ background work

    def _on_terminal(self, job_id: str) -> None:
        with self._waiters_lock:
            waiters = list(self._waiters.get(job_id, []))
        for loop, event in waiters:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # the loop closed
                pass
        self._webhook_wake.set()

    def _sweep_loop(self) -> None:
        while not self._stopping.wait(self.config.sweep_interval_s):
            try:
                for job_id, worker in self.store.time_out_expired():
                    if worker is not None:
                        self.pool.abort(job_id, "ttl")
                    self._on_terminal(job_id)
                for job_id in self.store.delete_expired():
                    shutil.rmtree(result_dir(self.results_root, job_id), ignore_errors=True)
            except Exception:  # noqa: BLE001 - keep sweeping; a failure here must not stop the service
                log.exception("expiry sweep failed")

    def _webhook_loop(self) -> None:
        while not self._stopping.is_set():
            self._webhook_wake.wait(1.0)
            self._webhook_wake.clear()
            try:
                for job in self.store.pending_webhooks():
                    if self._stopping.is_set():
                        return
                    self.store.mark_webhook(job.id, "sent" if self._deliver(job) else "failed")
            except Exception:  # noqa: BLE001
                log.exception("webhook delivery failed")

    def _deliver(self, job: Job) -> bool:
        body = self.status_body(job)
        for attempt in range(self.config.webhook_attempts):
            try:
                status = post_json(job.webhook, body, self.config.url_policy)
                if 200 <= status < 300:
                    return True
                log.warning("webhook for job %s answered HTTP %d", job.id, status)
            except UrlRefused as err:
                log.warning("webhook for job %s: %s", job.id, err)
            if attempt + 1 < self.config.webhook_attempts and self._stopping.wait(
                    self.config.webhook_backoff_s * (2 ** attempt)):
                return False
        return False


def _check_scheme(url: str, name: str) -> None:
    """Scheme and syntax only; addresses are checked when the URL is fetched, after DNS."""
    try:
        check_url(url, UrlPolicy(resolver=_no_resolve, allow=("0.0.0.0/0", "::/0")))
    except UrlRefused as err:
        raise SplatforgeError(f"{name}: {err}") from None


def _no_resolve(host: str, port: int) -> list[str]:
    return ["0.0.0.0"]

