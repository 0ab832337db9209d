"""Inference worker processes: each loads the model once and runs one job at a time.

Processes, not threads, because a job past its execution timeout or cancelled while running has
to stop now, and only a process can be stopped mid-computation; and because inference then never
holds the server's GIL. Each worker slot has a supervising thread in the server that claims a job
from the store, hands it to its process over a pipe, and watches for the result, a cancellation,
the job's deadline, or the process dying (the job is then queued again, up to `max_attempts`).
It also re-reads the job's row while it runs: a job cancelled or timed out by anyone (another
thread, another process on the same store) is stopped. A killed process is replaced by a new one,
which loads the model again; a slot whose model fails to load `max_load_attempts` times in a row
shows as unhealthy with the error, and once every slot is in that state the queued jobs end
FAILED with the reason instead of waiting for a worker that cannot come.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

from splatforge.errors import SplatforgeError
from splatforge.serve.handler import SCENE_SUFFIX, SceneFile, predict_scene_file
from splatforge.serve.jobs import Job, JobStore, result_dir
from splatforge.serve.schemas import parse_job_input
from splatforge.serve.settings import ImageLimits, ModelSpec, UrlPolicy

log = logging.getLogger("splatforge.serve")


@dataclass
class WorkerSettings:
    model: ModelSpec = field(default_factory=ModelSpec)
    limits: ImageLimits = field(default_factory=ImageLimits)
    url_policy: UrlPolicy = field(default_factory=UrlPolicy)
    default_execution_timeout_s: float = 600.0
    max_attempts: int = 3  # runs of one job that a worker crash or server restart may cost
    startup_timeout_s: float = 300.0
    max_load_attempts: int = 3  # model loads in a row a worker may fail before queued jobs fail
    restart_backoff_s: float = 1.0  # wait after a failed load; doubles per failure, up to 60 s
    job_check_s: float = 0.25  # how often a running job's row is re-read (cancelled or timed out?)


# ---------------------------------------------------------------------------- worker process


def load_predictor(spec: ModelSpec):
    """Build the predictor `spec` names, in this process. Raises SplatforgeError saying why it
    cannot (no weights, an unreadable checkpoint, a missing device, out of memory, ...)."""
    try:
        import torch

        torch.set_num_threads(max(1, spec.torch_threads))
        from splatforge.predict import build_predictor

        return build_predictor(spec.preset, checkpoint=spec.checkpoint, seed=spec.seed, device=spec.device)
    except SplatforgeError as err:
        raise SplatforgeError(f"cannot load the model (preset {spec.preset!r}): {err}") from err
    except Exception as err:  # noqa: BLE001 - torch and the file system raise many types
        raise SplatforgeError(f"cannot load the model (preset {spec.preset!r}): {type(err).__name__}: {err}"
                              ) from err


def check_model(spec: ModelSpec, timeout_s: float = 600.0) -> None:
    """Load the model once in a short-lived probe process, as a worker would, and raise
    SplatforgeError with the reason if it cannot be loaded: `splatforge serve` calls this before it
    binds, so a service whose workers can never start never accepts a job. The probe keeps the
    server process itself free of the model's memory."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    process = ctx.Process(target=_probe_main, args=(child, spec), name="splatforge-model-check", daemon=True)
    process.start()
    child.close()
    try:
        if not parent.poll(timeout_s):
            raise SplatforgeError(f"loading the model (preset {spec.preset!r}) took longer than {timeout_s:g} s")
        try:
            kind, detail = parent.recv()
        except (EOFError, OSError):
            process.join(5)
            raise SplatforgeError(f"the process loading the model (preset {spec.preset!r}) died (exit code "
                                  f"{process.exitcode}); it may have run out of memory") from None
        if kind != "ready":
            raise SplatforgeError(detail)
    finally:
        if process.is_alive():
            process.kill()
        process.join(5)
        parent.close()


def _probe_main(conn, spec: ModelSpec) -> None:
    try:
        load_predictor(spec)
    except SplatforgeError as err:
        conn.send(("fatal", str(err)))
        return
    conn.send(("ready", None))


def _worker_main(conn, settings: WorkerSettings) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server decides when workers stop
    try:
        predictor = load_predictor(settings.model)
    except SplatforgeError as err:  # reported to the server, which logs it and shows it in /health
        conn.send(("fatal", str(err)))
        return
    conn.send(("ready", os.getpid()))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message[0] == "stop":
            return
        _, job_id, job_input, out_dir = message
        try:
            job = parse_job_input(job_input)
            scene = predict_scene_file(job, predictor, Path(out_dir), limits=settings.limits,
                                       url_policy=settings.url_policy,
                                       progress=lambda stage: conn.send(("progress", stage)))
            reply = ("done", {**asdict(scene), "path": scene.path.name})
        except SplatforgeError as err:
            reply = ("error", str(err))
        except MemoryError:
            reply = ("error", "the worker ran out of memory on this image; send a smaller image")
        except Exception as err:  # noqa: BLE001 - a bug: full trace to the log, a short message to the user
            traceback.print_exc()
            reply = ("error", f"internal error while predicting ({type(err).__name__}); see the server log")
        try:
            conn.send(reply)
        except (OSError, ValueError):  # the server is gone
            return


# ---------------------------------------------------------------------------- server side


class _Slot:
    def __init__(self, index: int):
        self.id = f"worker-{index}"
        self.process = None
        self.conn = None
        self.state = "initializing"  # initializing | idle | running | unhealthy
        self.error: Optional[str] = None  # why its model did not load (while unhealthy)
        self.load_failures = 0  # failed model loads in a row
        self.job_id: Optional[str] = None
        self.stage: Optional[str] = None
        self.abort_for: Optional[str] = None  # id of the job to stop: a job id, so a late abort cannot hit the next job


class WorkerPool:
    """N worker processes fed from `store`. `on_terminal(job_id)` runs after each terminal
    transition this pool makes (for webhooks and waiting /runsync requests)."""

    def __init__(self, store: JobStore, results_root: Path, settings: WorkerSettings, workers: int = 1,
                 on_terminal: Optional[Callable[[str], None]] = None):
        self.store = store
        self.results_root = Path(results_root)
        self.settings = settings
        self.on_terminal = on_terminal or (lambda job_id: None)
        self._slots = [_Slot(i) for i in range(max(1, workers))]
        self._wake = threading.Condition()
        self._stopping = threading.Event()
        self._stop_deadline = float("inf")
        self._threads: list[threading.Thread] = []
        self._ctx = multiprocessing.get_context("spawn")

    # -- control

    def start(self) -> None:
        for slot in self._slots:
            thread = threading.Thread(target=self._run_slot, args=(slot,), name=slot.id, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, grace_s: float = 10.0) -> None:
        """Stop claiming jobs, give running jobs `grace_s` to finish, then stop every process.
        A job still running then stays IN_PROGRESS in the store and runs again at the next start."""
        self._stop_deadline = time.monotonic() + grace_s
        self._stopping.set()
        self.notify()
        for thread in self._threads:
            thread.join(grace_s + 10)
        for slot in self._slots:
            self._stop_process(slot, graceful=True)

    def notify(self) -> None:
        """A job was queued: wake an idle slot."""
        with self._wake:
            self._wake.notify_all()

    def abort(self, job_id: str, reason: str) -> bool:
        """Stop the process running `job_id` (its status was already changed by the caller)."""
        for slot in self._slots:
            if slot.job_id == job_id:
                slot.abort_for = job_id
                log.info("stopping job %s on %s: %s", job_id, slot.id, reason)
                return True
        return False

    def counts(self) -> dict[str, int]:
        states = [s.state for s in self._slots]
        return {k: states.count(k) for k in ("idle", "initializing", "running", "unhealthy")}

    def worker_states(self) -> list[dict]:
        """Each worker's id, state, and while unhealthy the error and failed loads in a row."""
        return [{"id": s.id, "state": s.state, "error": s.error, "loadFailures": s.load_failures}
                for s in self._slots]

    def gave_up(self) -> Optional[str]:
        """The reason queued jobs cannot run: every worker failed to load its model
        `max_load_attempts` times in a row (None while any worker may still run jobs)."""
        limit = max(1, self.settings.max_load_attempts)
        if not all(s.load_failures >= limit and s.error for s in self._slots):
            return None
        return (f"no worker can run jobs: {self._slots[0].error} (each of the {len(self._slots)} worker(s) "
                f"failed to load the model {limit} times in a row)")

    def stage_of(self, job_id: str) -> Optional[str]:
        for slot in self._slots:
            if slot.job_id == job_id:
                return slot.stage
        return None

    # -- slot loop

    def _run_slot(self, slot: _Slot) -> None:
        backoff = self.settings.restart_backoff_s
        while not self._stopping.is_set():
            if slot.process is not None and not slot.process.is_alive():
                log.error("worker %s exited while idle (exit code %s); starting a new one", slot.id,
                          slot.process.exitcode)
                self._stop_process(slot, graceful=False)
            if slot.process is None:
                error = self._start_process(slot)
                if error is not None and self._stopping.is_set():
                    break
                if error is not None:
                    slot.error, slot.load_failures, slot.state = error, slot.load_failures + 1, "unhealthy"
                    log.error("worker %s: %s (failed %d time(s) in a row)", slot.id, error, slot.load_failures)
                    self._wait_unhealthy(backoff)
                    backoff = min(backoff * 2, 60.0)
                    continue
                slot.error, slot.load_failures = None, 0
                backoff = self.settings.restart_backoff_s
            slot.state = "idle"
            if self._stopping.is_set():
                break
            job = self.store.claim(slot.id)
            if job is None:
                with self._wake:
                    self._wake.wait(0.5)
                continue
            slot.state = "running"
            try:
                self._run_job(slot, job)
            except Exception:  # noqa: BLE001 - keep the slot alive; the job is requeued or failed
                log.exception("worker slot %s failed on job %s", slot.id, job.id)
                self._stop_process(slot, graceful=False)
                self._after(job.id, self.store.requeue_or_fail(job.id, self.settings.max_attempts,
                                                               "the worker failed", worker_id=slot.id))
            finally:
                slot.job_id, slot.stage, slot.abort_for = None, None, None

    def _wait_unhealthy(self, backoff: float) -> None:
        """Wait `backoff` s before the next load; meanwhile, if no worker can run jobs, end the
        queued ones (and those queued while waiting) as FAILED."""
        deadline = time.monotonic() + backoff
        while not self._stopping.is_set():
            reason = self.gave_up()
            if reason is not None:
                for job_id in self.store.fail_queued(reason):
                    self.on_terminal(job_id)
            left = deadline - time.monotonic()
            if left <= 0:
                return
            with self._wake:
                self._wake.wait(left)

    def _start_process(self, slot: _Slot) -> Optional[str]:
        """Start the slot's worker process and wait for its model; None, or why it did not load."""
        parent, child = self._ctx.Pipe()
        process = self._ctx.Process(target=_worker_main, args=(child, self.settings), name=slot.id, daemon=True)
        if slot.load_failures == 0:
            slot.state = "initializing"  # after a failure it stays unhealthy, with its error, until a load works
        process.start()
        child.close()
        error = f"loading the model took longer than {self.settings.startup_timeout_s:g} s"
        deadline = time.monotonic() + self.settings.startup_timeout_s
        while time.monotonic() < deadline and not self._stopping.is_set():
            if parent.poll(0.2):
                try:
                    kind, detail = parent.recv()
                except (EOFError, OSError):
                    process.join(5)
                    error = (f"the worker process exited while loading the model (exit code {process.exitcode}); "
                             "it may have run out of memory")
                    break
                if kind == "ready":
                    slot.process, slot.conn = process, parent
                    return None
                error = detail
                break
            if not process.is_alive():
                error = (f"the worker process exited while loading the model (exit code {process.exitcode}); "
                         "it may have run out of memory")
                break
        process.kill()
        process.join(5)
        parent.close()
        return error

    def _stop_process(self, slot: _Slot, graceful: bool) -> None:
        process, conn = slot.process, slot.conn
        slot.process, slot.conn = None, None
        if process is None:
            return
        if graceful:
            try:
                conn.send(("stop",))
                process.join(2)
            except (OSError, ValueError):
                pass
        if process.is_alive():
            process.kill()
        process.join(5)
        conn.close()

    def _deadline(self, job: Job) -> tuple[float, str]:
        timeout_s = (job.execution_timeout_ms / 1000 if job.execution_timeout_ms
                     else self.settings.default_execution_timeout_s)
        return time.time() + timeout_s, f"the job ran longer than its execution timeout of {timeout_s:g} s"

    def _run_job(self, slot: _Slot, job: Job) -> None:
        slot.job_id, slot.stage = job.id, "starting"
        # A cancel that committed between the claim and the line above found no slot to abort:
        # the row tells.
        if not self._still_mine(slot, job):
            return
        out_dir = result_dir(self.results_root, job.id)
        shutil.rmtree(out_dir, ignore_errors=True)  # a previous, interrupted attempt
        deadline, timeout_message = self._deadline(job)
        try:
            slot.conn.send(("job", job.id, job.input, str(out_dir)))
        except (OSError, ValueError):
            self._process_died(slot, job)
            return
        next_check = time.monotonic() + self.settings.job_check_s
        while True:
            if self._stopping.is_set() and time.monotonic() > self._stop_deadline:
                self._stop_process(slot, graceful=False)
                return  # left IN_PROGRESS on purpose: recovered and run again at the next start
            if slot.abort_for == job.id or (time.monotonic() >= next_check and not self._still_mine(slot, job)):
                self._stop_process(slot, graceful=False)
                shutil.rmtree(out_dir, ignore_errors=True)
                # The caller (cancel, ttl) normally set a terminal status first; if not, run it again.
                self._after(job.id, self.store.requeue_or_fail(job.id, self.settings.max_attempts,
                                                               "the job's worker was stopped", worker_id=slot.id))
                return
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + self.settings.job_check_s
            if time.time() > deadline:
                self._stop_process(slot, graceful=False)
                self._after(job.id, "TIMED_OUT" if self.store.finish(job.id, "TIMED_OUT", error=timeout_message,
                                                                     worker_id=slot.id) else None)
                return
            try:
                ready = slot.conn.poll(0.05)
                message = slot.conn.recv() if ready else None
            except (EOFError, OSError):
                self._process_died(slot, job)
                return
            if message is None:
                if not slot.process.is_alive():
                    self._process_died(slot, job)
                    return
                continue
            kind, detail = message
            if kind == "progress":
                slot.stage = detail
                continue
            if kind == "done":
                ok = self.store.finish(job.id, "COMPLETED", result=detail, worker_id=slot.id)
            else:
                ok = self.store.finish(job.id, "FAILED", error=detail, worker_id=slot.id)
            if not ok:  # cancelled or timed out meanwhile: the result is discarded
                shutil.rmtree(out_dir, ignore_errors=True)
            self._after(job.id, "done" if ok else None)
            return

    def _still_mine(self, slot: _Slot, job: Job) -> bool:
        current = self.store.get(job.id)
        return current is not None and current.status == "IN_PROGRESS" and current.worker_id == slot.id

    def _process_died(self, slot: _Slot, job: Job) -> None:
        code = slot.process.exitcode if slot.process is not None else None
        self._stop_process(slot, graceful=False)
        if slot.abort_for == job.id:
            return
        log.error("worker %s died running job %s (exit code %s)", slot.id, job.id, code)
        self._after(job.id, self.store.requeue_or_fail(job.id, self.settings.max_attempts,
                                                       f"the worker process died (exit code {code})",
                                                       worker_id=slot.id))

    def _after(self, job_id: str, outcome: Optional[str]) -> None:
        if outcome in ("FAILED", "TIMED_OUT", "done"):
            self.on_terminal(job_id)
        elif outcome == "IN_QUEUE":
            self.notify()


def scene_file_of(results_root: Path, job: Job) -> Optional[SceneFile]:
    """The SceneFile a completed job wrote (None if its file is gone)."""
    if job.result is None:
        return None
    path = result_dir(results_root, job.id) / f"scene{SCENE_SUFFIX[job.result['format']]}"
    if not path.is_file():
        return None
    return SceneFile(**{**job.result, "path": path})
